"""Driving the page in Chromium: waits, the task list as the page shows it, the file input.
Shared by tests/integration/frontend/test_page.py and the cluster's browser test."""

from __future__ import annotations

import time
from pathlib import Path

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
