"""The page at /frontend/ in headless Chromium against the real service (API + worker,
embedded mode): uploads, live status, thumbnails, downloads, errors in words, isolation
between visitors, 360 px layout, accessibility basics, console and network hygiene."""

from __future__ import annotations

import base64
import io
import json
import re
import time
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys

from tests.support import images
from tests.support.frontend import browser, samples
from tests.support.frontend.page import (
    announced,
    assert_clean_console,
    assert_no_horizontal_overflow,
    browser_fetch,
    choose_files,
    open_as_new_visitor,
    tasks,
    uploads,
    wait_for,
    wait_for_list_loaded,
    wait_for_tasks,
)
from tests.support.frontend.stack import embedded_stack

pytestmark = [
    pytest.mark.browser,
    # CI installs Chromium; only a machine without it skips.
    pytest.mark.skipif(not browser.CHROMIUM.is_file(), reason="needs /usr/bin/chromium (scripts/system-packages)"),
]

# Small limits so that 413 and 429 can be provoked with small files. Each test is a new
# visitor (cookies cleared), so the per-visitor upload budget restarts in every test.
MAX_UPLOAD_BYTES = 1_000_000
UPLOADS_PER_MINUTE = 5

# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    base = tmp_path_factory.mktemp("frontend")
    with embedded_stack(
        base, MAX_UPLOAD_BYTES=MAX_UPLOAD_BYTES, UPLOADS_PER_MINUTE_PER_USER=UPLOADS_PER_MINUTE
    ) as running:
        yield running


@pytest.fixture
def page(driver, stack):
    """The page opened by a brand-new visitor (no cookie), with a clean console log."""
    open_as_new_visitor(driver, stack.url + "/frontend/")
    return driver


# --------------------------------------------------------------------------- helpers


ACTIVE_JS = "return document.activeElement.id || document.activeElement.tagName"


def api_detail(stack, name: str, data: bytes) -> tuple[int, str]:
    """What the API answers for this upload, asked directly (as a separate visitor)."""
    with stack.client() as client:
        response = client.post("/api/newTask", files={"file": (name, data, "application/octet-stream")})
    return response.status_code, response.json()["detail"]


def assert_same_origin_only(driver, stack) -> None:
    urls = driver.execute_script(
        "return [location.href, ...performance.getEntriesByType('navigation').map((e) => e.name),"
        " ...performance.getEntriesByType('resource').map((e) => e.name)]"
    )
    foreign = [u for u in urls if not u.startswith(stack.url + "/")]
    assert not foreign, f"requests outside the service's origin: {foreign}"


# --------------------------------------------------------------------------- tests

XSS_NAME = "<img src=x onerror=window.__pwned=1>.png"


def test_upload_completes_with_thumbnail_download_and_escaped_name(page, stack, tmp_path):
    driver = page
    png = samples.write(tmp_path, XSS_NAME, samples.picture(1600, 1200, seed=1))
    jpeg = samples.write(tmp_path, "small.jpg", samples.picture(640, 480, seed=2, fmt="JPEG"))
    choose_files(driver, png, jpeg)  # two files at once

    # Each file gets its own line with a progress bar.
    rows = wait_for(driver, lambda d: len(uploads(d)) == 2 and uploads(d), message="upload lines")
    assert sorted(r["name"] for r in rows) == sorted([XSS_NAME, "small.jpg"])
    done = wait_for(driver, lambda d: all(r["state"] == "done" for r in uploads(d)) and uploads(d))
    assert all(r["progress"] == 100 and "Uploaded" in r["status"] for r in done), done

    listed = {r["filename"]: r for r in wait_for_tasks(driver, 2)}
    driver.save_screenshot(str(tmp_path / "completed.png"))
    assert set(listed) == {XSS_NAME, "small.jpg"}
    # The file name is text, not markup.
    assert driver.execute_script("return document.querySelector('img[src=\"x\"]') === null")
    assert driver.execute_script("return window.__pwned === undefined")

    big = listed[XSS_NAME]
    assert big["status"] == "completed" and big["badge"] == "Completed", big
    assert "1600\u00d71200 PNG" in big["text"] and "800\u00d7600 JPEG" in big["text"], big["text"]
    assert re.search(r"\d+(\.\d)? (B|kB|MB)", big["text"]), big["text"]
    assert re.search(r"Processed in\s+[\d.]+ (ms|s)", big["text"], re.I), big["text"]
    assert "640\u00d7480 JPEG" in listed["small.jpg"]["text"], listed["small.jpg"]["text"]  # never upscaled

    for row in listed.values():
        assert row["img"]["loading"] == "lazy" and row["img"]["fit"] == "cover"
        assert row["img"]["alt"] == f"Result of {row['filename']}"
        assert row["href"] == f"{stack.url}/api/tasks/{row['id']}/result", row
        assert row["download"].endswith(".jpg")

    # Thumbnails actually loaded (fixed box whatever the image shape).
    driver.execute_script("document.getElementById('tasks').scrollIntoView()")
    loaded = wait_for(
        driver,
        lambda d: all(r["img"]["complete"] and r["img"]["naturalWidth"] > 0 for r in tasks(d)) and tasks(d),
        message="thumbnails loaded",
    )
    boxes = {tuple(r["img"]["box"]) for r in loaded}
    assert len(boxes) == 1 and 120 <= min(boxes)[0] <= 128 and 90 <= min(boxes)[1] <= 96, boxes

    # The download link serves a JPEG within 800x600, with the visitor's own cookie.
    result = browser_fetch(driver, big["href"])
    assert result.get("status") == 200 and result["type"] == "image/jpeg", result
    image = Image.open(io.BytesIO(base64.b64decode(result["body"])))
    assert image.format == "JPEG" and image.size == (800, 600) == tuple(result["decoded"])
    assert result["length"] == len(base64.b64decode(result["body"]))

    # Everything is terminal: polling has backed off to idle (at most one list request in 3 s).
    before = driver.execute_script(
        "return performance.getEntriesByType('resource').filter((e) => e.name.includes('/api/tasks?')).length"
    )
    time.sleep(3)
    after = driver.execute_script(
        "return performance.getEntriesByType('resource').filter((e) => e.name.includes('/api/tasks?')).length"
    )
    assert after - before <= 1, (before, after)

    assert_same_origin_only(driver, stack)
    assert_clean_console(driver)


def test_refused_uploads_show_the_reason_next_to_each_file(page, stack, tmp_path):
    driver = page
    cases = {
        "notes.jpg": samples.not_an_image(),  # a text file with an image name: 415
        "cut.png": samples.truncated_png(),  # 422
        "empty.png": b"",  # 422
    }
    expected = {name: api_detail(stack, name, data) for name, data in cases.items()}
    assert {status for status, _ in expected.values()} <= {415, 422}, expected
    # Just over the limit (refused by the route) and far over it (refused by the middleware
    # from Content-Length, before the body is read).
    huge = samples.write(tmp_path, "huge.png", b"\x89PNG\r\n\x1a\n" + b"\0" * (MAX_UPLOAD_BYTES + 10))
    giant = samples.write(tmp_path, "giant.png", b"\x89PNG\r\n\x1a\n" + b"\0" * (3 * MAX_UPLOAD_BYTES))
    paths = [samples.write(tmp_path, name, data) for name, data in cases.items()]
    choose_files(driver, *paths, huge, giant)

    rows = wait_for(
        driver,
        lambda d: len(uploads(d)) == 5 and all(r["state"] == "error" for r in uploads(d)) and uploads(d),
        message="five refused uploads",
    )
    shown = {r["name"]: r for r in rows}
    for name, (_, detail) in expected.items():
        assert shown[name]["status"] == detail, (name, shown[name], detail)
        assert "Dismiss" in shown[name]["buttons"] and "Retry" not in shown[name]["buttons"]
    assert "too large" in shown["huge.png"]["status"].lower(), shown["huge.png"]
    assert str(MAX_UPLOAD_BYTES) in shown["huge.png"]["status"], shown["huge.png"]
    assert "too large" in shown["giant.png"]["status"].lower(), shown["giant.png"]
    # The same words reach screen readers.
    assert driver.execute_script("return document.querySelectorAll('#uploads [role=alert]').length") == 5
    driver.save_screenshot(str(tmp_path / "refused.png"))

    # Nothing was created; dismissing removes the line.
    assert tasks(driver) == []
    driver.execute_script("document.querySelector('#uploads .upload button:last-child').click()")
    assert len(uploads(driver)) == 4
    assert_same_origin_only(driver, stack)
    assert_clean_console(driver, allowed_statuses=(413, 415, 422))


def test_rate_limit_is_explained_with_retry_after(page, stack, tmp_path):
    driver = page
    paths = [samples.write(tmp_path, f"burst-{i}.png", samples.picture(48, 32, seed=i)) for i in range(6)]
    choose_files(driver, *paths)
    wait_for(
        driver,
        lambda d: len(uploads(d)) >= 1 and any(r["state"] == "error" for r in uploads(d)),
        message="a rate-limited upload",
    )
    limited = [r for r in uploads(driver) if r["state"] == "error"]
    assert len(limited) == 1, uploads(driver)
    assert re.fullmatch(r".*rate limit.*Retry after \d+ s\.", limited[0]["status"], re.I), limited
    assert "Retry" in limited[0]["buttons"]
    wait_for_tasks(driver, UPLOADS_PER_MINUTE)
    assert_clean_console(driver, allowed_statuses=(429,))


def test_failed_task_shows_its_error(page, stack, tmp_path):
    driver = page
    data = images.corrupt_png()
    with stack.client() as client:
        if client.post("/api/newTask", files={"file": ("probe.png", data)}).status_code != 200:
            pytest.skip("the upload check now refuses this file outright (covered by the 422 test)")
    choose_files(driver, samples.write(tmp_path, "broken.png", data))
    (row,) = wait_for_tasks(driver, 1)
    assert row["status"] == "failed" and row["badge"] == "Failed", row
    assert row["error"] and "corrupt" in row["error"].lower(), row
    assert row["href"] is None and row["img"]["hidden"]
    # The live region announced the transition in words.
    assert "broken.png uploaded." in announced(driver)
    wait_for(
        driver,
        lambda d: "broken.png: failed." in announced(d),
        timeout=5,
        message="failure announced",
    )
    assert_clean_console(driver)


def test_dropped_file_is_processed_and_can_be_deleted(page, stack):
    driver = page
    # A real DragEvent carrying a File, dispatched on the drop zone.
    driver.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        const canvas = document.createElement('canvas');
        canvas.width = 320; canvas.height = 240;
        const ctx = canvas.getContext('2d');
        ctx.fillStyle = '#2563eb'; ctx.fillRect(0, 0, 320, 240);
        ctx.fillStyle = '#f59e0b'; ctx.fillRect(40, 40, 120, 80);
        canvas.toBlob((blob) => {
          const transfer = new DataTransfer();
          transfer.items.add(new File([blob], 'dropped.png', {type: 'image/png'}));
          const zone = document.getElementById('dropzone');
          const init = {dataTransfer: transfer, bubbles: true, cancelable: true};
          const fire = (type) => zone.dispatchEvent(new DragEvent(type, init));
          fire('dragenter');
          fire('dragover');
          window.__highlighted = zone.classList.contains('dragging');
          fire('drop');
          done();
        }, 'image/png');
        """
    )
    assert driver.execute_script("return window.__highlighted") is True
    (row,) = wait_for_tasks(driver, 1)
    assert row["filename"] == "dropped.png" and row["status"] == "completed", row
    assert "320\u00d7240 PNG" in row["text"]

    driver.find_element("css selector", f'#tasks .task[data-task-id="{row["id"]}"] button.delete').click()
    wait_for(driver, lambda d: tasks(d) == [], message="row removed after delete")
    wait_for(driver, lambda d: d.find_element("id", "empty").is_displayed(), message="empty note")
    assert driver.execute_script("return document.activeElement.id") == "tasks-heading"
    listing = browser_fetch(driver, stack.url + "/api/tasks")
    assert listing["status"] == 200 and b'"total":0' in base64.b64decode(listing["body"]), listing
    assert_clean_console(driver)


LIST_REQUESTS_JS = (
    "return performance.getEntriesByType('resource').filter((e) => e.name.includes('/api/tasks?')).length"
)


FETCH_LOG_JS = """
    window.__fetches = [];
    const realFetch = window.fetch;
    window.fetch = (resource, init) => {
      window.__fetches.push([String(resource), Date.now()]);
      return realFetch(resource, init);
    };
"""


def test_status_updates_live_and_polling_pauses_while_hidden(page, stack, tmp_path):
    driver = page
    worker = stack.workers.pop()
    stack.stop_process(worker)  # no worker: the upload stays pending
    try:
        driver.execute_script(FETCH_LOG_JS)
        choose_files(driver, samples.write(tmp_path, "waiting.png", samples.picture(300, 200, seed=6)))
        (row,) = wait_for_tasks(driver, 1, terminal=False)
        assert row["status"] == "pending" and row["badge"] == "Pending", row
        driver.execute_script("window.__sameDocument = true")

        # Unfinished work: the page waits for the task with one long poll instead of polling.
        def waiting_request(d):
            urls = [url for url, _ in d.execute_script("return window.__fetches")]
            return any(f"/api/tasks/{row['id']}?wait=" in url for url in urls)

        wait_for(driver, waiting_request, timeout=5, message="a long poll for the pending task")
        before = driver.execute_script(LIST_REQUESTS_JS)
        fetches = len(driver.execute_script("return window.__fetches"))
        time.sleep(2)
        assert driver.execute_script(LIST_REQUESTS_JS) == before  # no list polling while it waits
        assert len(driver.execute_script("return window.__fetches")) == fetches

        # A background tab polls nothing, and coming back refreshes at once. The page's own
        # fetch() calls are logged with the visibility at call time (reading counters from
        # Selenium would need the tab in front, which makes it visible).
        driver.execute_script(
            """
            window.__log = [];
            const realFetch = window.fetch;
            window.fetch = (resource, init) => {
              window.__log.push(['fetch', String(resource), document.visibilityState]);
              return realFetch(resource, init);
            };
            document.addEventListener('visibilitychange',
              () => window.__log.push(['vis', document.visibilityState]));
            """
        )
        page_tab = driver.current_window_handle
        driver.switch_to.new_window("tab")
        time.sleep(6)  # a hidden tab neither polls nor keeps its long poll open
        driver.close()
        driver.switch_to.window(page_tab)

        def refreshed_after_showing(d):
            log = d.execute_script("return window.__log")
            shown = log.index(["vis", "visible"]) if ["vis", "visible"] in log else None
            after = [entry for entry in log[shown:] if entry[0] == "fetch"] if shown is not None else []
            return (log, after[0]) if after else None

        log, first_after = wait_for(driver, refreshed_after_showing, timeout=3, message="a refresh on becoming visible")
        assert log[0] == ["vis", "hidden"], log
        hidden_calls = [entry for entry in log if entry[0] == "fetch" and entry[2] == "hidden"]
        assert hidden_calls == [], log
        assert "/api/tasks?" in first_after[1] and first_after[2] == "visible", log
    finally:
        stack.start_worker()

    # The worker picks the queued task up; the badge changes without a reload.
    (row,) = wait_for_tasks(driver, 1)
    assert row["status"] == "completed" and row["badge"] == "Completed", row
    assert driver.execute_script("return window.__sameDocument") is True
    wait_for(
        driver,
        lambda d: "waiting.png: completed." in announced(d),
        timeout=5,
        message="completion announced",
    )
    assert_clean_console(driver)


def test_another_visitor_sees_only_their_own_tasks(page, stack, tmp_path):
    first = page
    choose_files(first, samples.write(tmp_path, "mine.png", samples.picture(200, 150, seed=3)))
    wait_for_tasks(first, 1)
    (first_cookie,) = first.get_cookies()

    with browser.chromium(width=1000, height=800, profile_dir=tmp_path) as second:
        second.get(stack.url + "/frontend/")
        wait_for_list_loaded(second)
        assert second.find_element("id", "empty").is_displayed()
        assert tasks(second) == []
        (second_cookie,) = second.get_cookies()
        assert second_cookie["httpOnly"] and second_cookie["value"] != first_cookie["value"]
        listing = browser_fetch(second, stack.url + "/api/tasks")
        assert b'"total":0' in base64.b64decode(listing["body"]), listing
        assert_clean_console(second)

    assert [r["filename"] for r in tasks(first)] == ["mine.png"]


def test_narrow_screen_has_no_horizontal_scroll(page, stack, tmp_path):
    driver = page
    browser.set_viewport(driver, 360, 780, mobile=True)
    driver.refresh()
    wait_for_list_loaded(driver)
    long_name = "a-very-long-file-name-without-any-spaces-" * 4 + ".png"
    choose_files(
        driver,
        samples.write(tmp_path, long_name, samples.picture(900, 1400, seed=4)),
        samples.write(tmp_path, "notes-" + "x" * 60 + ".jpg", samples.not_an_image()),
    )
    wait_for_tasks(driver, 1)
    wait_for(driver, lambda d: any(r["state"] == "error" for r in uploads(d)), message="refused upload line")
    driver.save_screenshot(str(tmp_path / "narrow-360.png"))
    assert_no_horizontal_overflow(driver, 360)
    # The upload section and the list are still fully inside the viewport.
    right_edges = driver.execute_script(
        "return [...document.querySelectorAll('.card, .task, .upload, .actions .button')]"
        ".map((e) => e.getBoundingClientRect().right)"
    )
    assert max(right_edges) <= 360, right_edges
    browser.clear_viewport(driver)
    assert_clean_console(driver, allowed_statuses=(415,))


def test_accessibility_basics_and_links(page, stack):
    driver = page
    facts = driver.execute_script(
        """
        const input = document.getElementById('file-input');
        const named = (e) => (e.getAttribute('aria-label') || e.textContent).trim().length > 0;
        const live = document.querySelector('[aria-live]');
        const csp = document.querySelector('meta[http-equiv="Content-Security-Policy"]');
        return {
          lang: document.documentElement.lang,
          inputLabelled: input.labels.length > 0 && input.labels[0].textContent.trim().length > 0,
          inputMultiple: input.multiple, accept: input.accept,
          unnamed: [...document.querySelectorAll('a, button')].filter((e) => !named(e))
            .map((e) => e.outerHTML),
          imagesWithoutAlt: [...document.querySelectorAll('img:not([alt])')].length,
          live: live && live.getAttribute('aria-live'),
          csp: csp && csp.content,
          docs: document.querySelector('a[href="../docs"]').href,
          flower: document.querySelector('a[href="../flower/"]').href,
        };
        """
    )
    assert facts["lang"] == "en" and facts["inputLabelled"] and facts["inputMultiple"]
    assert facts["accept"] == "image/*"
    assert facts["unnamed"] == [] and facts["imagesWithoutAlt"] == 0
    assert facts["live"] == "polite"
    assert "default-src 'self'" in facts["csp"] and "img-src 'self' blob: data:" in facts["csp"]
    assert facts["docs"] == stack.url + "/docs" and facts["flower"] == stack.url + "/flower/"
    assert httpx.get(facts["docs"]).status_code == 200

    # Keyboard: Tab reaches the file picker (after the skip link and the two links), and the
    # drop zone shows a visible focus ring while it has focus.
    driver.execute_script("document.activeElement && document.activeElement.blur()")
    focused = []
    for _ in range(6):
        ActionChains(driver).send_keys(Keys.TAB).perform()
        focused.append(driver.execute_script(ACTIVE_JS))
        if focused[-1] == "file-input":
            break
    assert focused[-1] == "file-input", focused
    ring = driver.execute_script(
        "const s = getComputedStyle(document.getElementById('dropzone'));"
        " return [s.outlineStyle, parseFloat(s.outlineWidth)]"
    )
    assert ring[0] != "none" and ring[1] >= 2, ring
    assert_clean_console(driver)


def test_without_presets_configured_there_is_no_picker_and_the_hint_is_todays(page, stack, tmp_path):
    driver = page
    hint = "Each image becomes a JPEG of at most 800\u00d7600 pixels (EXIF-rotated, metadata removed)."
    # /api/presets has answered (one preset, `web`) and the page left everything as it was.
    wait_for(
        driver,
        lambda d: d.execute_script(
            "return performance.getEntriesByType('resource').some((e) => e.name.endsWith('/api/presets'))"
        ),
        message="the presets request",
    )
    shown = driver.execute_script(
        """
        return {
          hint: document.querySelector('.hint').textContent.replace(/\\s+/g, ' ').trim(),
          picker: document.getElementById('presets').hidden,
          boxes: document.querySelectorAll('#presets input').length,
        };
        """
    )
    assert shown == {"hint": f"{hint} JPEG, PNG, WebP, GIF, BMP or TIFF.", "picker": True, "boxes": 0}
    assert not driver.find_element("id", "presets").is_displayed()

    driver.execute_script(
        """
        window.__sent = [];
        const realSend = XMLHttpRequest.prototype.send;
        XMLHttpRequest.prototype.send = function (body) {
          window.__sent.push([...body.keys()]);
          return realSend.call(this, body);
        };
        """
    )
    choose_files(driver, samples.write(tmp_path, "today.png", samples.picture(1000, 750, seed=7)))
    (row,) = wait_for_tasks(driver, 1)
    assert driver.execute_script("return window.__sent") == [["file"]]  # no presets field
    listing = browser_fetch(driver, f"{stack.url}/api/tasks/{row['id']}")
    variants = json.loads(base64.b64decode(listing["body"]))["variants"]
    assert [(v["preset"], v["format"]) for v in variants] == [("web", "jpeg")]
    # One result, shown as it always was: no variants list, no snippet.
    row_state = driver.execute_script(
        "const li = document.querySelector('#tasks .task');"
        " return [li.querySelector('.variants').hidden, li.querySelectorAll('.variant-list li').length]"
    )
    assert row_state == [True, 0]
    assert "800\u00d7600 JPEG" in row["text"] and "Use on a page" not in row["text"], row["text"]
    assert row["download"] == "today.jpg" and row["href"] == f"{stack.url}/api/tasks/{row['id']}/result"
    assert_clean_console(driver)
