"""The page with output presets configured (IMGPROC_PRESETS), in headless Chromium against the
real service (API + worker, embedded mode): the preset picker, what an upload sends, each task's
variants with their links, the <picture> snippet and its Copy button, the server's 422 in words.
The page without presets (no picker, today's hint) is in test_page.py."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal

import pytest
from selenium.webdriver.common.keys import Keys

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
    wait_for_tasks,
)
from tests.support.frontend.stack import embedded_stack

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not browser.CHROMIUM.is_file(), reason="needs /usr/bin/chromium (scripts/system-packages)"),
]

PRESETS = [
    {"name": "thumb", "width": 160, "height": 160, "fit": "cover", "formats": ["webp"]},
    {"name": "web", "width": 800, "height": 600, "formats": ["jpeg", "webp"], "default": True},
    {"name": "hero", "width": 1200, "height": 900, "formats": ["avif", "webp", "jpeg"]},
]
MAX_OUTPUTS = 5  # all three ticked make 6 outputs: refused with a 422
LABEL = {"jpeg": "JPEG", "webp": "WebP", "avif": "AVIF"}
HINT_TAIL = "(EXIF-rotated, metadata removed). JPEG, PNG, WebP, GIF, BMP or TIFF."

# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    with embedded_stack(
        tmp_path_factory.mktemp("presets"), PRESETS=json.dumps(PRESETS), MAX_OUTPUTS_PER_TASK=MAX_OUTPUTS
    ) as running:
        yield running


@pytest.fixture
def page(driver, stack):
    """A new visitor's page, once the preset picker has been built from /api/presets."""
    open_as_new_visitor(driver, stack.url + "/frontend/")
    wait_for(driver, lambda d: len(picker(d)["options"]) == len(PRESETS), message="the preset picker")
    # What each upload sends, as the page hands it to XMLHttpRequest (file parts by name).
    driver.execute_script(
        """
        window.__sent = [];
        const realSend = XMLHttpRequest.prototype.send;
        XMLHttpRequest.prototype.send = function (body) {
          if (body instanceof FormData) {
            window.__sent.push([...body.entries()].map(([k, v]) => [k, typeof v === 'string' ? v : v.name]));
          }
          return realSend.call(this, body);
        };
        """
    )
    return driver


# --------------------------------------------------------------------------- helpers

PICKER_JS = """
const fieldset = document.getElementById('presets');
const count = document.getElementById('preset-count');
return {
  shown: !fieldset.hidden && fieldset.getBoundingClientRect().height > 0,
  legend: fieldset.querySelector('legend').textContent,
  describedBy: fieldset.getAttribute('aria-describedby'),
  hint: document.querySelector('.hint').textContent.replace(/\\s+/g, ' ').trim(),
  count: count.textContent,
  over: count.dataset.over,
  options: [...fieldset.querySelectorAll('input')].map((box) => ({
    type: box.type, value: box.value, checked: box.checked,
    label: box.labels.length === 1 ? box.labels[0].textContent.replace(/\\s+/g, ' ').trim() : null,
  })),
};
"""


def picker(driver) -> dict:
    return driver.execute_script(PICKER_JS)


def set_ticked(driver, *names: str) -> None:
    """Clicks the checkboxes (as a user would) until exactly these are ticked."""
    for option in picker(driver)["options"]:
        if option["checked"] != (option["value"] in names):
            driver.find_element("css selector", f'#preset-options input[value="{option["value"]}"]').click()
    assert [o["value"] for o in picker(driver)["options"] if o["checked"]] == [
        p["name"] for p in PRESETS if p["name"] in names
    ]


VARIANTS_JS = """
const li = document.querySelector(`#tasks .task[data-task-id="${arguments[0]}"]`);
const box = li.querySelector('.variants');
const details = li.querySelector('details.snippet');
const link = li.querySelector('a.download');
return {
  shown: !box.hidden && box.getBoundingClientRect().height > 0,
  listLabel: li.querySelector('.variant-list').getAttribute('aria-label'),
  items: [...li.querySelectorAll('.variant-list li')].map((item) => ({
    text: item.textContent, href: item.querySelector('a').href, link: item.querySelector('a').textContent,
    facts: item.querySelector('.variant-facts').textContent,
  })),
  summary: details.querySelector('summary').textContent,
  open: details.open,
  snippet: li.querySelector('.snippet-code code').textContent,
  copyLabel: li.querySelector('button.copy').getAttribute('aria-label'),
  copyStatus: li.querySelector('.copy-status').textContent,
  result: li.querySelector('.fact-after dd').textContent,
  download: link.getAttribute('download'), downloadHref: link.href, downloadLabel: link.getAttribute('aria-label'),
};
"""


def variants_on_page(driver, task_id: int) -> dict:
    return driver.execute_script(VARIANTS_JS, task_id)


def api_task(driver, stack, task_id: int) -> dict:
    """The task as the API gives it to this visitor (the page's cookie)."""
    answer = browser_fetch(driver, f"{stack.url}/api/tasks/{task_id}")
    assert answer.get("status") == 200, answer
    return json.loads(base64.b64decode(answer["body"]))


def sent_fields(driver) -> list[list[list[str]]]:
    return driver.execute_script("return window.__sent")


def size_text(n: int) -> str:
    """The page's byte count (formatBytes: 1000-based, one decimal below 10), as en-US prints it."""
    value, unit = Decimal(n), 0
    while value >= 1000 and unit < 3:
        value /= 1000
        unit += 1
    digits = Decimal("0.1") if unit > 0 and value < 10 else Decimal("1")
    shown = value.quantize(digits, rounding=ROUND_HALF_UP).normalize()
    return f"{shown:f} {['B', 'kB', 'MB', 'GB'][unit]}"


def expected_snippet(base: str, task: dict) -> str:
    """The <picture> the page promises for this task's srcset, built independently of app.js:
    AVIF and WebP sources, then the JPEG (or else the last format) as the <img>, absolute URLs."""
    srcset = task["srcset"]
    formats = [f for f in ("avif", "webp", "jpeg") if f in srcset]
    img_format = "jpeg" if "jpeg" in formats else formats[-1]

    def absolute(text: str) -> list[tuple[str, int]]:
        pairs = [candidate.split() for candidate in text.split(", ")]
        return [(base + url, int(width.removesuffix("w"))) for url, width in pairs]

    candidates = absolute(srcset[img_format])
    src, width = next(((u, w) for u, w in candidates if w == task["metadata"]["width"]), candidates[-1])
    height = next(v["height"] for v in task["variants"] if base + v["url"] == src)
    sizes = f' sizes="(max-width: {width}px) 100vw, {width}px"'
    listed = lambda pairs: ", ".join(f"{url} {w}w" for url, w in pairs)  # noqa: E731
    lines = ["<picture>"]
    lines += [
        f'  <source type="image/{f}" srcset="{listed(absolute(srcset[f]))}"{sizes}>' for f in formats if f != img_format
    ]
    lines += [f'  <img src="{src}" srcset="{listed(candidates)}"{sizes} width="{width}" height="{height}" alt="">']
    return "\n".join([*lines, "</picture>"])


def upload_one(driver, tmp_path, name: str, width: int, height: int, seed: int) -> dict:
    choose_files(driver, samples.write(tmp_path, name, samples.picture(width, height, seed=seed)))
    (row,) = wait_for_tasks(driver, 1)
    assert row["status"] == "completed", row
    return row


def contrast(driver, selector: str) -> float:
    """WCAG contrast of an element's text colour against the card's background."""
    return driver.execute_script(
        """
        const rgb = (c) => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
        const lum = ([r, g, b]) => [r, g, b].map((v) => {
          v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
        }).reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
        const e = document.querySelector(arguments[0]);
        let bgEl = e;
        while (getComputedStyle(bgEl).backgroundColor === 'rgba(0, 0, 0, 0)') bgEl = bgEl.parentElement;
        const [a, b] = [lum(rgb(getComputedStyle(e).color)), lum(rgb(getComputedStyle(bgEl).backgroundColor))];
        return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
        """,
        selector,
    )


# --------------------------------------------------------------------------- tests


def test_picker_lists_the_presets_with_the_defaults_ticked_and_the_hint_describes_them(page):
    driver = page
    shown = picker(driver)
    assert shown["shown"] and shown["legend"] == "Make these for each upload"
    assert shown["describedBy"] == "preset-count"
    assert [(o["type"], o["value"], o["checked"], o["label"]) for o in shown["options"]] == [
        ("checkbox", "thumb", False, "thumb 160\u00d7160 cover, WebP"),
        ("checkbox", "web", True, "web 800\u00d7600 contain, JPEG + WebP"),
        ("checkbox", "hero", False, "hero 1200\u00d7900 contain, AVIF + WebP + JPEG"),
    ]
    assert shown["hint"] == (
        f"Each image becomes the sizes ticked below, up to 1200\u00d7900 pixels in JPEG, WebP or AVIF {HINT_TAIL}"
    )
    assert shown["count"] == "2 files per image (at most 5)." and shown["over"] == "false"

    # Keyboard: Tab from the page's links reaches the first checkbox, Space ticks it.
    driver.execute_script("document.querySelector('a[href=\"../flower/\"]').focus()")
    driver.switch_to.active_element.send_keys(Keys.TAB)
    assert driver.execute_script("return document.activeElement.value") == "thumb"
    driver.switch_to.active_element.send_keys(Keys.SPACE)
    assert picker(driver)["count"] == "3 files per image (at most 5)."
    ring = driver.execute_script(
        "const s = getComputedStyle(document.querySelector('.preset:focus-within'));"
        " return [s.outlineStyle, parseFloat(s.outlineWidth)]"
    )
    assert ring[0] != "none" and ring[1] >= 2, ring

    set_ticked(driver)
    assert picker(driver)["count"] == "None ticked: the default presets (web), 2 files per image (at most 5)."
    set_ticked(driver, "thumb", "web", "hero")
    shown = picker(driver)
    assert shown["count"] == "6 files per image; at most 5 are allowed, untick some." and shown["over"] == "true"
    assert_clean_console(driver)


def test_ticked_presets_are_sent_and_the_task_shows_exactly_those_variants(page, stack, tmp_path):
    driver = page
    set_ticked(driver, "thumb", "hero")
    row = upload_one(driver, tmp_path, "photo.png", 1600, 1200, seed=11)
    assert sent_fields(driver) == [[["presets", "thumb,hero"], ["file", "photo.png"]]]

    task = api_task(driver, stack, row["id"])
    made = [(v["preset"], v["format"]) for v in task["variants"]]
    assert sorted(made) == [("hero", "avif"), ("hero", "jpeg"), ("hero", "webp"), ("thumb", "webp")], made

    shown = variants_on_page(driver, row["id"])
    assert shown["shown"] and shown["listLabel"] == "Sizes and formats of photo.png"
    assert shown["items"] == [
        {
            "link": f"{v['preset']} {LABEL[v['format']]}",
            "href": stack.url + v["url"],
            "facts": f"{v['width']}\u00d7{v['height']}, {size_text(v['size'])}",
            "text": f"{v['preset']} {LABEL[v['format']]} {v['width']}\u00d7{v['height']}, {size_text(v['size'])}",
        }
        for v in task["variants"]
    ]
    assert [item["link"] for item in shown["items"]][-1] == "thumb WebP"  # largest first
    # The main result (the first JPEG made) keeps today's facts, thumbnail and download.
    assert shown["result"].startswith("1200\u00d7900 JPEG, "), shown["result"]
    assert shown["downloadHref"] == f"{stack.url}/api/tasks/{row['id']}/result"
    assert shown["download"] == "photo.jpg" and shown["downloadLabel"] == "Download photo.png as JPEG"

    # Every link serves that variant, in its format and size, with the visitor's cookie.
    for item, variant in zip(shown["items"], task["variants"], strict=True):
        answer = browser_fetch(driver, item["href"])
        assert answer.get("status") == 200, answer
        assert answer["type"] == f"image/{variant['format']}" and answer["length"] == variant["size"], answer
        assert answer["decoded"] == [variant["width"], variant["height"]], answer

    # The snippet: closed until asked for, then the <picture> for the main result's shape (the
    # square thumbnail is another crop, so it is not in the srcset).
    assert not shown["open"] and shown["summary"] == "Use on a page"
    assert shown["snippet"] == expected_snippet(stack.url, task)
    assert "thumb" not in shown["snippet"]
    assert shown["snippet"].splitlines()[1].startswith('  <source type="image/avif"')
    assert shown["snippet"].splitlines()[2].startswith('  <source type="image/webp"')
    driver.find_element("css selector", f'#tasks .task[data-task-id="{row["id"]}"] details.snippet summary').click()
    assert variants_on_page(driver, row["id"])["open"]
    code = driver.find_element("css selector", f'#tasks .task[data-task-id="{row["id"]}"] .snippet-code')
    assert code.is_displayed() and code.text == shown["snippet"]

    # Pasted into a page, the snippet works: this Chromium takes AVIF, so it shows the AVIF.
    picked = driver.execute_async_script(
        """
        const [html, done] = arguments;
        const holder = document.createElement('div');
        holder.style.width = '1200px';
        holder.innerHTML = html;  // the test's own probe, not the app
        document.body.append(holder);
        const img = holder.querySelector('img');
        const report = () => { done([img.currentSrc, img.naturalWidth, img.naturalHeight]); holder.remove(); };
        if (img.complete && img.naturalWidth) report(); else { img.onload = report; img.onerror = report; }
        """,
        shown["snippet"],
    )
    assert picked == [f"{stack.url}/api/tasks/{row['id']}/results/hero.avif", 1200, 900], picked

    # Idempotent: a refresh with nothing new leaves the rows alone (details open, same nodes).
    driver.execute_script("document.querySelector('.variant-list li').__marker = 1")
    before = driver.execute_script(
        "return performance.getEntriesByType('resource').filter((e) => e.name.includes('/api/tasks?')).length"
    )
    driver.execute_script("document.dispatchEvent(new Event('visibilitychange'))")  # the page refreshes at once
    wait_for(
        driver,
        lambda d: (
            d.execute_script(
                "return performance.getEntriesByType('resource').filter((e) => e.name.includes('/api/tasks?')).length"
            )
            > before
        ),
        timeout=10,
        message="a list refresh",
    )
    assert variants_on_page(driver, row["id"])["open"]
    assert driver.execute_script("return document.querySelector('.variant-list li').__marker") == 1

    # Legible in both colour schemes, and nothing sideways on a phone.
    for scheme in ("light", "dark"):
        driver.execute_cdp_cmd(
            "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": scheme}]}
        )
        for selector in (".variant-facts", ".variant-list a", ".snippet-code", ".snippet-note", ".preset-desc"):
            assert contrast(driver, selector) >= 4.5, (scheme, selector, contrast(driver, selector))
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
    browser.set_viewport(driver, 360, 780, mobile=True)
    driver.save_screenshot(str(tmp_path / "variants-360.png"))
    assert_no_horizontal_overflow(driver, 360)
    browser.clear_viewport(driver)
    assert_clean_console(driver)


def test_copy_puts_the_snippet_on_the_clipboard_or_else_selects_it(page, stack, tmp_path):
    driver = page
    set_ticked(driver, "thumb")  # no JPEG asked for: the main result is the WebP
    row = upload_one(driver, tmp_path, "square.png", 640, 480, seed=12)
    assert sent_fields(driver) == [[["presets", "thumb"], ["file", "square.png"]]]
    task = api_task(driver, stack, row["id"])
    shown = variants_on_page(driver, row["id"])
    assert [item["link"] for item in shown["items"]] == ["thumb WebP"]
    assert shown["result"].startswith("160\u00d7160 WebP, "), shown["result"]
    assert shown["download"] == "square.webp" and shown["downloadLabel"] == "Download square.png as WebP"
    thumb = f"{stack.url}/api/tasks/{row['id']}/results/thumb.webp"
    assert (
        shown["snippet"]
        == expected_snippet(stack.url, task)
        == (
            "<picture>\n"
            f'  <img src="{thumb}" srcset="{thumb} 160w" sizes="(max-width: 160px) 100vw, 160px"'
            ' width="160" height="160" alt="">\n'
            "</picture>"
        )
    )

    # The clipboard API, with the permission a user would grant; the button pressed from the keyboard.
    driver.execute_cdp_cmd(
        "Browser.grantPermissions",
        {"origin": stack.url, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]},
    )
    task_row = f'#tasks .task[data-task-id="{row["id"]}"]'
    driver.find_element("css selector", f"{task_row} details.snippet summary").click()
    copy = driver.find_element("css selector", f"{task_row} button.copy")
    assert copy.get_attribute("aria-label") == "Copy the HTML for square.png"
    copy.send_keys(Keys.ENTER)
    wait_for(driver, lambda d: variants_on_page(d, row["id"])["copyStatus"] == "Copied.", timeout=5, message="Copied.")
    read = "navigator.clipboard.readText().then(arguments[0], (e) => arguments[0]('error: ' + e))"
    assert driver.execute_async_script(read) == shown["snippet"]
    assert "HTML for square.png: copied." in announced(driver)

    # Without the clipboard API (a refusal), the snippet is selected for Ctrl+C.
    driver.execute_script(
        """
        window.__realWrite = navigator.clipboard.writeText.bind(navigator.clipboard);
        return window.__realWrite('something else').then(() => {
          navigator.clipboard.writeText = () => Promise.reject(new DOMException('refused', 'NotAllowedError'));
          getSelection().removeAllRanges();
        });
        """
    )
    driver.execute_script(f"document.querySelector('{task_row} .copy-status').textContent = ''")
    copy.click()
    status = wait_for(driver, lambda d: variants_on_page(d, row["id"])["copyStatus"], timeout=5, message="a status")
    assert driver.execute_script("return getSelection().toString()") == shown["snippet"]
    # document.execCommand('copy') on that selection still works here (the click is a user
    # activation); where it does not, the words say the snippet is selected for Ctrl+C.
    if status == "Copied.":
        assert driver.execute_async_script(read) == shown["snippet"]
    else:
        assert status == "Selected: press Ctrl+C (\u2318C on a Mac) to copy.", status
    driver.execute_script(
        f"document.execCommand = () => false; getSelection().removeAllRanges();"
        f" document.querySelector('{task_row} .copy-status').textContent = ''"
    )
    copy.click()
    status = wait_for(driver, lambda d: variants_on_page(d, row["id"])["copyStatus"], timeout=5, message="a status")
    assert status == "Selected: press Ctrl+C (\u2318C on a Mac) to copy.", status
    assert driver.execute_script("return getSelection().toString()") == shown["snippet"]
    assert "HTML for square.png: selected: press Ctrl+C" in announced(driver)
    assert_clean_console(driver)

    # Reloaded, the row shows its variant again, whichever of /api/presets and the list answers first.
    driver.refresh()
    wait_for(
        driver,
        lambda d: (
            d.execute_script("return document.querySelector('#tasks .task')")
            and variants_on_page(d, row["id"])["items"]
        ),
        message="the variant listed after a reload",
    )
    assert [item["link"] for item in variants_on_page(driver, row["id"])["items"]] == ["thumb WebP"]


def test_too_many_outputs_show_the_servers_422_detail(page, stack, tmp_path):
    driver = page
    set_ticked(driver, "thumb", "web", "hero")
    data = samples.picture(400, 300, seed=13)
    with stack.client() as client:
        asked = client.post("/api/newTask", files={"file": ("probe.png", data)}, data={"presets": "thumb,web,hero"})
    assert asked.status_code == 422, asked.text
    detail = asked.json()["detail"]
    assert re.search(r"6 outputs.*at most 5", detail), detail

    choose_files(driver, samples.write(tmp_path, "many.png", data))
    (line,) = wait_for(driver, lambda d: [r for r in uploads(d) if r["state"] == "error"], message="a refused upload")
    assert line["status"] == detail and line["buttons"] == ["Dismiss"], line
    assert driver.execute_script("return document.querySelectorAll('#uploads [role=alert]').length") == 1
    assert sent_fields(driver) == [[["presets", "thumb,web,hero"], ["file", "many.png"]]]
    assert tasks(driver) == []

    # Unticking one is enough: the next upload is accepted.
    set_ticked(driver, "thumb", "web")
    row = upload_one(driver, tmp_path, "fewer.png", 400, 300, seed=14)
    made = sorted((v["preset"], v["format"]) for v in api_task(driver, stack, row["id"])["variants"])
    assert made == [("thumb", "webp"), ("web", "jpeg"), ("web", "webp")], made
    assert_clean_console(driver, allowed_statuses=(422,))


def test_none_ticked_sends_no_presets_field_and_the_defaults_are_made(page, stack, tmp_path):
    driver = page
    set_ticked(driver)
    row = upload_one(driver, tmp_path, "plain.png", 1000, 750, seed=15)
    assert sent_fields(driver) == [[["file", "plain.png"]]]
    task = api_task(driver, stack, row["id"])
    assert [(v["preset"], v["format"]) for v in task["variants"]] in (
        [("web", "jpeg"), ("web", "webp")],
        [("web", "webp"), ("web", "jpeg")],
    )
    shown = variants_on_page(driver, row["id"])
    assert sorted(item["link"] for item in shown["items"]) == ["web JPEG", "web WebP"]
    assert shown["snippet"] == expected_snippet(stack.url, task)
    assert [line.split()[0:2] for line in shown["snippet"].splitlines()[1:3]] == [
        ["<source", 'type="image/webp"'],
        ["<img", f'src="{stack.url}/api/tasks/{row["id"]}/results/web.jpeg"'],
    ]
    assert shown["result"].startswith("800\u00d7600 JPEG, ") and shown["download"] == "plain.jpg"
    assert_clean_console(driver)
