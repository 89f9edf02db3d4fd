"""Unit tests for skinlesion.site: the site renders from a model dir, with relative URLs, a CSP and the report."""

from __future__ import annotations

import json
import re
import socket
import struct
import threading
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest

from skinlesion import SkinLesionError, classes, site
from skinlesion.webapp import ISOLATION_HEADERS

# A valid 1x1 PNG; the site only copies plot files, it never decodes them.
PNG_1X1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cf000000030101009a5c5a3b0000000049454e44ae426082"
)
CODES = [c.code for c in classes.CLASSES]


def _report() -> dict:
    """A report shaped like the one the pipeline writes (evaluate.metrics + pipeline.retrain)."""
    cm = [[0] * 7 for _ in range(7)]
    for i in range(7):
        cm[i][i] = 10 + i
    cm[4][5] = 6  # 6 melanomas called moles
    cm[5][4] = 3  # 3 moles called melanoma
    return {
        "model": {"backbone": "MobileNet v1 alpha 1.0", "input": [192, 256], "fine_tuned_from": "conv_pw_6_relu",
                  "quantization": "float16", "tfjs_bytes": 6_300_000, "temperature": 1.37},
        "data": {"folder": "/home/someone/secret/ham10000", "images": 10015},
        "split": {
            name: {"images": n, "lesions": n - 100, "per_class": {c: n // 7 for c in CODES}}
            for name, n in (("train", 7123), ("val", 1489), ("test", 1403))
        },
        "test": {
            "images": 1403, "accuracy": 0.8123, "balanced_accuracy": 0.7141, "top2_accuracy": 0.9012,
            "top3_accuracy": 0.9567, "macro_roc_auc": 0.9345, "expected_calibration_error": 0.0432,
            "melanoma": {"sensitivity": 0.7, "specificity": 0.9123, "true_positives": 14, "false_negatives": 6,
                         "true_negatives": 1380, "false_positives": 3},
            "melanoma_at_threshold": {"threshold": 0.1234, "sensitivity": 0.85, "specificity": 0.8,
                                      "true_positives": 17, "false_negatives": 3, "true_negatives": 1100,
                                      "false_positives": 283},
            "per_class": {c: {"precision": 0.512 + i / 100, "recall": 0.433, "f1": 0.471, "support": 40 + i,
                              "roc_auc": None if c == "df" else 0.876} for i, c in enumerate(CODES)},
            "confusion_matrix": cm,
            "bootstrap_95": {"accuracy": [0.79, 0.83], "balanced_accuracy": [0.66, 0.75],
                             "melanoma_sensitivity": [0.5, 0.9], "melanoma_at_threshold_sensitivity": [0.7, 0.95]},
            "bootstrap_resampled": "lesions",
            "brier_score": 0.2718,  # a key the card does not know yet
        },
        "calibration": {"temperature": 1.37, "fit_on": "validation", "test_ece_before": 0.0871,
                        "test_ece_after": 0.0432},
        "warnings": {
            "alert_sensitivity_target": 0.85, "alert_thresholds": {"mel": 0.1234, "bcc": 0.2},
            "alerts_on_test": {"mel": {"threshold": 0.1234, "sensitivity": 0.85, "specificity": 0.8,
                                       "true_positives": 17, "false_negatives": 3, "true_negatives": 1100,
                                       "false_positives": 283},
                               "bcc": {"threshold": 0.2, "sensitivity": 0.9, "specificity": 0.95}},
            "uncertain_accuracy_target": 0.9, "uncertain_below": 0.6888, "test_share_uncertain": 0.2635,
            "test_accuracy_when_confident": 0.8861, "test_accuracy_when_uncertain": 0.5332,
            "ood_flagged_share_target": 0.02, "ood_threshold": 157.472, "test_share_out_of_distribution": 0.0238,
            "ood_components": 64,  # a key the card does not know yet
        },
        "external_test": {"images": 500, "accuracy": 0.6543},  # a section the card does not know yet
        "plots": {"confusion_matrix": "confusion_matrix.png", "reliability": "plots/reliability.png"},
        "training": {"stages": {"train_head": {"wall_time_s": 321.5}}, "wall_time_s": 1800, "seed": 42,
                     "date": "2026-11-29"},
    }


def _contract_report() -> dict:
    """The smaller shape from the design brief: no counts, no intervals, no threshold."""
    report = _report()
    test = report["test"]
    for key in ("melanoma_at_threshold", "bootstrap_95", "expected_calibration_error", "brier_score"):
        del test[key]
    test["melanoma"] = {"sensitivity": 0.7, "specificity": 0.9123}
    del report["data"], report["calibration"], report["warnings"]
    return report


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A fake model dir as the pipeline writes it: tfjs/{model.json,*.bin,metadata.json}, report.json, plots."""
    d = tmp_path / "model"
    (d / "tfjs").mkdir(parents=True)
    (d / "tfjs" / "model.json").write_text(json.dumps({"format": "graph-model", "weightsManifest": []}))
    (d / "tfjs" / "group1-shard1of1.bin").write_bytes(b"\0" * 16)
    metadata = {
        "name": "skinlesion-mobilenet", "model_url": "model.json",
        "input": {"height": 192, "width": 256, "channels": 3, "value_range": [0, 255], "crop": "center",
                  "resize": "bilinear", "half_pixel_centers": True},
        "output": "probabilities", "classes": classes.as_dicts(), "temperature": 1.0, "version": "abc123de",
    }
    (d / "tfjs" / "metadata.json").write_text(json.dumps(metadata))
    (d / "report.json").write_text(json.dumps(_report()))
    (d / "confusion_matrix.png").write_bytes(PNG_1X1)
    (d / "plots").mkdir()
    (d / "plots" / "reliability.png").write_bytes(PNG_1X1)
    return d


@pytest.fixture
def built(model_dir: Path, tmp_path: Path) -> Path:
    return site.build_site(model_dir, tmp_path / "dist")


class _Links(HTMLParser):
    """Collects every URL-valued attribute and the CSP meta tags of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.csp: list[str] = []
        self.scripts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for key in ("href", "src", "action", "data-metadata-url", "poster", "srcset"):
            if a.get(key) is not None:
                self.urls.append(a[key])
        if tag == "meta" and (a.get("http-equiv") or "").lower() == "content-security-policy":
            self.csp.append(a.get("content") or "")
        if tag == "script" and a.get("src"):
            self.scripts.append(a["src"])


def _parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


PAGES = ("index.html", "model-card.html")


def test_build_writes_pages_static_and_model(built: Path) -> None:
    expected = [
        "index.html", "model-card.html", "static/css/style.css", "static/js/app.js", "static/js/backend.js",
        "static/js/classifier.js", "static/vendor/tfjs/tf.min.js", "static/vendor/tfjs/tf-backend-wasm.min.js",
        "static/vendor/tfjs/tfjs-backend-wasm-simd.wasm", "model/model.json", "model/group1-shard1of1.bin",
        "model/metadata.json", "model/confusion_matrix.png", "model/plots/reliability.png",
    ]
    missing = [p for p in expected if not (built / p).is_file()]
    assert missing == [], f"missing from {built}: {missing}"


@pytest.mark.parametrize("page", PAGES)
def test_all_urls_relative_and_resolvable(built: Path, page: str) -> None:
    urls = _parse(built / page).urls
    assert urls, f"no URLs found in {page}"
    absolute = [u for u in urls if u.startswith(("/", "http:", "https:", "//"))]
    assert absolute == [], f"{page} has absolute URLs (break under a GitHub Pages sub-path): {absolute}"
    targets = {u.split("#")[0] for u in urls if not u.startswith(("#", "data:"))} - {""}
    dangling = sorted(u for u in targets if not (built / u).is_file())
    assert dangling == [], f"{page} links to files that are not in the build: {dangling}"


@pytest.mark.parametrize("page", PAGES)
def test_csp_meta_allows_own_origin_only(built: Path, page: str) -> None:
    csp = _parse(built / page).csp
    assert csp == [site.CSP], f"{page}: CSP meta tags {csp}"
    directives = dict(d.strip().split(" ", 1) for d in site.CSP.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert "'unsafe-eval'" not in site.CSP and "'unsafe-inline'" not in site.CSP
    assert not re.search(r"https?:|\*", site.CSP), site.CSP


@pytest.mark.parametrize("page", PAGES)
def test_disclaimer_on_every_page(built: Path, page: str) -> None:
    html = (built / page).read_text(encoding="utf-8")
    assert "Not a diagnosis." in html
    assert "Your photo never leaves your device" in html


def test_index_loads_tfjs_before_the_module(built: Path) -> None:
    scripts = _parse(built / "index.html").scripts
    assert scripts == ["static/js/tfjs-csp-shim.js", "static/vendor/tfjs/tf.min.js",
                       "static/vendor/tfjs/tf-backend-wasm.min.js", "static/js/app.js"]
    assert 'data-metadata-url="model/metadata.json"' in (built / "index.html").read_text(encoding="utf-8")


def test_index_class_list_comes_from_metadata(model_dir: Path, tmp_path: Path) -> None:
    meta_path = model_dir / "tfjs" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["classes"][0]["name"] = "Renamed class from metadata"
    meta_path.write_text(json.dumps(meta))
    html = (site.build_site(model_dir, tmp_path / "out") / "index.html").read_text(encoding="utf-8")
    assert "Renamed class from metadata" in html
    assert "What the 7 classes mean" in html


def _cells(html: str, attr: str, value: str) -> list[str]:
    """The text of the cells in the table row with attr=value, tags stripped."""
    row = re.search(rf'<tr {attr}="{value}">(.*?)</tr>', html, re.S)
    assert row, f'no row {attr}="{value}"'
    return [re.sub(r"<[^>]+>", " ", c).split() for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row.group(1), re.S)]


def test_model_card_shows_report_metrics(built: Path) -> None:
    html = (built / "model-card.html").read_text(encoding="utf-8")
    expected = {"accuracy": "81.2%", "balanced_accuracy": "71.4%", "top2_accuracy": "90.1%",
                "top3_accuracy": "95.7%", "macro_roc_auc": "0.934", "expected_calibration_error": "0.043",
                "melanoma_sensitivity": "70.0%", "melanoma_specificity": "91.2%",
                "melanoma_at_threshold_sensitivity": "85.0%", "melanoma_at_threshold_specificity": "80.0%"}
    for key, value in expected.items():
        assert _cells(html, "data-metric", key)[1][0] == value, f"{key}: {_cells(html, 'data-metric', key)}"
    # the counts behind the rates, and the bootstrap interval where the report has one
    assert " ".join(_cells(html, "data-metric", "melanoma_sensitivity")[1]) == "70.0% 14 of 20 95% CI 50.0% to 90.0%"
    assert " ".join(_cells(html, "data-metric", "melanoma_specificity")[1]) == "91.2% 1,380 of 1,383"
    assert " ".join(_cells(html, "data-metric", "accuracy")[1]) == "81.2% 91 of 100 95% CI 79.0% to 83.0%"
    assert (" ".join(_cells(html, "data-metric", "melanoma_at_threshold_sensitivity")[1])
            == "85.0% 17 of 20 95% CI 70.0% to 95.0%")
    assert "probability at least 12.3%" in html  # the alert threshold is explained
    assert "test split of <strong>1,403</strong> images" in html
    assert ("The 95% confidence intervals are percentile bootstraps that resample the lesions (all photos of a drawn "
            "lesion together)") in re.sub(r"\s+", " ", html)


def test_model_card_counts_from_confusion_matrix_when_report_has_none(model_dir: Path, tmp_path: Path) -> None:
    (model_dir / "report.json").write_text(json.dumps(_contract_report()))
    html = (site.build_site(model_dir, tmp_path / "out") / "model-card.html").read_text(encoding="utf-8")
    assert " ".join(_cells(html, "data-metric", "melanoma_sensitivity")[1]) == "70.0% 14 of 20"
    # specificity: 80 non-melanomas, 3 of them (moles) called melanoma
    assert " ".join(_cells(html, "data-metric", "melanoma_specificity")[1]) == "91.2% 77 of 80"
    assert "data-metric=\"melanoma_at_threshold_sensitivity\"" not in html
    assert "percentile bootstraps" not in html  # no intervals, no sentence about them


def test_model_card_per_class_split_and_plots(built: Path) -> None:
    html = (built / "model-card.html").read_text(encoding="utf-8")
    mel = _cells(html, "data-class", "mel")
    assert mel[1:] == [["0.552"], ["0.433"], ["0.471"], ["0.876"], ["44"]], mel
    assert "Melanoma" in mel[0]
    assert _cells(html, "data-class", "df")[4] == ["n/a"]  # AUC undefined for a class: shown as n/a, not a crash
    assert _cells(html, "data-split", "train")[1:3] == [["7,123"], ["7,023"]]
    assert '<img src="model/confusion_matrix.png"' in html
    assert '<img src="model/plots/reliability.png"' in html  # every entry of "plots" is shown
    assert "Brier score" in html and "0.2718" in html  # unknown test keys are rendered, not dropped
    assert "External test" in html and "0.6543" in html  # unknown top-level sections too
    assert "Stages · train head · wall time (s)" in html and "321.5" in html
    assert "10,015 images" in html
    assert "/home/someone" not in html  # the build machine's data path is not published


def test_model_card_explains_calibration_and_warnings(built: Path) -> None:
    html = (built / "model-card.html").read_text(encoding="utf-8")
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    assert "temperature of 1.370" in text and "0.087 before, 0.043 after" in text
    assert "still flagged 85.0% of that class's images" in text
    assert [" ".join(c) for c in _cells(html, "data-alert", "mel")[1:]] == ["12.3%", "85.0% 17 of 20",
                                                                             "20.0% 283 of 1,383"]
    assert _cells(html, "data-alert", "bcc")[1:] == [["20.0%"], ["90.0%"], ["5.0%"]]  # no counts: rates only
    assert "unsure when its top probability is under 68.9%" in text and "at least 90.0% right" in text
    assert "26.4% of the images fell under it; the top class was right for 53.3% of those and for 88.6%" in text
    assert "score above 157.5, a score that 2.0% of the validation lesions exceed" in text
    assert "It flagged 2.4% of the test lesions" in text
    assert "Warnings · ood components" in text  # keys the card does not know are still shown


def test_model_card_shows_a_test_split_caveat_only_when_the_report_has_one(model_dir: Path, tmp_path: Path) -> None:
    report = _report()
    assert "test-caveat" not in (site.build_site(model_dir, tmp_path / "a") / "model-card.html").read_text()
    report["test_split_caveat"] = "Kept over another model after both test reports were seen."
    (model_dir / "report.json").write_text(json.dumps(report))
    html = (site.build_site(model_dir, tmp_path / "b") / "model-card.html").read_text(encoding="utf-8")
    assert "Kept over another model after both test reports were seen." in html
    assert "Test split caveat" not in html  # shown once, where the test figures are, not again as an unknown key


def test_model_card_says_when_the_training_time_left_out_the_feature_cache(model_dir: Path, tmp_path: Path) -> None:
    report = _report()
    first = (site.build_site(model_dir, tmp_path / "a") / "model-card.html").read_text(encoding="utf-8")
    assert "30 min" in first and "reusing the frozen-feature cache" not in first
    report["training"]["stages"]["cache_features"] = {"wall_time_s": 3.0, "reused": True}
    (model_dir / "report.json").write_text(json.dumps(report))
    html = (site.build_site(model_dir, tmp_path / "b") / "model-card.html").read_text(encoding="utf-8")
    assert "30 min, reusing the frozen-feature cache of an earlier run" in html


def test_model_card_says_when_balanced_accuracy_averages_fewer_classes(model_dir: Path, tmp_path: Path) -> None:
    report = _report()
    for present, folder in ((7, "all"), (5, "five")):
        report["test"]["balanced_accuracy_classes"] = present
        (model_dir / "report.json").write_text(json.dumps(report))
        html = (site.build_site(model_dir, tmp_path / folder) / "model-card.html").read_text(encoding="utf-8")
        assert "balanced_accuracy_classes" not in html  # a known key, not listed among the unknown ones
        assert ("Only 5 of the 7 classes have test images" in html) == (present == 5)


def test_model_card_without_warnings_says_nothing_about_them(model_dir: Path, tmp_path: Path) -> None:
    (model_dir / "report.json").write_text(json.dumps(_contract_report()))
    html = (site.build_site(model_dir, tmp_path / "out") / "model-card.html").read_text(encoding="utf-8")
    assert "data-alert" not in html and "unsure when" not in html and "temperature of" not in html


def test_model_card_data_and_limitations(built: Path) -> None:
    html = (built / "model-card.html").read_text(encoding="utf-8")
    for fact in ("HAM10000", "CC BY-NC-SA 4.0", "Tschandl", "doi:10.1038/sdata.2018.161", "Intended use",
                 "Dermatoscopic images only", "fair (light)", "Austria", "Australia", "MobileNet v1 alpha 1.0",
                 "256 x 192 px", "6.3 MB", "float16", "abc123de"):
        assert fact in html, fact


def test_model_card_tolerates_a_minimal_report(model_dir: Path, tmp_path: Path) -> None:
    (model_dir / "report.json").write_text(json.dumps({"test": {"accuracy": 0.5}}))
    html = (site.build_site(model_dir, tmp_path / "out") / "model-card.html").read_text(encoding="utf-8")
    assert "50.0%" in _cells(html, "data-metric", "accuracy")[1]


def test_missing_model_dir_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(SkinLesionError, match=r"nowhere/tfjs/metadata\.json not found.*build\.py --retrain --data DIR"):
        site.build_site(missing, tmp_path / "dist")
    assert not (tmp_path / "dist").exists()


def test_missing_report_is_a_clear_error(model_dir: Path, tmp_path: Path) -> None:
    (model_dir / "report.json").unlink()
    with pytest.raises(SkinLesionError, match=r"report\.json not found.*build\.py --retrain"):
        site.build_site(model_dir, tmp_path / "dist")


def test_broken_json_and_missing_plot_are_clear_errors(model_dir: Path, tmp_path: Path) -> None:
    (model_dir / "plots" / "reliability.png").unlink()
    with pytest.raises(SkinLesionError, match=r"reliability\.png \(plot 'reliability' in report\.json\) not found"):
        site.build_site(model_dir, tmp_path / "dist")
    (model_dir / "report.json").write_text("{not json")
    with pytest.raises(SkinLesionError, match=r"report\.json is not readable JSON"):
        site.build_site(model_dir, tmp_path / "dist")


def test_rebuild_replaces_a_previous_build(model_dir: Path, tmp_path: Path) -> None:
    out = site.build_site(model_dir, tmp_path / "dist")
    (out / "stale.txt").write_text("left over")
    site.build_site(model_dir, out)
    assert not (out / "stale.txt").exists()
    assert (out / "index.html").is_file()


def test_refuses_to_delete_a_folder_that_is_not_a_build(model_dir: Path, tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(SkinLesionError, match=r"precious exists and does not look like a previous site build"):
        site.build_site(model_dir, precious)
    assert (precious / "thesis.tex").read_text() == "years of work"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (site.build_site(model_dir, empty) / "index.html").is_file()


def test_js_reads_classes_and_sizes_from_metadata() -> None:
    """The JS must not hard-code the class list or the input size: both come from metadata.json."""
    for name in ("classifier.js", "app.js", "backend.js"):
        js = (site.STATIC_DIR / "js" / name).read_text(encoding="utf-8")
        found = [c for c in CODES if re.search(rf"['\"`]{c}['\"`]", js)]
        assert found == [], f"{name} hard-codes class codes {found}"
        assert not re.search(r"\b(192|256|224)\b", js), f"{name} hard-codes an input size"


def test_server_sends_wasm_and_module_mime_types(built: Path) -> None:
    server = site.make_server(built, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/"
        for path, mime in (("static/vendor/tfjs/tfjs-backend-wasm-simd.wasm", "application/wasm"),
                           ("static/js/app.js", "text/javascript"), ("model/metadata.json", "application/json"),
                           ("index.html", "text/html")):
            with urllib.request.urlopen(base + path, timeout=10) as r:
                assert r.headers.get_content_type() == mime, f"{path}: {r.headers['Content-Type']}"
                for name, value in ISOLATION_HEADERS.items():  # cross-origin isolated: WASM may use threads
                    assert r.headers[name] == value, (path, name)
    finally:
        server.shutdown()
        server.server_close()


def test_server_stays_quiet_when_a_browser_drops_a_download(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    """A reload while the shards load resets the connection: no traceback in the terminal, and serving goes on."""
    (tmp_path / "index.html").write_text("<!doctype html><title>t</title>", encoding="utf-8")
    (tmp_path / "shard.bin").write_bytes(bytes(32 * 2**20))  # far more than the socket buffers hold
    server = site.make_server(tmp_path, port=0)
    server.daemon_threads = False  # so that server_close() waits for the request threads
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    try:
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
                client.sendall(b"GET /shard.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
                assert client.recv(64).startswith(b"HTTP/1.0 200")
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = reset
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=10) as r:
            assert r.status == 200
    finally:
        server.shutdown()
        server.server_close()
    assert "Traceback" not in capfd.readouterr().err


def test_server_still_reports_other_errors(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    (tmp_path / "index.html").write_text("<!doctype html><title>t</title>", encoding="utf-8")
    server = site.make_server(tmp_path, port=0)
    try:
        try:
            raise ValueError("a bug in a handler")
        except ValueError:
            server.handle_error(None, ("127.0.0.1", 1))
    finally:
        server.server_close()
    err = capfd.readouterr().err
    assert "Traceback" in err and "ValueError: a bug in a handler" in err


def test_serve_refuses_a_folder_without_a_build(tmp_path: Path) -> None:
    with pytest.raises(SkinLesionError, match=r"index\.html not found: build the site first"):
        site.make_server(tmp_path, port=0)


def _photo_change(name: str, balanced_accuracy: float, change: float, flipped: float) -> dict:
    return {"change": name, "accuracy": 0.8, "balanced_accuracy": balanced_accuracy,
            "balanced_accuracy_change": change, "balanced_accuracy_change_95": [change - 0.03, change + 0.03],
            "melanoma_sensitivity": 0.5, "top_answer_changed": flipped}


def test_model_card_shows_the_photo_changes_and_the_worst_in_the_limitations(model_dir: Path, tmp_path: Path) -> None:
    report = _report()
    report["robustness"] = {"split": "test", "images": 1431, "rows": [
        _photo_change("as taken", 0.72, 0.0, 0.0), _photo_change("warmer", 0.656, -0.064, 0.108),
        _photo_change("JPEG quality 30", 0.643, -0.077, 0.106), _photo_change("blurred", 0.703, -0.017, 0.054)]}
    del report["robustness"]["rows"][3]["balanced_accuracy_change_95"]  # a row without its interval
    (model_dir / "report.json").write_text(json.dumps(report))
    html = (site.build_site(model_dir, tmp_path / "out") / "model-card.html").read_text(encoding="utf-8")
    assert _cells(html, "data-change", "0") == [["as", "taken"], ["72.0%"], [], ["50.0%"], []]
    assert _cells(html, "data-change", "2") == [["JPEG", "quality", "30"], ["64.3%"], ["-7.7", "(-10.7", "to", "-4.7)"],
                                                ["50.0%"], ["10.6%"]]
    assert _cells(html, "data-change", "3") == [["blurred"], ["70.3%"], ["-1.7"], ["50.0%"], ["5.4%"]]
    limitations = re.sub(r"\s+", " ", html[html.index('id="limitations"'):])
    assert "by up to 7.7 points (JPEG quality 30)" in limitations
    assert "for 5.4% to 10.8% of the photos" in limitations
    assert 'href="#photo-changes"' in html


def test_model_card_shows_the_framings_in_their_own_table(model_dir: Path, tmp_path: Path) -> None:
    report = _report()
    report["robustness"] = {"split": "test", "images": 1431, "rows": [
        _photo_change("as taken", 0.72, 0.0, 0.0), _photo_change("warmer", 0.656, -0.064, 0.108)]}
    report["framing"] = {"split": "test", "images": 1431, "bootstrap_resampled": "lesions", "rows": [
        _photo_change("as taken", 0.72, 0.0, 0.0), _photo_change("zoomed in x1.5 on the centre", 0.67, -0.05, 0.13),
        _photo_change("zoomed in x2 on the centre", 0.52, -0.2, 0.23)]}
    (model_dir / "report.json").write_text(json.dumps(report))
    html = (site.build_site(model_dir, tmp_path / "out") / "model-card.html").read_text(encoding="utf-8")
    framing = html[html.index('id="framing"'):]
    framing = framing[:framing.index("</section>")]
    assert "warmer" not in framing and 'href="#framing"' in html
    # what each table's intervals resampled, as its own section of the report says (before lesions, images)
    assert "paired bootstrap that resamples the lesions (all photos" in re.sub(r"\s+", " ", framing)
    changes = html[html.index('id="photo-changes"'):]
    assert "paired bootstrap that resamples the images." in re.sub(r"\s+", " ", changes[:changes.index("</section>")])
    assert _cells(framing, "data-change", "2") == [["zoomed", "in", "x2", "on", "the", "centre"], ["52.0%"],
                                                   ["-20.0", "(-23.0", "to", "-17.0)"], ["50.0%"], ["23.0%"]]
    assert "The largest drop in balanced accuracy, 20.0 points, was with the photos zoomed in x2 on the centre" in (
        re.sub(r"\s+", " ", framing))
    # the limitations name the worst photo change, not a framing
    assert "by up to 6.4 points (warmer)" in re.sub(r"\s+", " ", html[html.index('id="limitations"'):])


def test_index_shows_the_guide_circle_only_when_the_report_gives_the_lesion_size(model_dir: Path,
                                                                               tmp_path: Path) -> None:
    report = _report()
    report["framing"] = {"rows": [], "training_lesion_size": {"images": 7153, "median": 0.6512, "quartiles": [0.5, 0.8]}}
    (model_dir / "report.json").write_text(json.dumps(report))
    html = (site.build_site(model_dir, tmp_path / "with") / "index.html").read_text(encoding="utf-8")
    assert 'data-lesion-share="0.651"' in html and "dashed circle" in html
    for size in (None, {"median": 1.7}, {"median": "0.65"}):
        report["framing"]["training_lesion_size"] = size
        (model_dir / "report.json").write_text(json.dumps(report))
        html = (site.build_site(model_dir, tmp_path / "without") / "index.html").read_text(encoding="utf-8")
        assert "data-lesion-share" not in html and "dashed circle" not in html


def test_model_card_without_photo_changes_leaves_them_out(built: Path, model_dir: Path, tmp_path: Path) -> None:
    assert 'id="photo-changes"' not in (built / "model-card.html").read_text(encoding="utf-8")
    report = _report()
    report["robustness"] = {"rows": [{"change": "as taken"}]}  # nothing to compare with
    (model_dir / "report.json").write_text(json.dumps(report))
    html = (site.build_site(model_dir, tmp_path / "out") / "model-card.html").read_text(encoding="utf-8")
    assert 'id="photo-changes"' not in html and "Even one simple change" not in html
    assert 'id="framing"' not in html


def _group(key: str, name: str, images: int, accuracy: float, melanoma: float | None) -> dict:
    intervals = {"accuracy": [accuracy - 0.05, accuracy + 0.05], "balanced_accuracy": [0.5, 0.8]}
    if melanoma is not None:
        intervals["melanoma_sensitivity"] = [melanoma - 0.1, melanoma + 0.1]
    return {"key": key, "group": name, "images": images, "melanomas": 12 if melanoma is not None else 0,
            "classes": 7, "accuracy": accuracy, "mean_top_probability": accuracy + 0.06, "balanced_accuracy": 0.65,
            "melanoma_sensitivity": melanoma,
            "bootstrap_95": intervals}


def test_model_card_shows_the_figures_by_group_and_the_biopsied_lesions_in_the_limitations(model_dir: Path,
                                                                                         tmp_path: Path) -> None:
    report = _report()
    report["subgroups"] = {
        "sex": {"title": "Sex", "column": "sex", "min_melanomas": 12, "bootstrap_resampled": "lesions", "rows": [
            _group("female", "female", 673, 0.83, 0.6),
            _group("others", "others, each under 30 images: unknown", 12, 0.75, None)]},
        "diagnosis_confirmed_by": {"title": "Diagnosis confirmed by", "column": "dx_type",
                                   "bootstrap_resampled": "lesions", "rows": [
            _group("histo", "histopathology (biopsy or excision)", 749, 0.68, 0.56),
            _group("follow_up", "follow-up (unchanged over time)", 529, 0.97, None)]}}
    (model_dir / "report.json").write_text(json.dumps(report))
    html = (site.build_site(model_dir, tmp_path / "out") / "model-card.html").read_text(encoding="utf-8")
    groups = html[html.index('id="groups"'):]
    groups = groups[:groups.index("</section>")]
    assert 'href="#groups"' in html and 'id="groups-sex"' in groups and 'id="groups-diagnosis_confirmed_by"' in groups
    assert _cells(groups, "data-group", "female") == [["female"], ["673"], ["12"], ["83.0%", "78.0%", "to", "88.0%"],
                                                      ["89.0%"], ["65.0%", "(7)", "50.0%", "to", "80.0%"],
                                                      ["60.0%", "50.0%", "to", "70.0%"]]
    assert _cells(groups, "data-group", "others")[6] == []  # too few melanomas: no sensitivity
    assert "Melanomas found is shown for groups with at least 12 melanomas." in re.sub(r"\s+", " ", groups)
    assert "bootstrap intervals within each group that resample the lesions (all photos" in re.sub(r"\s+", " ", groups)
    # a table saved before lesions were resampled: the card no longer says lesions for them all
    del report["subgroups"]["sex"]["bootstrap_resampled"]
    (model_dir / "report.json").write_text(json.dumps(report))
    mixed = (site.build_site(model_dir, tmp_path / "mixed") / "model-card.html").read_text(encoding="utf-8")
    assert "bootstrap intervals within each group that resample the images:" in re.sub(r"\s+", " ", mixed)
    limitations = re.sub(r"\s+", " ", html[html.index('id="limitations"'):])
    assert "On the 749 test photos of lesions whose diagnosis needed a biopsy or excision" in limitations
    assert "accuracy was 68.0%, against 97.0% on moles confirmed by follow-up" in limitations
    assert "its top probability averaged 74.0%" in limitations
    metrics = re.sub(r"\s+", " ", html[html.index('id="metrics"'):html.index('id="per-class"')])
    assert "on the 749 photos of lesions that needed a biopsy, accuracy was 68.0%" in metrics


def test_model_card_without_figures_by_group_leaves_them_out(built: Path) -> None:
    html = (built / "model-card.html").read_text(encoding="utf-8")
    assert 'id="groups"' not in html and "biopsy or excision" not in html


def test_index_links_only_the_card_sections_the_report_has(built: Path, model_dir: Path, tmp_path: Path) -> None:
    html = (built / "index.html").read_text(encoding="utf-8")
    assert "#photo-changes" not in html and "#framing" not in html and "zooming in closer" in re.sub(r"\s+", " ", html)
    report = _report()
    report["robustness"] = {"images": 1431, "rows": [_photo_change("as taken", 0.72, 0.0, 0.0),
                                                     _photo_change("warmer", 0.656, -0.064, 0.108)]}
    report["framing"] = {"images": 1431, "rows": [_photo_change("as taken", 0.72, 0.0, 0.0),
                                                  _photo_change("zoomed in x2 on the centre", 0.52, -0.2, 0.23)]}
    (model_dir / "report.json").write_text(json.dumps(report))
    html = (site.build_site(model_dir, tmp_path / "out") / "index.html").read_text(encoding="utf-8")
    assert 'href="model-card.html#photo-changes"' in html and 'href="model-card.html#framing"' in html


def test_every_result_says_how_the_model_did_on_biopsied_lesions_when_the_report_has_it(built: Path, model_dir: Path,
                                                                                       tmp_path: Path) -> None:
    assert "needed a biopsy" not in (built / "index.html").read_text(encoding="utf-8")
    report = _report()
    report["subgroups"] = {"diagnosis_confirmed_by": {"title": "Diagnosis confirmed by", "column": "dx_type", "rows": [
        _group("histo", "histopathology (biopsy or excision)", 749, 0.68, 0.56)]}}
    (model_dir / "report.json").write_text(json.dumps(report))
    html = (site.build_site(model_dir, tmp_path / "out") / "index.html").read_text(encoding="utf-8")
    template = re.sub(r"\s+", " ", html[html.index('<template id="result-template">'):html.index("</template>")])
    assert ("on test photos of lesions that needed a biopsy it was right 68.0% of the time, while its top "
            "probability averaged 74.0%") in template
