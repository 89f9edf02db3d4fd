"""Shared fixtures: the HAM10000 copy in ../shared, tiny datasets built from it, a tiny trained model."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
HAM = Path(os.environ.get("HAM10000_DIR", SHARED / "data" / "ham10000"))
SHIPPED_MODEL = ROOT / "model"

# Offline ImageNet weights (Keras honours KERAS_HOME); a user with internet needs none of this.
if "KERAS_HOME" not in os.environ and (SHARED / "weights" / "keras").is_dir():
    os.environ["KERAS_HOME"] = str(SHARED / "weights" / "keras")
ALPHA_025_WEIGHTS = Path(os.environ.get("KERAS_HOME", "~/.keras")).expanduser() / "models" / \
    "mobilenet_2_5_224_tf_no_top.h5"


@pytest.fixture(scope="session")
def ham_dir() -> Path:
    if not (HAM / "HAM10000_metadata.csv").is_file():
        pytest.fail(f"HAM10000 not found at {HAM}; put ../shared beside the repository or set HAM10000_DIR")
    return HAM


def make_subset(ham_dir: Path, folder: Path, per_class: int, layout: str = "images", boxes: bool = False) -> Path:
    """A HAM10000-layout folder with `per_class` images of each class (whole lesions kept together); with `boxes`,
    their lesion boxes too (`HAM10000_metadata_ext.csv`)."""
    metadata = pd.read_csv(ham_dir / "HAM10000_metadata.csv")
    subset = metadata.groupby("dx").head(per_class)
    subset = metadata[metadata["lesion_id"].isin(subset["lesion_id"])]
    folder.mkdir(parents=True, exist_ok=True)
    subset.to_csv(folder / "HAM10000_metadata.csv", index=False)
    if boxes:
        extended = pd.read_csv(ham_dir / "HAM10000_metadata_ext.csv")
        extended[extended["image_id"].isin(subset["image_id"])].to_csv(folder / "HAM10000_metadata_ext.csv",
                                                                      index=False)
    for n, image_id in enumerate(subset["image_id"]):
        sub = {"images": "images", "kaggle": f"HAM10000_images_part_{1 + n % 2}"}[layout]
        (folder / sub).mkdir(exist_ok=True)
        shutil.copy(ham_dir / "images" / f"{image_id}.jpg", folder / sub / f"{image_id}.jpg")
    return folder


@pytest.fixture(scope="session")
def tiny_ham(ham_dir: Path, tmp_path_factory) -> Path:
    return make_subset(ham_dir, tmp_path_factory.mktemp("tiny_ham"), per_class=10, boxes=True)


def tiny_retrain(data: Path, root: Path, extra_data: Path | None = None, **settings) -> Path:
    """Train end to end on `data` (and `extra_data`, training only) into root/model (run folder root/run): alpha 0.25,
    small input, few epochs; `settings` override TrainConfig fields."""
    from skinlesion.pipeline import retrain
    from skinlesion.recipe import TrainConfig

    config = TrainConfig(**{"views": 2, "head_epochs": 2, "fine_tune_epochs": 1, "batch_size": 16,
                            "network": {"alpha": 0.25, "height": 96, "width": 128}, **settings})
    retrain(data, root / "model", root / "run", config, weights=str(ALPHA_025_WEIGHTS), extra_data=extra_data)
    return root / "model"


@pytest.fixture(scope="session")
def tiny_model(tiny_ham: Path, tmp_path_factory) -> Path:
    """A model trained end to end on the tiny subset: real, fast, not accurate."""
    return tiny_retrain(tiny_ham, tmp_path_factory.mktemp("tiny_model"))


# ---------------------------------------------------------------- browser (Playwright + Debian's chromium)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="session")
def site_dir(tmp_path_factory) -> Path:
    """The site built from the shipped model, as `python build.py` builds it."""
    from skinlesion.site import build_site

    return build_site(SHIPPED_MODEL, tmp_path_factory.mktemp("site") / "dist")


@pytest.fixture(scope="session")
def site_url(site_dir: Path):
    """Base URL (ending in /) of `site_dir` served over http on a free port; stopped after the session."""
    import threading

    from skinlesion.site import make_server

    server = make_server(site_dir, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/setup.sh (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class PageWatch:
    """What a page did: every request URL, console errors, uncaught exceptions (shown when a test fails)."""

    def __init__(self, page):
        self.requests: list[str] = []
        self.errors: list[str] = []
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))

    def __str__(self) -> str:
        return "\n".join(self.errors) or "(no console errors)"


@pytest.fixture
def page(browser, site_url):
    """A fresh browser context and page; `page.watch` records requests and errors."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.watch = PageWatch(page)
    yield page
    context.close()


def open_ready(page, url: str, timeout_ms: int = 60_000) -> None:
    """Open the classifier page and wait until the model is loaded (or failed: then fail with the page's errors)."""
    page.goto(url)
    page.wait_for_selector("main:not([data-state=loading])", timeout=timeout_ms)
    state = page.get_attribute("main", "data-state")
    assert state == "ready", f"model state {state}; {page.watch}"
