"""Driving the page in Chromium: waits, the task list and upload lines as the page shows them,
the file input, fetches with the page's cookie, console and layout checks. Shared by the modules
of tests/integration/frontend and the cluster's browser test."""

from __future__ import annotations

import re
import time
from pathlib import Path

from tests.support.frontend import browser

WAIT = 45  # seconds; generous for a loaded 2-core machine


def wait_for(driver, condition, timeout: float = WAIT, message: str = ""):
    deadline = time.monotonic() + timeout
    while True:
        value = condition(driver)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s: {message or condition}")
        time.sleep(0.1)


def wait_for_list_loaded(driver) -> None:
    # The first list request has answered when either the empty note or a row shows.
    wait_for(
        driver,
        lambda d: d.execute_script(
            "return !document.getElementById('empty').hidden || document.querySelector('#tasks .task') !== null"
        ),
        message="first task list load",
    )


TASKS_JS = """
return [...document.querySelectorAll('#tasks .task')].map((li) => {
  const img = li.querySelector('img');
  const link = li.querySelector('a.download');
  const error = li.querySelector('.task-error');
  return {
    id: Number(li.dataset.taskId),
    status: li.dataset.status,
    filename: li.querySelector('.filename').textContent,
    badge: li.querySelector('.badge').textContent,
    text: li.innerText,
    error: error.hidden ? null : error.textContent,
    href: link.hidden ? null : link.href,
    download: link.getAttribute('download'),
    img: {src: img.getAttribute('src'), alt: img.alt, loading: img.loading, hidden: img.hidden,
          complete: img.complete, naturalWidth: img.naturalWidth,
          box: [img.getBoundingClientRect().width, img.getBoundingClientRect().height],
          fit: getComputedStyle(img).objectFit},
  };
});
"""


def tasks(driver) -> list[dict]:
    return driver.execute_script(TASKS_JS)


def wait_for_tasks(driver, count: int, *, terminal: bool = True) -> list[dict]:
    def ready(d):
        rows = tasks(d)
        if len(rows) != count:
            return None
        if terminal and any(r["status"] not in ("completed", "failed") for r in rows):
            return None
        return rows

    return wait_for(driver, ready, message=f"{count} task(s) in the list{' finished' if terminal else ''}")


def choose_files(driver, *paths: Path) -> None:
    # The real <input type=file>, as a user's file dialog would fill it.
    driver.find_element("id", "file-input").send_keys("\n".join(str(p) for p in paths))


def open_as_new_visitor(driver, url: str) -> None:
    """The page opened by a brand-new visitor (no cookie), with a clean console log, once its
    first task list has loaded."""
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    browser.clear_viewport(driver)
    driver.get("about:blank")
    driver.get_log("browser")  # drop whatever an earlier (maybe failed) test left
    driver.get(url)
    wait_for(driver, lambda d: d.execute_script("return document.getElementById('tasks-heading') !== null"))
    wait_for_list_loaded(driver)


UPLOADS_JS = """
return [...document.querySelectorAll('#uploads .upload')].map((li) => ({
  name: li.querySelector('.upload-name').textContent,
  state: li.dataset.state,
  status: li.querySelector('.upload-status').textContent,
  progress: li.querySelector('progress').value,
  buttons: [...li.querySelectorAll('button')].map((b) => b.textContent),
}));
"""


def uploads(driver) -> list[dict]:
    return driver.execute_script(UPLOADS_JS)


def announced(driver) -> str:
    """What the aria-live region has said (its recent lines)."""
    return driver.execute_script("return document.getElementById('announcer').textContent")


def browser_fetch(driver, url: str, method: str = "GET") -> dict:
    """fetch() inside the page (same cookie), body returned base64-encoded."""
    return driver.execute_async_script(
        """
        const [url, method, done] = arguments;
        fetch(url, {method, credentials: 'same-origin'}).then(async (r) => {
          const bytes = new Uint8Array(await r.arrayBuffer());
          let decoded = null;
          if ((r.headers.get('content-type') || '').startsWith('image/')) {
            const bitmap = await createImageBitmap(new Blob([bytes]));
            decoded = [bitmap.width, bitmap.height];
          }
          let binary = '';
          for (let i = 0; i < bytes.length; i += 0x8000) {
            binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
          }
          done({status: r.status, type: r.headers.get('content-type'), length: bytes.length,
                decoded, body: btoa(binary)});
        }).catch((e) => done({error: String(e)}));
        """,
        url,
        method,
    )


def assert_clean_console(driver, *, allowed_statuses: tuple[int, ...] = ()) -> None:
    """No SEVERE console entry, except the network line Chrome logs for each upload that
    the test deliberately had refused (a 4xx answer is not a page error)."""
    problems = []
    for entry in driver.get_log("browser"):
        if entry["level"] != "SEVERE":
            continue
        match = re.search(r"/api/newTask - Failed to load resource: .* status of (\d+)", entry["message"])
        if entry.get("source") == "network" and match and int(match.group(1)) in allowed_statuses:
            continue
        problems.append(entry)
    assert not problems, problems


def assert_no_horizontal_overflow(driver, width: int) -> None:
    sizes = driver.execute_script(
        "return [document.documentElement.scrollWidth, document.body.scrollWidth, window.innerWidth]"
    )
    assert sizes[2] == width, sizes
    assert max(sizes[:2]) <= width, f"horizontal overflow at {width}px: {sizes}"
