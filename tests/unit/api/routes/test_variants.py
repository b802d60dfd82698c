"""Presets end to end in one process: the upload's `presets` field, the worker's run over every
preset (worker.tasks.run_pipeline, from one decode), the report, and the routes that list and
serve the variants."""

from __future__ import annotations

import json
import re

import pytest

from app.core.db import session_scope
from app.storage import get_storage
from app.tasks import crud
from tests.support import images
from tests.support.imaging import animated_gif
from tests.support.tasks import UPLOAD, run_worker

PRESETS = [
    {"name": "thumb", "width": 160, "height": 160, "fit": "cover", "formats": ["webp"]},
    {"name": "web", "width": 800, "height": 600, "formats": ["jpeg", "webp"], "default": True},
    {"name": "card", "width": 400, "height": 300, "formats": ["webp", "jpeg"]},
    {"name": "large", "width": 1600, "height": 1200, "formats": ["avif"]},
]


@pytest.fixture
def presets(configure) -> None:
    configure(PRESETS=json.dumps(PRESETS), MAX_OUTPUTS_PER_TASK=5)


def upload(client, presets: str | None, data: bytes | None = None):  # type: ignore[no-untyped-def]
    fields = {} if presets is None else {"presets": presets}
    return client.post(UPLOAD, files={"file": ("p.jpg", data or images.jpeg(2000, 1500), "image/jpeg")}, data=fields)


def test_an_upload_naming_presets_gets_every_format_of_each(client, presets):
    response = upload(client, "thumb, web,large")
    assert response.status_code == 200, response.text
    task_id = response.json()["task_id"]
    run_worker(client, task_id)

    task = client.get(f"/api/tasks/{task_id}").json()
    made = {(v["preset"], v["format"]): (v["width"], v["height"]) for v in task["variants"]}
    # In the configured order, whatever the order named; never upscaled (the source is 2000x1500).
    assert made == {
        ("large", "avif"): (1600, 1200),
        ("web", "jpeg"): (800, 600),
        ("web", "webp"): (800, 600),
        ("thumb", "webp"): (160, 160),
    }
    assert [v["width"] for v in task["variants"]] == sorted((v["width"] for v in task["variants"]), reverse=True)
    # The legacy fields show the first JPEG made, where results always were; the API flags it.
    assert task["result_path"] == f"results/{task_id}.jpg"
    assert [(v["preset"], v["format"]) for v in task["variants"] if v["main"]] == [("web", "jpeg")]
    legacy = client.get(f"/api/isReady/{task_id}").json()
    assert json.loads(legacy["metadata"])["processed_size"] == len(client.get(f"/api/tasks/{task_id}/result").content)
    # One srcset per format, of the variants shaped like the main result (the square crop is not).
    assert task["srcset"] == {
        "avif": f"/api/tasks/{task_id}/results/large.avif 1600w",
        "jpeg": f"/api/tasks/{task_id}/results/web.jpeg 800w",
        "webp": f"/api/tasks/{task_id}/results/web.webp 800w",
    }
    for variant in task["variants"]:
        served = client.get(variant["url"])
        assert served.status_code == 200
        assert served.headers["content-type"] == f"image/{variant['format']}"
        image = images.decode(served.content)
        assert (image.format.lower(), image.size) == (variant["format"], (variant["width"], variant["height"]))
        assert len(served.content) == variant["size"]


def test_a_srcset_names_each_width_once_when_the_source_is_smaller_than_the_boxes(client, presets):
    # 320x240 fits inside web (800x600) and card (400x300): both make 320x240 JPEGs and WebPs.
    task_id = upload(client, "web,card", images.jpeg(320, 240)).json()["task_id"]
    run_worker(client, task_id)
    task = client.get(f"/api/tasks/{task_id}").json()
    assert {(v["preset"], v["format"], v["width"]) for v in task["variants"]} == {
        (preset, output, 320) for preset in ("web", "card") for output in ("jpeg", "webp")
    }
    # The main result (web's JPEG) is the JPEG candidate; one WebP of that width.
    assert task["srcset"]["jpeg"] == f"/api/tasks/{task_id}/results/web.jpeg 320w"
    assert re.fullmatch(rf"/api/tasks/{task_id}/results/(web|card)\.webp 320w", task["srcset"]["webp"])


def test_no_presets_field_makes_the_default_presets(client, presets):
    task_id = upload(client, None).json()["task_id"]
    run_worker(client, task_id)
    task = client.get(f"/api/tasks/{task_id}").json()
    assert sorted((v["preset"], v["format"]) for v in task["variants"]) == [("web", "jpeg"), ("web", "webp")]


@pytest.mark.parametrize(
    ("field", "detail"),
    [
        ("web,huge", "Unknown preset huge; the presets are thumb, web, card, large."),
        ("thumb,web,card,large", "These presets make 6 outputs (presets x formats); one upload may ask for at most 5."),
    ],
)
def test_unknown_presets_and_too_many_outputs_are_422_before_anything_is_stored(client, presets, field, detail):
    response = upload(client, field)
    assert response.status_code == 422
    assert response.json() == {"detail": detail}
    assert client.get("/api/tasks").json()["total"] == 0


@pytest.mark.parametrize(
    ("accept", "served"),
    [
        ("image/avif,image/webp,image/apng,image/*,*/*;q=0.8", "webp"),  # card has no AVIF
        ("image/webp,*/*", "webp"),
        ("image/*", "jpeg"),  # a wildcard promises nothing: JPEG, which every browser decodes
        ("", "jpeg"),
    ],
)
def test_a_preset_without_extension_is_chosen_by_accept(client, presets, accept, served):
    task_id = upload(client, "card,thumb").json()["task_id"]
    run_worker(client, task_id)
    response = client.get(f"/api/tasks/{task_id}/results/card", headers={"accept": accept})
    assert response.status_code == 200
    assert response.headers["content-type"] == f"image/{served}"
    assert response.headers["vary"] == "Accept"
    # A preset made in one format only is served in it, whatever was asked.
    only = client.get(f"/api/tasks/{task_id}/results/thumb", headers={"accept": "image/jpeg"})
    assert only.headers["content-type"] == "image/webp"


def test_avif_is_negotiated_when_the_browser_names_it(client, presets):
    task_id = upload(client, "large").json()["task_id"]
    run_worker(client, task_id)
    response = client.get(f"/api/tasks/{task_id}/results/large", headers={"accept": "image/avif,image/webp"})
    assert response.headers["content-type"] == "image/avif"


def test_variants_have_their_own_etags_and_answer_304(client, presets):
    task_id = upload(client, "web").json()["task_id"]
    run_worker(client, task_id)
    jpeg = client.get(f"/api/tasks/{task_id}/results/web.jpg")
    webp = client.get(f"/api/tasks/{task_id}/results/web.webp")
    assert jpeg.headers["content-type"] == "image/jpeg" and "vary" not in jpeg.headers
    assert jpeg.headers["etag"] != webp.headers["etag"]
    again = client.get(f"/api/tasks/{task_id}/results/web.webp", headers={"if-none-match": webp.headers["etag"]})
    assert again.status_code == 304


def test_unknown_variants_are_404_and_unfinished_tasks_409(client, presets):
    task_id = upload(client, "web").json()["task_id"]
    assert client.get(f"/api/tasks/{task_id}/results/web").status_code == 409
    run_worker(client, task_id)
    assert client.get(f"/api/tasks/{task_id}/results/thumb").status_code == 404
    assert client.get(f"/api/tasks/{task_id}/results/web.avif").status_code == 404
    assert client.get(f"/api/tasks/{task_id}/results/web.gif").status_code == 422


def test_delete_removes_every_variant(client, presets):
    task_id = upload(client, "thumb,web").json()["task_id"]
    run_worker(client, task_id)
    storage = get_storage()
    assert sorted(storage.list_keys(f"results/{task_id}/")) == [
        f"results/{task_id}/thumb.webp",
        f"results/{task_id}/web.webp",
    ]
    assert client.delete(f"/api/tasks/{task_id}").status_code == 204
    assert list(storage.list_keys(f"results/{task_id}/")) == []
    assert not storage.exists(f"results/{task_id}.jpg")


def test_a_re_run_replaces_the_variants_never_duplicates_them(client, presets):
    task_id = upload(client, "thumb,web").json()["task_id"]
    run_worker(client, task_id)
    from worker.tasks import run_pipeline

    storage = get_storage()
    with session_scope() as session:
        task_presets = crud.task_presets(session=session, task_id=task_id)
    run_pipeline(task_id, images.jpeg(2000, 1500), task_presets, storage)  # a duplicate delivery
    assert len(list(storage.list_keys(f"results/{task_id}/"))) == 2
    assert len(client.get(f"/api/tasks/{task_id}").json()["variants"]) == 3


def test_the_presets_are_listed(client, presets):
    listed = client.get("/api/presets").json()
    assert [p["name"] for p in listed["items"]] == ["thumb", "web", "card", "large"]
    assert listed["items"][0] == {
        "name": "thumb",
        "width": 160,
        "height": 160,
        "fit": "cover",
        "formats": ["webp"],
        "default": False,
        "animated": False,
    }
    assert listed["max_outputs_per_task"] == 5


def test_an_animation_over_the_limits_is_its_first_frame_and_the_task_says_why(client, configure):
    animated = [{"name": "anim", "width": 64, "height": 64, "formats": ["webp"], "animated": True, "default": True}]
    configure(PRESETS=json.dumps(animated), ANIMATION_MAX_FRAMES=2)
    gif = animated_gif([(255, 0, 0), (0, 255, 0), (0, 0, 255)], size=(32, 32))
    response = client.post(UPLOAD, files={"file": ("a.gif", gif, "image/gif")})
    task_id = response.json()["task_id"]
    run_worker(client, task_id)
    task = client.get(f"/api/tasks/{task_id}").json()
    [note] = task["notes"]
    assert "anim" in note and "first frame" in note
    webp = images.decode(client.get(task["variants"][0]["url"]).content)
    assert getattr(webp, "n_frames", 1) == 1
    # The legacy metadata keeps its keys.
    assert "notes" not in json.loads(client.get(f"/api/isReady/{task_id}").json()["metadata"])

    configure(ANIMATION_MAX_FRAMES=10)
    task_id = client.post(UPLOAD, files={"file": ("a.gif", gif, "image/gif")}).json()["task_id"]
    run_worker(client, task_id)
    task = client.get(f"/api/tasks/{task_id}").json()
    assert task["notes"] == []
    assert images.decode(client.get(task["variants"][0]["url"]).content).n_frames == 3
