"""Unit tests for skinlesion.webapp: icons, the web app manifest and the service worker that site.build_site writes."""

from __future__ import annotations

import html as html_module
import json
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from skinlesion import site, webapp
from test_site import model_dir  # noqa: F401  (the fake model folder fixture)

ROOT = Path(__file__).resolve().parent.parent


def _sw(built: Path) -> tuple[str, list[str]]:
    """The cache version and precache list written into sw.js."""
    text = (built / "sw.js").read_text(encoding="utf-8")
    version = re.search(r"^const VERSION = (.+);$", text, re.M)
    precache = re.search(r"^const PRECACHE = (.+);$", text, re.M)
    assert version and precache, text[:2000]
    return json.loads(version.group(1)), json.loads(precache.group(1))


@pytest.fixture
def built(model_dir: Path, tmp_path: Path) -> Path:  # noqa: F811
    return site.build_site(model_dir, tmp_path / "dist")


def test_manifest_is_relative_and_its_icons_exist(built: Path) -> None:
    manifest = json.loads((built / "manifest.webmanifest").read_text(encoding="utf-8"))
    assert manifest["start_url"] == "./index.html" and manifest["scope"] == "./", manifest
    assert manifest["display"] == "standalone"
    purposes = set()
    for icon in manifest["icons"]:
        assert not icon["src"].startswith(("/", "http")), icon
        with Image.open(built / icon["src"]) as image:
            assert image.format == "PNG"
            assert f"{image.width}x{image.height}" == icon["sizes"], icon
        purposes.add(icon["purpose"])
    assert {"any", "maskable"} <= purposes
    assert {"192x192", "512x512"} <= {i["sizes"] for i in manifest["icons"]}
    html = (built / "index.html").read_text(encoding="utf-8")
    assert '<link rel="manifest" href="manifest.webmanifest">' in html


def test_service_worker_precaches_every_file_of_the_build_by_relative_url(built: Path) -> None:
    version, precache = _sw(built)
    files = sorted(p.relative_to(built).as_posix() for p in built.rglob("*") if p.is_file() and p.name != "sw.js")
    assert precache == ["./", *files]
    for must in ("index.html", "model-card.html", "static/js/app.js", "static/vendor/tfjs/tf.min.js",
                 "static/vendor/tfjs/tfjs-backend-wasm-simd.wasm", "model/model.json", "model/metadata.json",
                 "model/group1-shard1of1.bin", "manifest.webmanifest", "icons/icon-192.png"):
        assert must in precache, must
    assert not [u for u in precache if u.startswith(("/", "http:", "https:", "//")) or ".." in u]
    assert re.fullmatch(r"abc123de-[0-9a-f]{12}", version), version


def test_service_worker_follows_the_basic_sample(built: Path) -> None:
    text = (built / "sw.js").read_text(encoding="utf-8")
    for event in ("install", "activate", "fetch"):
        assert f"addEventListener('{event}'" in text
    assert "request.method !== 'GET'" in text and "self.location.origin" in text  # same-origin GETs only
    assert "caches.delete" in text and "self.clients.claim()" in text  # old caches go, the page is taken over
    assert "importScripts" not in text and "http" not in text.split("const PRECACHE")[1].split(";")[0]


def test_service_worker_adds_the_isolation_headers_to_pages(built: Path) -> None:
    text = (built / "sw.js").read_text(encoding="utf-8")
    headers = re.search(r"^const ISOLATION_HEADERS = (.+);$", text, re.M)
    assert headers and json.loads(headers.group(1)) == webapp.ISOLATION_HEADERS
    assert "navigation ? isolated(response) : response" in text


def test_same_inputs_same_version_any_change_a_new_one(model_dir: Path, tmp_path: Path,  # noqa: F811
                                                       monkeypatch) -> None:
    first, _ = _sw(site.build_site(model_dir, tmp_path / "a"))
    again, _ = _sw(site.build_site(model_dir, tmp_path / "b"))
    assert first == again, "the cache version must not change between identical builds"

    meta_path = model_dir / "tfjs" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["version"] = "fedcba98"
    meta_path.write_text(json.dumps(meta))
    new_model, _ = _sw(site.build_site(model_dir, tmp_path / "c"))
    assert new_model.startswith("fedcba98-") and new_model != first

    static = tmp_path / "static"
    shutil.copytree(site.STATIC_DIR, static)
    (static / "css" / "style.css").write_text((static / "css" / "style.css").read_text() + "\n/* changed */\n")
    monkeypatch.setattr(site, "STATIC_DIR", static)
    new_static, _ = _sw(site.build_site(model_dir, tmp_path / "d"))
    assert new_static.split("-")[0] == "fedcba98" and new_static != new_model


def test_cache_version_survives_odd_model_versions(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x")
    assert webapp.cache_version(tmp_path, ["a.txt"], "").startswith("unversioned-")
    assert webapp.cache_version(tmp_path, ["a.txt"], "v1/../'x'").startswith("v1..x-")


def test_privacy_section_quotes_the_csp_the_page_declares(built: Path) -> None:
    html = (built / "index.html").read_text(encoding="utf-8")
    privacy = html[html.index('<section id="privacy"'):]
    privacy = " ".join(html_module.unescape(privacy[:privacy.index("</section>")]).split())
    assert site.CSP in privacy
    for fact in ("Nothing is uploaded", "No third party is contacted", "Nothing is stored unless you ask",
                 "service worker", "never stores photos or results"):
        assert fact in privacy, fact


def test_pages_workflow_builds_and_deploys_dist() -> None:
    workflow = (ROOT / ".github" / "workflows" / "pages.yml").read_text(encoding="utf-8")
    for needed in ("branches: [main]", "python-version: \"3.11\"", "pip install -e .", "python build.py",
                   "actions/upload-pages-artifact", "path: dist", "actions/deploy-pages", "pages: write",
                   "id-token: write"):
        assert needed in workflow, needed
