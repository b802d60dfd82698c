#!/usr/bin/env python3
"""Make docs/screenshot.png for the README: the page with a few real tasks in it.

Starts the service in embedded mode (API + worker, throw-away data directory), uploads
generated images through the API with one cookie, then opens /frontend/ in headless
Debian Chromium with that same cookie and saves a full-page PNG.

    .venv/bin/python scripts/screenshot.py [--out docs/screenshot.png] [--width 1200]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from PIL import Image  # noqa: E402

from tests.support import images  # noqa: E402
from tests.support.frontend import browser, samples  # noqa: E402
from tests.support.frontend.stack import embedded_stack  # noqa: E402

# (file name, bytes): processed in this order, so the list shows them newest first.
UPLOADS = [
    ("scan-2019-broken.png", images.corrupt_png()),  # ends up `failed`, with its error
    ("city-at-dusk.png", samples.picture(1920, 1080, seed=11)),
    ("portrait-studio.jpg", samples.picture(2000, 3000, seed=5, fmt="JPEG")),
    ("holiday-beach-IMG_4031.jpg", samples.picture(4000, 3000, seed=8, fmt="JPEG")),
]
PENDING = ("garden-panorama.jpg", samples.picture(3000, 1200, seed=21, fmt="JPEG"))
REFUSED = ("notes.jpg", samples.not_an_image())  # shown as a refused upload line


def wait_all_terminal(client, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = client.get("/api/tasks").json()["items"]
        if len(items) == count and all(t["status"] in ("completed", "failed") for t in items):
            return
        time.sleep(0.2)
    raise TimeoutError("tasks did not finish")


def wait_for(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(str(condition))
        time.sleep(0.1)


def capture(out: Path, width: int) -> None:
    with tempfile.TemporaryDirectory(prefix="imgproc-screenshot-") as tmp:
        base = Path(tmp)
        with embedded_stack(base) as stack:
            with stack.client() as client:
                for name, data in UPLOADS:
                    response = client.post("/api/newTask", files={"file": (name, data)})
                    response.raise_for_status()
                    time.sleep(1.1)  # distinct "uploaded" minutes are not needed, distinct order is
                wait_all_terminal(client, len(UPLOADS))
                # No worker: the last upload stays pending, so the picture shows that badge too.
                stack.stop_process(stack.workers[0])
                client.post("/api/newTask", files={"file": PENDING}).raise_for_status()
                cookie = next(iter(client.cookies.jar))

            with browser.chromium(width=width, height=900, profile_dir=base) as driver:
                driver.get(stack.url + "/livez")  # the origin must be open before add_cookie
                driver.add_cookie({"name": cookie.name, "value": cookie.value, "path": "/", "httpOnly": True})
                browser.set_viewport(driver, width, 900)
                driver.get(stack.url + "/frontend/")
                rows = "return document.querySelectorAll('#tasks .task').length"
                wait_for(lambda: driver.execute_script(rows) == len(UPLOADS) + 1)
                refused = samples.write(base, REFUSED[0], REFUSED[1])
                driver.find_element("id", "file-input").send_keys(str(refused))
                refused_line = "return !!document.querySelector('.upload[data-state=error]')"
                wait_for(lambda: driver.execute_script(refused_line))

                # Full page: make the viewport as tall as the document, then let lazy images load.
                height = driver.execute_script("return document.documentElement.scrollHeight")
                browser.set_viewport(driver, width, height)
                thumbs = (
                    "return [...document.querySelectorAll('#tasks img:not([hidden])')]"
                    ".every((i) => i.complete && i.naturalWidth > 0)"
                )
                wait_for(lambda: driver.execute_script(thumbs))
                driver.execute_script("document.activeElement && document.activeElement.blur()")
                time.sleep(0.3)
                png = driver.get_screenshot_as_png()

    image = Image.open(io.BytesIO(png))
    out.parent.mkdir(parents=True, exist_ok=True)
    image.convert("RGB").save(out, "PNG", optimize=True)
    print(f"wrote {out} ({image.width}x{image.height}, {out.stat().st_size // 1024} KiB)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshot.png")
    parser.add_argument("--width", type=int, default=1200)
    args = parser.parse_args()
    if not browser.available():
        print("needs /usr/bin/chromium and /usr/bin/chromedriver (apt install chromium chromium-driver)")
        return 1
    capture(args.out, args.width)
    return 0


if __name__ == "__main__":
    sys.exit(main())
