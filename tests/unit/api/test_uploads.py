"""The multipart reader behind POST /api/newTask (app/api/uploads.py), through the real route."""

from __future__ import annotations

from app.core.config import get_settings
from tests.support import images

UPLOAD = "/api/newTask"


def multipart(*parts: tuple[str, bytes], boundary: str = "XyZ") -> tuple[bytes, dict[str, str]]:
    """Hand-made body: each part is (Content-Disposition parameters, data)."""
    body = b"".join(
        f"--{boundary}\r\nContent-Disposition: form-data; {disposition}\r\n\r\n".encode() + data + b"\r\n"
        for disposition, data in parts
    )
    return body + f"--{boundary}--\r\n".encode(), {"content-type": f"multipart/form-data; boundary={boundary}"}


def stored_originals() -> list:
    originals = get_settings().storage_dir / "originals"
    return list(originals.iterdir()) if originals.exists() else []


def test_the_file_arrives_byte_for_byte(client):
    data = images.jpeg(320, 240)
    response = client.post(UPLOAD, files={"file": ("photo.jpg", data, "image/jpeg")})
    assert response.status_code == 200, response.text
    (stored,) = stored_originals()
    assert stored.read_bytes() == data
    task = client.get(f"/api/tasks/{response.json()['task_id']}").json()
    assert task["filename"] == "photo.jpg" and task["metadata"]["original_size"] == len(data)


def test_other_fields_are_ignored(client):
    body, headers = multipart(('name="note"', b"hello"), ('name="file"; filename="a.jpg"', images.jpeg(64, 48)))
    assert client.post(UPLOAD, content=body, headers=headers).status_code == 200


def test_a_missing_file_field_is_422_in_fastapis_validation_shape(client, queue):
    body, headers = multipart(('name="other"; filename="a.jpg"', images.jpeg(64, 48)))
    response = client.post(UPLOAD, content=body, headers=headers)
    assert response.status_code == 422
    assert response.json() == {
        "detail": [{"type": "missing", "loc": ["body", "file"], "msg": "Field required", "input": None}]
    }
    assert queue.sent == [] and stored_originals() == []


def test_a_body_that_is_not_multipart_is_422(client, queue):
    response = client.post(UPLOAD, json={"file": "x"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "file"]


def test_a_text_field_named_file_is_422(client):
    body, headers = multipart(('name="file"', b"not a file"))
    response = client.post(UPLOAD, content=body, headers=headers)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "file"]


def test_multipart_without_a_boundary_is_400(client):
    response = client.post(UPLOAD, content=b"--x\r\n", headers={"content-type": "multipart/form-data"})
    assert response.status_code == 400
    assert response.json() == {"detail": "Missing boundary in multipart."}


def test_a_part_without_a_name_is_400(client):
    body, headers = multipart(('filename="a.jpg"', images.jpeg(64, 48)))
    response = client.post(UPLOAD, content=body, headers=headers)
    assert response.status_code == 400
    assert "name" in response.json()["detail"]


def test_garbage_after_the_boundary_is_400(client):
    headers = {"content-type": "multipart/form-data; boundary=XyZ"}
    response = client.post(UPLOAD, content=b"--XyZ\r\n\x00\x01 not headers", headers=headers)
    assert response.status_code in (400, 422)
    assert response.headers["content-type"] == "application/json"


def test_too_many_parts_are_refused(client):
    body, headers = multipart(*[('name="n"', b"x")] * 1001)
    response = client.post(UPLOAD, content=body, headers=headers)
    assert response.status_code == 400
    assert "Too many parts" in response.json()["detail"]


def test_a_file_name_that_is_not_utf8_is_kept_as_text(client):
    body, headers = multipart(('name="file"; filename="caf\xe9.jpg"', images.jpeg()))
    body = body.replace("caf\xe9".encode(), "caf\xe9".encode("latin-1"))
    response = client.post(UPLOAD, content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert client.get(f"/api/tasks/{response.json()['task_id']}").json()["filename"] == "caf\xe9.jpg"


def test_a_part_head_over_python_multiparts_limits_is_400_naming_the_limit(client):
    long_line = ('name="file"; filename="' + "a" * 5000 + '.jpg"', images.jpeg(64, 48))
    body, headers = multipart(long_line)
    response = client.post(UPLOAD, content=body, headers=headers)
    assert response.status_code == 400
    assert response.json()["detail"] == (
        "A part's headers in the multipart body are too large (Maximum header size exceeded)."
    )
    many_lines = b"".join(f"X-Extra-{n}: 1\r\n".encode() for n in range(9))
    body = body.replace(b"\r\n\r\n", b"\r\n" + many_lines + b"\r\n", 1).replace(b"a" * 5000, b"a")
    response = client.post(UPLOAD, content=body, headers=headers)
    assert response.status_code == 400
    assert "Maximum header count exceeded" in response.json()["detail"]
