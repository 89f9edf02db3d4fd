"""The classifier page in Chromium: every input path, the framing step, batch mode with CSV, bad input, offline use,
sub-path deployment, keyboard-only use, accessibility (axe-core) and the 360 px layout."""

from __future__ import annotations

import base64
import contextlib
import csv
import io
import json
import shutil
import threading
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

import conftest
from conftest import CHROMIUM, CHROMIUM_ARGS, open_ready

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
COLOUR_A = (196, 120, 90)
COLOUR_B = (60, 90, 170)


# ---------------------------------------------------------------- helpers


def _metadata(site_dir: Path) -> dict:
    return json.loads((site_dir / "model" / "metadata.json").read_text())


def _wait(page, predicate: str, timeout_ms: int = 30_000) -> None:
    """Poll a JS predicate (a function expression) inside the page; the CSP forbids string wait_for_function."""
    ok = page.evaluate(f"""async () => {{
      const deadline = Date.now() + {timeout_ms};
      while (Date.now() < deadline) {{
        if (await ({predicate})()) return true;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }}
      return false;
    }}""")
    assert ok, f"timed out waiting for {predicate}; {page.watch}"


def _tensors(page) -> int:
    return page.evaluate("() => globalThis.skinlesionApp.numTensors()")


def _idle(page) -> None:
    page.evaluate("() => globalThis.skinlesionApp.idle()")


def _classify_file_directly(page, path: Path) -> list[float]:
    """The model's probabilities for a file decoded by the browser, bypassing the page's UI."""
    data = base64.b64encode(path.read_bytes()).decode()
    return page.evaluate("""async (b64) => {
      const model = await globalThis.skinlesionApp.modelReady;
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const bitmap = await createImageBitmap(new Blob([bytes]), {imageOrientation: 'from-image',
                                                                premultiplyAlpha: 'none'});
      try { return (await model.classify(bitmap)).map((r) => r.probability); } finally { bitmap.close(); }
    }""", data)


def _classify_colour(page, colour: tuple[int, int, int]) -> list[float]:
    return page.evaluate("""async ([r, g, b]) => {
      const model = await globalThis.skinlesionApp.modelReady;
      const {width, height} = model.metadata.input;
      const data = new Uint8ClampedArray(width * height * 4);
      for (let i = 0; i < data.length; i += 4) { data[i] = r; data[i + 1] = g; data[i + 2] = b; data[i + 3] = 255; }
      return (await model.classify(new ImageData(data, width, height))).map((x) => x.probability);
    }""", list(colour))


def _shown_percentages(page, card: str = ".result") -> list[float | None]:
    """The bar values of a result card, in class order (None for '<0.1%')."""
    values = page.locator(f"{card} .bar-value").all_text_contents()
    return [None if v.startswith("<") else float(v.rstrip("%")) for v in values]


def _assert_shows(shown: list[float | None], expected: list[float]) -> None:
    assert len(shown) == len(expected)
    for s, e in zip(shown, expected):
        if s is None:
            assert e < 0.001, (shown, expected)
        else:
            assert abs(s - 100 * e) <= 0.051, (shown, expected)


def _photo(path: Path, size=(800, 600), colours=(COLOUR_A, COLOUR_B), mode="RGB", **save) -> Path:
    """A picture whose left half is one colour and right half another."""
    image = Image.new(mode, size, colours[0])
    ImageDraw.Draw(image).rectangle((size[0] // 2, 0, size[0], size[1]), fill=colours[1])
    image.save(path, **save)
    return path


def _serve(folder: Path, isolate: bool = True):
    """(base URL, stop) for a static server on `folder` (it must hold an index.html); `isolate=False`: no headers of
    its own, like GitHub Pages."""
    from skinlesion.site import make_server

    server = make_server(folder, port=0, isolate=isolate)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stopped = []

    def stop() -> None:
        if not stopped:
            server.shutdown()
            server.server_close()
            stopped.append(True)

    return f"http://127.0.0.1:{server.server_address[1]}/", stop


def _under_sub_path(site_dir: Path, root: Path) -> Path:
    """The built site copied to root/sub/path/, with a different page at root/ (as on GitHub Pages)."""
    target = root / "sub" / "path"
    shutil.copytree(site_dir, target)
    (root / "index.html").write_text("<!doctype html><title>another site</title>")
    return target


@contextlib.contextmanager
def _on_pages(browser, site_dir: Path, root: Path):
    """The site as GitHub Pages serves it (under /sub/path/, no headers of its own), and a page in a fresh context:
    yields (site URL, page, served site folder, stop the server)."""
    site = _under_sub_path(site_dir, root)
    base, stop = _serve(root, isolate=False)
    context = browser.new_context()
    try:
        page = context.new_page()
        page.watch = conftest.PageWatch(page)
        yield f"{base}sub/path/", page, site, stop
    finally:
        context.close()
        stop()


def _wait_for_service_worker(page) -> list[str]:
    """Waits until a service worker controls the page; returns the cache names."""
    return page.evaluate("""async () => {
      await navigator.serviceWorker.ready;
      if (!navigator.serviceWorker.controller) {
        await new Promise((resolve) => navigator.serviceWorker.addEventListener('controllerchange', resolve,
                                                                                  {once: true}));
      }
      return caches.keys();
    }""")


def _cache_version(site: Path) -> str:
    line = next(x for x in (site / "sw.js").read_text().splitlines() if x.startswith("const VERSION"))
    return json.loads(line.split("=", 1)[1].strip().rstrip(";"))


def _classify_without_crop(page, path: Path) -> None:
    page.uncheck("#crop-first")
    before = page.locator(".result .bars:not([hidden])").count()
    page.set_input_files("#file-input", str(path))
    _idle(page)
    assert page.locator(".result .bars:not([hidden])").count() == before + 1, f"{page.text_content('#messages')}"


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("photos")
    return {
        "halves": _photo(folder / "halves.png"),
        "lesion": _photo(folder / "lesion.jpg", colours=((215, 170, 140), (120, 70, 50)), quality=92),
        "second": _photo(folder / "second.png", colours=((150, 100, 80), (230, 200, 180))),
    }


# ---------------------------------------------------------------- one photo, the framing step


def test_framing_by_keyboard_classifies_exactly_the_frame(page, site_url, site_dir, photos):
    meta = _metadata(site_dir)
    open_ready(page, site_url)
    baseline = _tensors(page)
    page.set_input_files("#file-input", str(photos["halves"]))
    page.wait_for_selector("#crop-dialog[open]")
    assert page.evaluate("() => document.activeElement.id") == "crop-viewport"
    # the default frame is the classifier's centre crop at the model's aspect
    w, h = meta["input"]["width"], meta["input"]["height"]
    fit_w = min(800, 600 * w / h)
    frame = [float(v) for v in page.get_attribute("#crop-dialog", "data-frame").split(",")]
    assert frame == pytest.approx([(800 - fit_w) / 2, (600 - fit_w * h / w) / 2, fit_w, fit_w * h / w], abs=0.1)
    # + zooms in by 1.25 about the centre; arrows move by 5% of the frame
    page.keyboard.press("+")
    page.keyboard.press("ArrowRight")
    x, y, fw, fh = [float(v) for v in page.get_attribute("#crop-dialog", "data-frame").split(",")]
    assert fw == pytest.approx(fit_w / 1.25, abs=0.1)
    assert x == pytest.approx(400 - fw / 2 + 0.05 * fw, abs=0.1)
    assert "zoom 125%" in page.text_content("#crop-info")
    # zoom all the way in, move to the far left: the frame then holds colour A only
    for _ in range(12):
        page.keyboard.press("+")
    for _ in range(20):
        page.keyboard.press("Shift+ArrowLeft")
    x, y, fw, fh = [float(v) for v in page.get_attribute("#crop-dialog", "data-frame").split(",")]
    assert x == 0 and x + fw < 400, (x, fw)
    page.keyboard.press("Enter")
    page.wait_for_selector(".result .bars:not([hidden])")
    _idle(page)
    # focus moves to the new card; Tab then reaches its first control (the map toggle), not past the card
    assert page.evaluate("() => document.activeElement.className") == "result"
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.closest('.result-map-toggle') !== null")
    _assert_shows(_shown_percentages(page), _classify_colour(page, COLOUR_A))
    # what the card shows is the frame, at the model's aspect
    cw, ch = page.evaluate("() => { const c = document.querySelector('.result-image'); return [c.width, c.height]; }")
    assert cw / ch == pytest.approx(w / h, abs=0.02)
    assert "of the 800 x 600 px photo" in page.text_content(".result-size")
    assert _tensors(page) == baseline


def test_framing_step_shows_how_large_the_training_lesions_are(page, site_url, photos):
    """The dashed guide circle is as tall as the median lesion of the training photos is in their frame."""
    report = json.loads((conftest.SHIPPED_MODEL / "report.json").read_text())
    share = report["framing"]["training_lesion_size"]["median"]
    open_ready(page, site_url)
    page.set_input_files("#file-input", str(photos["halves"]))
    page.wait_for_selector("#crop-dialog[open]")
    circle, frame = page.evaluate("""() => {
        const viewport = document.querySelector('#crop-viewport');
        return [parseFloat(getComputedStyle(viewport, '::before').height), viewport.clientHeight]; }""")
    assert frame > 100 and circle == pytest.approx(share * frame, abs=1.5)
    assert "dashed circle" in page.text_content("#crop-help")
    page.click("#crop-cancel")


def test_skip_classifies_the_whole_photo_and_cancel_classifies_nothing(page, site_url, photos):
    open_ready(page, site_url)
    page.set_input_files("#file-input", str(photos["lesion"]))
    page.wait_for_selector("#crop-dialog[open]")
    page.click("#crop-skip")
    page.wait_for_selector(".result .bars:not([hidden])")
    _assert_shows(_shown_percentages(page), _classify_file_directly(page, photos["lesion"]))

    page.set_input_files("#file-input", str(photos["second"]))
    page.wait_for_selector("#crop-dialog[open]")
    page.keyboard.press("Escape")
    page.wait_for_selector(".message-info")
    assert "second.png was not classified (cancelled)" in page.text_content("#messages")
    assert page.locator(".result").count() == 1
    assert not page.locator("#crop-dialog").evaluate("(d) => d.open")


def test_framing_by_mouse_drag_wheel_and_pinch(page, site_url, photos):
    open_ready(page, site_url)
    page.set_input_files("#file-input", str(photos["halves"]))
    page.wait_for_selector("#crop-dialog[open]")
    frame = lambda: [float(v) for v in page.get_attribute("#crop-dialog", "data-frame").split(",")]  # noqa: E731
    box = page.locator("#crop-viewport").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    page.mouse.wheel(0, -400)  # zoom in about the pointer
    page.wait_for_timeout(100)
    zoomed = frame()
    assert zoomed[2] < 700, zoomed
    page.mouse.down()
    page.mouse.move(cx + 50, cy, steps=5)  # dragging the photo right shows more of its left
    page.mouse.up()
    dragged = frame()
    assert dragged[0] < zoomed[0] and dragged[2] == zoomed[2], (zoomed, dragged)
    # two touch points moving apart zoom in (synthetic pointer events, as a touch screen sends them)
    page.evaluate("""([cx, cy]) => {
      const v = document.getElementById('crop-viewport');
      const send = (type, id, x) => v.dispatchEvent(new PointerEvent(type, {pointerId: id, pointerType: 'touch',
        clientX: x, clientY: cy, bubbles: true, isPrimary: id === 11}));
      send('pointerdown', 11, cx - 20); send('pointerdown', 12, cx + 20);
      send('pointermove', 11, cx - 60); send('pointermove', 12, cx + 60);
      send('pointerup', 11, cx - 60); send('pointerup', 12, cx + 60);
    }""", [cx, cy])
    pinched = frame()
    assert pinched[2] < dragged[2] * 0.5, (dragged, pinched)
    page.click("#crop-reset")
    assert frame()[2] == pytest.approx(800, abs=0.1)


def test_drop_and_paste_reach_the_classifier(page, site_url, photos):
    open_ready(page, site_url)
    page.uncheck("#crop-first")
    data = base64.b64encode(photos["second"].read_bytes()).decode()
    dispatch = """([b64, how]) => {
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const dt = new DataTransfer();
      dt.items.add(new File([bytes], how + '.png', {type: 'image/png'}));
      if (how === 'dropped') {
        document.getElementById('dropzone').dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true,
                                                                                cancelable: true}));
      } else {
        document.dispatchEvent(new ClipboardEvent('paste', {clipboardData: dt, bubbles: true, cancelable: true}));
      }
    }"""
    page.evaluate(dispatch, [data, "dropped"])
    page.wait_for_selector(".result .bars:not([hidden])")
    page.evaluate(dispatch, [data, "pasted"])
    _wait(page, "() => document.querySelectorAll('.result .bars:not([hidden])').length === 2")
    names = page.locator(".result .result-file").all_text_contents()
    assert names == ["pasted.png", "dropped.png"], names
    # an empty paste (text only) says so
    page.evaluate("() => document.dispatchEvent(new ClipboardEvent('paste', {clipboardData: new DataTransfer()}))")
    assert "The clipboard holds no image" in page.text_content("#messages")


# ---------------------------------------------------------------- batch


def test_batch_table_progress_csv_and_flat_memory(page, site_url, site_dir, photos, tmp_path):
    codes = [c["code"] for c in _metadata(site_dir)["classes"]]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0" + b"not really a jpeg" * 20)
    open_ready(page, site_url)
    baseline = _tensors(page)
    files = [photos["lesion"], broken, photos["halves"], photos["second"]]
    page.set_input_files("#file-input", [str(p) for p in files])
    page.wait_for_selector("#batch:not([hidden])")
    _idle(page)
    assert page.text_content("#batch-status") == "Done: 3 of 4 photos classified, 1 could not be read."
    assert page.evaluate("() => [document.getElementById('batch-progress').value, "
                         "document.getElementById('batch-progress').max]") == [4, 4]
    assert page.locator("#crop-dialog[open]").count() == 0, "batch mode never asks for a frame"
    assert page.locator(".batch-table thead th").all_text_contents() == ["File", "Most likely", "Probability", *codes]
    rows = page.locator(".batch-table tbody tr")
    assert rows.count() == 4
    assert "broken.jpg could not be read as an image" in rows.nth(1).text_content()
    assert _tensors(page) == baseline

    page.evaluate("""() => {
      globalThis.seenUrls = {created: [], revoked: []};
      const create = URL.createObjectURL, revoke = URL.revokeObjectURL;
      URL.createObjectURL = (blob) => { const u = create.call(URL, blob); seenUrls.created.push(u); return u; };
      URL.revokeObjectURL = (u) => { seenUrls.revoked.push(u); revoke.call(URL, u); };
    }""")
    page.focus("#batch-csv")
    with page.expect_download() as info:
        page.keyboard.press("Enter")
    download = info.value
    assert download.suggested_filename == "skin-lesion-results.csv"
    table = list(csv.reader(io.StringIO(Path(download.path()).read_text(encoding="utf-8"))))
    assert table[0] == ["image", *codes]
    assert [r[0] for r in table[1:]] == ["lesion", "halves", "second"]
    for row, tr in zip(table[1:], [0, 2, 3]):
        probabilities = [float(v) for v in row[1:]]
        assert sum(probabilities) == pytest.approx(1, abs=1e-4)
        _assert_shows(_shown_percentages_row(page, tr), probabilities)
    assert [float(v) for v in table[1][1:]] == pytest.approx(_classify_file_directly(page, photos["lesion"]),
                                                            abs=1e-6)
    _wait(page, "() => seenUrls.created.length === 1 && seenUrls.revoked.includes(seenUrls.created[0])", 5000)


def test_batch_stop_skips_the_rest(page, site_url, photos):
    open_ready(page, site_url)
    data = [base64.b64encode(photos[k].read_bytes()).decode() for k in ("lesion", "halves", "second")]
    # choose three files and press Stop in the same task, before the first one is read
    page.evaluate("""(files) => {
      const dt = new DataTransfer();
      files.forEach((b64, i) => dt.items.add(new File([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))],
                                                      `photo${i}.png`, {type: 'image/png'})));
      const input = document.getElementById('file-input');
      input.files = dt.files;
      input.dispatchEvent(new Event('change'));
      document.getElementById('batch-stop').click();
    }""", data)
    _idle(page)
    assert page.text_content("#batch-status") == "Done: 0 of 3 photos classified, 3 skipped (stopped)."
    assert page.is_disabled("#batch-csv") and page.is_disabled("#batch-stop")
    page.set_input_files("#file-input", [str(photos["lesion"]), str(photos["second"])])  # a new batch runs again
    _idle(page)
    assert page.text_content("#batch-status") == "Done: 2 of 5 photos classified, 3 skipped (stopped)."


def _shown_percentages_row(page, index: int) -> list[float | None]:
    cells = page.locator(".batch-table tbody tr").nth(index).locator("td").all_text_contents()[2:]
    return [None if v.startswith("<") else float(v.rstrip("%")) for v in cells]


def test_folder_input_classifies_the_images_in_it(page, site_url, photos, tmp_path):
    folder = tmp_path / "visit"
    (folder / "left arm").mkdir(parents=True)
    shutil.copy(photos["lesion"], folder / "lesion.jpg")
    shutil.copy(photos["second"], folder / "left arm" / "second.png")
    (folder / "notes.txt").write_text("not a photo")
    open_ready(page, site_url)
    page.set_input_files("#folder-input", str(folder))
    page.wait_for_selector("#batch:not([hidden])")
    _idle(page)
    assert "1 file(s) in the folder are not images and were left out." in page.text_content("#messages")
    names = sorted(page.locator(".batch-table tbody th").all_text_contents())
    assert names == ["visit/left arm/second.png", "visit/lesion.jpg"], names
    assert page.text_content("#batch-status") == "Done: 2 of 2 photos classified."


# ---------------------------------------------------------------- bad input


def _big_jpeg(path: Path) -> Path:
    image = Image.new("RGB", (8660, 5773), (210, 160, 130))
    ImageDraw.Draw(image).ellipse((3000, 2000, 5600, 3800), fill=(110, 60, 40))
    image.save(path, quality=70)
    return path


def _transparent_png(path: Path) -> Path:
    image = Image.new("RGBA", (400, 300), (150, 80, 60, 255))
    ImageDraw.Draw(image).rectangle((0, 0, 400, 60), fill=(0, 0, 0, 0))
    image.save(path)
    return path


def _animated_gif(path: Path) -> Path:
    frames = [Image.new("RGB", (200, 150), c) for c in (COLOUR_A, COLOUR_B, (20, 160, 40))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return path


def _rotated_jpeg(path: Path) -> Path:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.new("RGB", (240, 120), COLOUR_A).save(path, exif=exif)
    return path


# (file name, how to write it, message on the page, whether it is classified after the message)
BAD_INPUTS = [
    ("notes.txt", lambda p: p.write_text("a text file"), "notes.txt is not an image (text/plain)", False),
    ("corrupt.jpg", lambda p: p.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF" + bytes(range(256)) * 8),
     "corrupt.jpg could not be read as an image", False),
    ("empty.png", lambda p: p.write_bytes(b""), "empty.png: the file is empty", False),
    ("IMG_0001.HEIC", lambda p: p.write_bytes(b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + bytes(200)),
     "this browser cannot open HEIC/HEIF photos", False),
    ("renamed-iphone-photo", lambda p: p.write_bytes(b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + bytes(200)),
     "Convert it to JPEG first", False),
    ("huge.jpg", _big_jpeg, "huge.jpg is a large photo (8660 x 5773 px, 50 megapixels); it was scaled down to "
     "4096 x 2731 px", True),
    ("tiny.png", lambda p: Image.new("RGB", (40, 30), COLOUR_A).save(p), "tiny.png is very small (40 x 30 px)", True),
    ("transparent.png", _transparent_png, "transparent.png has transparent areas", True),
    ("grey.jpg", lambda p: Image.linear_gradient("L").resize((320, 240)).save(p), "grey.jpg is a greyscale", True),
    ("clear.png", lambda p: Image.new("RGBA", (320, 240), (0, 0, 0, 0)).save(p),
     "clear.png looks blank (one flat colour, or transparent)", True),
    ("flat.jpg", lambda p: Image.new("RGB", (320, 240), COLOUR_A).save(p), "flat.jpg looks blank (one flat colour)",
     True),
    ("animated.gif", _animated_gif, "animated.gif is an animated GIF: only its first frame is classified", True),
    ("rotated.jpg", _rotated_jpeg, None, True),
]


@pytest.fixture(scope="module")
def bad_page(browser, site_url):
    """One page for all the bad inputs in turn: each must leave it working for the next."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.watch = conftest.PageWatch(page)
    open_ready(page, site_url)
    page.uncheck("#crop-first")
    page.baseline = _tensors(page)
    yield page
    context.close()


@pytest.mark.parametrize("name, write, message, classified", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_gets_a_clear_message_and_the_page_keeps_working(bad_page, tmp_path, name, write, message,
                                                                   classified):
    page = bad_page
    path = tmp_path / name
    write(path)
    page.click("#clear") if page.is_visible("#clear") else None
    page.set_input_files("#file-input", str(path))
    _idle(page)
    text = page.text_content("#messages")
    if message:
        assert message in text, text
    cards = page.locator(".result .bars:not([hidden])").count()
    assert cards == (1 if classified else 0), (cards, text)
    if not classified:
        assert page.locator(".message-error").count() == 1, text
    assert page.get_attribute("main", "data-state") == "ready"
    assert _tensors(page) == page.baseline
    assert not [e for e in page.watch.errors if e.startswith("pageerror")], page.watch
    pixel = "([x, y]) => Array.from(document.querySelector('.result-image').getContext('2d')" \
            ".getImageData(x, y, 1, 1).data)"
    if name == "transparent.png":  # the transparent band is white in what the model saw
        assert page.evaluate(pixel, [5, 2]) == [255, 255, 255, 255]
    if name == "animated.gif":  # the first frame's colour, not the later ones'
        r, g, b, _ = page.evaluate(pixel, [10, 10])
        assert max(abs(r - COLOUR_A[0]), abs(g - COLOUR_A[1]), abs(b - COLOUR_A[2])) <= 6, (r, g, b)
    if name == "rotated.jpg":  # EXIF orientation applied: 240 x 120 stored, shown upright as 120 x 240
        assert "of the 120 x 240 px photo" in page.text_content(".result-size")


# ---------------------------------------------------------------- camera


def test_live_camera_view_captures_a_picture_with_the_keyboard(browser, site_url):
    # A second Chromium with a fake camera (a test pattern) that needs no permission prompt.
    args = [*CHROMIUM_ARGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
    camera_browser = browser.browser_type.launch(executable_path=CHROMIUM, headless=True, args=args)
    try:
        page = camera_browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        page.watch = conftest.PageWatch(page)
        open_ready(page, site_url)
        assert page.is_visible("#camera-open")
        page.focus("#camera-open")
        page.keyboard.press("Enter")
        page.wait_for_selector("#camera-capture:not([disabled])")
        assert page.evaluate("() => document.activeElement.id") == "camera-capture"
        assert page.evaluate("() => document.getElementById('camera-video').videoWidth") > 0
        page.keyboard.press("Enter")
        page.wait_for_selector("#crop-dialog[open]")
        assert page.evaluate("() => document.getElementById('camera-video').srcObject") is None, \
            "the camera must stop once the picture is taken"
        page.keyboard.press("Enter")
        page.wait_for_selector(".result .bars:not([hidden])")
        assert page.text_content(".result .result-file") == "Camera picture 1"
        assert not [e for e in page.watch.errors if e.startswith("pageerror")], page.watch
    finally:
        camera_browser.close()


def test_camera_that_cannot_start_says_why(page, site_url):
    open_ready(page, site_url)  # the shared browser has no camera at all
    page.click("#camera-open")
    page.wait_for_selector(".message-error")
    text = page.text_content("#messages")
    assert "camera" in text.lower() and "Choose a photo instead" in text, text
    assert not page.locator("#camera-dialog").evaluate("(d) => d.open")
    assert page.evaluate("() => document.activeElement.id") == "camera-open"


# ---------------------------------------------------------------- keyboard, accessibility, layout


def test_keyboard_alone_reaches_every_control_and_classifies(page, site_url, photos):
    open_ready(page, site_url)
    order = []
    for _ in range(13):
        page.keyboard.press("Tab")
        order.append(page.evaluate("() => document.activeElement.id || document.activeElement.textContent.trim()"))
    expected = ["Skip to content", "Skin lesion classifier", "Classify", "Model card",
                "what such changes did in our tests", "framing", "Settings: where the model runs", "file-input",
                "folder-input", "camera-input", "camera-open", "crop-first", "model card"]
    assert order == expected, order
    # back to the photo picker; Space opens the file chooser
    for _ in range(len(order) - 1 - order.index("file-input")):
        page.keyboard.press("Shift+Tab")
    assert page.evaluate("() => document.activeElement.id") == "file-input"
    # Space opens the file chooser: Chromium's own behaviour for a focused file input. With both cores busy,
    # headless Chromium now and then drops that first key press (about 1 run in 5 under load, seen here), so a
    # second press is allowed; Enter is the other key that opens it.
    for key in ("Space", "Enter"):
        try:
            with page.expect_file_chooser(timeout=10_000) as chooser:
                page.keyboard.press(key)
            break
        except PlaywrightTimeoutError:
            assert key != "Enter", "neither Space nor Enter opened the file chooser"
    chooser.value.set_files(str(photos["lesion"]))
    page.wait_for_selector("#crop-dialog[open]")
    seen = []
    for _ in range(10):
        page.keyboard.press("Tab")
        seen.append(page.evaluate("() => document.activeElement.id"))
        if seen[-1] == "crop-confirm":
            break
    # "zoom out" is disabled (and skipped) while the frame is the whole centre crop
    assert seen == ["crop-zoom", "crop-zoom-in", "crop-reset", "crop-confirm"], seen
    page.keyboard.press("Enter")
    page.wait_for_selector(".result .bars:not([hidden])")
    assert page.evaluate("() => document.activeElement.getAttribute('aria-label')") == "Result for lesion.jpg"


def _axe(page) -> list[str]:
    page.add_script_tag(path=str(AXE))
    violations = page.evaluate("""async () => {
      const result = await axe.run(document, {runOnly: {type: 'tag',
        values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice']}});
      return result.violations.map((v) => `${v.id} (${v.impact}): ${v.help} at ` +
        v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(' | '));
    }""")
    return violations


def test_axe_finds_no_accessibility_violations(browser, site_url, photos):
    if not AXE.is_file():
        pytest.fail(f"{AXE} is missing: run scripts/setup.sh (installs axe-core from npm)")
    # axe is injected as an inline script, which the page's CSP rightly refuses: bypass it in this test only.
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    try:
        page = context.new_page()
        page.watch = conftest.PageWatch(page)
        open_ready(page, site_url)
        page.uncheck("#crop-first")
        page.set_input_files("#file-input", str(photos["lesion"]))
        page.wait_for_selector(".result .bars:not([hidden])")
        page.set_input_files("#file-input", [str(photos["halves"]), str(photos["second"])])
        _idle(page)
        assert _axe(page) == []
        page.check("#crop-first")
        page.set_input_files("#file-input", str(photos["halves"]))
        page.wait_for_selector("#crop-dialog[open]")
        assert _axe(page) == []
        page.keyboard.press("Escape")
        page.goto(f"{site_url}model-card.html")
        assert _axe(page) == []
    finally:
        context.close()


def test_360px_layout_has_no_sideways_scroll(browser, site_url, photos, tmp_path):
    context = browser.new_context(viewport={"width": 360, "height": 780}, device_scale_factor=2, is_mobile=True,
                                  has_touch=True)
    try:
        page = context.new_page()
        page.watch = conftest.PageWatch(page)
        open_ready(page, site_url)
        page.set_input_files("#file-input", str(photos["lesion"]))
        page.wait_for_selector("#crop-dialog[open]")
        box = page.locator("#crop-dialog").bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 360, box
        confirm = page.locator("#crop-confirm").bounding_box()
        assert confirm["y"] + confirm["height"] <= 780, "the confirm button must be on screen with the frame"
        page.screenshot(path=str(tmp_path / "crop-360.png"))
        page.click("#crop-confirm")
        page.wait_for_selector(".result .bars:not([hidden])")
        page.set_input_files("#file-input", [str(photos["halves"]), str(photos["second"])])
        _idle(page)
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 360, f"page is {width} px wide at a 360 px viewport"
        page.screenshot(path=str(tmp_path / "result-360.png"), full_page=True)
    finally:
        context.close()


@pytest.mark.parametrize("width", [1280, 768])  # a desktop page, a tablet held upright
def test_model_card_tables_fit_a_desktop_or_tablet_page_without_scrolling(page, site_url, width):
    # A table wider than its box hides its last column behind a scroll bar (a phone's column scrolls them: too narrow)
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(site_url + "model-card.html")
    overflowing = page.evaluate("""() => [...document.querySelectorAll('.table-wrap')]
        .filter(wrap => wrap.scrollWidth > wrap.clientWidth).map(wrap => wrap.querySelector('table').id)""")
    assert page.locator(".table-wrap table.subgroups").count() >= 4
    assert not overflowing, f"tables wider than the page: {overflowing}"


# ---------------------------------------------------------------- the reserved places for the model's analysis


def test_activation_map_lies_over_the_model_view_and_warnings_show(page, site_url, tmp_path):
    """The page draws analyze()'s map over the part of the photo the model saw, and shows its warnings. A stand-in
    map (one hot cell, bottom right) makes the alignment checkable whatever the shipped model outputs."""
    wide = _photo(tmp_path / "wide.png", size=(1000, 500))  # the centre crop cuts its sides
    open_ready(page, site_url)
    page.uncheck("#crop-first")
    page.evaluate("""async () => {
      const model = await globalThis.skinlesionApp.modelReady;
      const { centreCrop } = await import('./static/js/classifier.js');
      const analyze = model.analyze;
      model.analyze = async (source) => {
        const real = await analyze(source);
        const {width, height} = model.metadata.input;
        const c = centreCrop(source.width, source.height, width, height);
        const crop = {x: c.x / source.width, y: c.y / source.height, width: c.width / source.width,
                      height: c.height / source.height};
        return {...real, cam: {width: 2, height: 2, values: new Float32Array([0, 0, 0, 1]), crop},
                uncertain: true, outOfDistribution: true};
      };
    }""")
    page.set_input_files("#file-input", str(wide))
    page.wait_for_selector(".result .bars:not([hidden])")
    overlay = page.locator(".result .result-overlay")
    assert overlay.is_visible() and page.is_visible(".result .result-map-toggle")
    boxes = page.evaluate("""() => ['.result-overlay', '.result-image'].map((s) => {
      const r = document.querySelector(`.result ${s}`).getBoundingClientRect();
      return [r.x, r.y, r.width, r.height];
    })""")
    assert boxes[0] == pytest.approx(boxes[1], abs=0.5), boxes
    alpha = page.evaluate("""() => {
      const c = document.querySelector('.result .result-overlay');
      const at = (fx, fy) => c.getContext('2d').getImageData(Math.floor(fx * c.width), Math.floor(fy * c.height),
                                                             1, 1).data[3];
      return [at(0.95, 0.9), at(0.05, 0.1), at(0.05, 0.9), at(0.95, 0.1)];
    }""")
    assert alpha[0] > 100 and max(alpha[1:]) < 40, f"hot cell not in the bottom-right of the view: {alpha}"
    warning = page.text_content(".result .result-warning")
    assert "does not look like the dermatoscopic" in warning and "The model is unsure" in warning
    page.uncheck(".result .result-map-toggle input")
    assert overlay.is_hidden()


def test_without_a_map_or_warnings_nothing_extra_is_shown(page, site_url, photos):
    open_ready(page, site_url)
    page.uncheck("#crop-first")
    page.evaluate("""async () => {
      const model = await globalThis.skinlesionApp.modelReady;
      const analyze = model.analyze;
      model.analyze = async (source) => ({...(await analyze(source)), cam: null, uncertain: false,
                                          outOfDistribution: false});
    }""")
    page.set_input_files("#file-input", str(photos["lesion"]))
    page.wait_for_selector(".result .bars:not([hidden])")
    for hidden in (".result-overlay", ".result-map-toggle", ".result-warning"):
        assert page.locator(f".result {hidden}").is_hidden(), hidden


# ---------------------------------------------------------------- deployment: sub-path, offline, new build


def test_site_under_a_sub_path_stays_under_it(browser, site_dir, photos, tmp_path):
    with _on_pages(browser, site_dir, tmp_path) as (url, page, _, _):
        open_ready(page, url)
        _classify_without_crop(page, photos["lesion"])
        _wait_for_service_worker(page)  # registered 2 s after the model is ready
        page.click("text=Model card")
        page.wait_for_selector("h1")
        assert page.url == f"{url}model-card.html"
        scope = page.evaluate("async () => (await navigator.serviceWorker.ready).scope")
        assert scope == url
        outside = [u for u in page.watch.requests if not u.startswith(url) and not u.startswith(("blob:", "data:"))]
        assert outside == [], outside


def test_a_visit_that_starts_on_the_model_card_also_works_offline_next_time(browser, site_dir, tmp_path):
    with _on_pages(browser, site_dir, tmp_path) as (url, page, site, stop):
        page.goto(f"{url}model-card.html")
        assert _wait_for_service_worker(page) == [f"skinlesion:{url}:{_cache_version(site)}"]
        stop()
        page.context.set_offline(True)
        open_ready(page, url)  # the classifier page and its model, never visited, come from the precache


def test_second_visit_works_with_the_network_cut(browser, site_dir, photos, tmp_path):
    with _on_pages(browser, site_dir, tmp_path) as (url, page, site, stop):
        open_ready(page, url)
        caches = _wait_for_service_worker(page)
        assert caches == [f"skinlesion:{url}:{_cache_version(site)}"], caches
        assert "Offline use: ready" in page.text_content("#offline-status")
        stop()  # the server is gone, and the browser is offline too
        page.context.set_offline(True)
        page.reload()
        open_ready(page, url)
        _classify_without_crop(page, photos["lesion"])
        page.goto(f"{url}model-card.html")
        assert "Model card" in page.text_content("h1")


def test_on_a_host_without_headers_the_service_worker_isolates_the_next_visit(browser, site_dir, tmp_path):
    with _on_pages(browser, site_dir, tmp_path) as (url, page, _, _):
        url += "?backend=wasm"
        open_ready(page, url)
        assert page.evaluate("crossOriginIsolated") is False
        assert "one thread" in page.text_content("#threads-note")
        _wait_for_service_worker(page)
        page.reload()
        open_ready(page, url)
        assert page.evaluate("crossOriginIsolated") is True, page.watch
        assert page.evaluate("typeof SharedArrayBuffer") == "function"
        threads = page.evaluate("tf.wasm.getThreadsCount()")
        assert f"{threads} thread" in page.text_content("#backend")
        assert "logical processor" in page.text_content("#threads-note")
        assert page.watch.errors == [], page.watch


def test_settings_choose_the_backend_and_threads(page, site_url):
    open_ready(page, site_url)
    assert page.evaluate("crossOriginIsolated") is True  # `serve` sends the isolation headers
    page.click(".settings summary")
    page.select_option("#setting-backend", "cpu")
    page.select_option("#setting-threads", "1")
    page.click("#settings-form button[type=submit]")
    page.wait_for_url("**/index.html?backend=cpu&threads=1")
    open_ready(page, page.url)
    assert "plain JavaScript" in page.text_content("#backend")
    assert "chosen in the settings" in page.text_content("#backend")
    assert page.input_value("#setting-backend") == "cpu" and page.input_value("#setting-threads") == "1"
    page.select_option("#setting-backend", "wasm")
    page.click("#settings-form button[type=submit]")
    page.wait_for_url("**/index.html?backend=wasm&threads=1")
    open_ready(page, page.url)
    assert "WebAssembly (wasm), 1 thread:" in page.text_content("#backend")
    assert page.watch.errors == [], page.watch


def test_a_new_build_replaces_the_old_cache(browser, site_dir, tmp_path):
    from skinlesion.site import build_site

    served = tmp_path / "www"
    shutil.copytree(site_dir, served)
    base, stop = _serve(served)
    context = browser.new_context()
    try:
        page = context.new_page()
        page.watch = conftest.PageWatch(page)
        open_ready(page, base)
        old = _wait_for_service_worker(page)
        assert old == [f"skinlesion:{base}:{_cache_version(served)}"]
        # a new build of the same site, from a model with another version, replaces the served folder
        model = tmp_path / "model"
        shutil.copytree(conftest.SHIPPED_MODEL, model)
        meta_path = model / "tfjs" / "metadata.json"
        meta = json.loads(meta_path.read_text())
        meta["version"] = "newbuild1"
        meta_path.write_text(json.dumps(meta))
        build_site(model, served)
        new = f"skinlesion:{base}:{_cache_version(served)}"
        assert new != old[0]
        page.reload()
        _wait(page, f"async () => JSON.stringify(await caches.keys()) === JSON.stringify([{json.dumps(new)}])")
        page.wait_for_selector(".message-info")
        assert "A new version of this site has been installed" in page.text_content("#messages")
        page.reload()
        open_ready(page, base)
        assert "version newbuild1" in page.text_content("#model-status")
    finally:
        context.close()
        stop()
