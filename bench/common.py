"""What the browser benchmarks share: the test-split images, a served folder, Debian's Chromium, a ready page.

Reads a model folder's `split.csv` and the HAM10000 images it names; serves a built site with `site.make_server` in
a thread; launches `/usr/bin/chromium` headless through Playwright. Writes nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from skinlesion import SkinLesionError  # noqa: E402
from skinlesion.classes import CODES  # noqa: E402
from skinlesion.site import make_server  # noqa: E402

DEFAULT_MODEL = ROOT / "model"
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ham10000"

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--disable-quic"]

# Records, in the page's own clock (ms since navigation start), when main[data-state] leaves "loading".
# An init script, not page.evaluate: it must be in place before the page's scripts run.
READY_OBSERVER = """(() => {
  const check = () => {
    const main = document.querySelector('main[data-state]');
    if (main && main.dataset.state !== 'loading' && !globalThis.__benchReady) {
      globalThis.__benchReady = { state: main.dataset.state, ms: performance.now() };
    }
    return Boolean(globalThis.__benchReady);
  };
  const observer = new MutationObserver(() => { if (check()) observer.disconnect(); });
  observer.observe(document, { subtree: true, childList: true, attributes: true, attributeFilter: ['data-state'] });
})();"""


def split_table_arguments(description: str) -> argparse.ArgumentParser:
    """The options of the benchmarks that score a model on its own split in Python and can write their tables into its
    report (robustness.py, subgroups.py): --model, --data, --split, --rounds, --save."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--split", choices=("test", "val"), default="test")
    parser.add_argument("--rounds", type=int, default=1000, help="bootstrap resamples (default 1000)")
    parser.add_argument("--save", action="store_true", help="write the tables into the model's report.json (the "
                        "whole test split only), for the model card")
    return parser


def machine() -> str:
    """Date, host, CPUs and load: other work on the machine slows every timing down."""
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{datetime.datetime.now():%Y-%m-%d %H:%M}, {platform.node()} ({platform.machine()}): {os.cpu_count()} "
            f"CPUs, load average {load} (1/5/15 min) at the start")


def test_split(model_dir: Path, data_dir: Path, limit: int | None = None) -> tuple[list[Path], list[int]]:
    """Paths and label indices of the model's test-split images (split.csv order), the first `limit` of them."""
    split_csv = Path(model_dir) / "split.csv"
    if not split_csv.is_file():
        raise SkinLesionError(f"{split_csv} is missing: the benchmarks need the model's own test split; "
                              f"retrain with `python build.py --retrain`")
    test = pd.read_csv(split_csv)
    test = test[test["split"] == "test"]
    if limit is not None:
        test = test.head(limit)
    paths = [Path(data_dir) / "images" / f"{image_id}.jpg" for image_id in test["image_id"]]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise SkinLesionError(f"{missing[0]} not found ({len(missing)} test images missing); pass --data, the "
                              f"HAM10000 folder whose images/ holds the model's images")
    return paths, [CODES.index(dx) for dx in test["dx"]]


@contextlib.contextmanager
def served(site_dir: Path):
    """Serve a built site on a free port for the duration of the block; yields its base URL (ending in /)."""
    server = make_server(site_dir, port=0)
    default_handler = server.handle_error

    def handle_error(request, client_address) -> None:
        # The browser drops connections it no longer needs (a superseded fetch, a closed page): not a failure.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            default_handler(request, client_address)

    server.handle_error = handle_error
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def chromium():
    """Debian's Chromium, headless, through Playwright (which cannot download its own browsers here)."""
    if not Path(CHROMIUM).exists():
        raise SkinLesionError(f"{CHROMIUM} is missing: install it with `apt-get install -y chromium`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def wait_ready(page, timeout_ms: int) -> float:
    """Wait until the page's model is loaded; return ms from navigation start to ready (the page's clock)."""
    page.wait_for_selector("main:not([data-state=loading])", timeout=timeout_ms)
    ready = page.evaluate("() => globalThis.__benchReady")
    if not ready or ready["state"] != "ready":
        status = page.text_content("#messages") or page.text_content("#model-status")
        raise SkinLesionError(f"the page did not load the model (state {ready and ready['state']}): {status}")
    return float(ready["ms"])
