"""Which TF.js weight quantization to ship: size and test-split quality of float32, float16 and uint8, in Chromium.

    python bench/quantization.py [--model model] [--data ../shared/data/ham10000] [--limit N]
                                 [--quantizations float32,float16,uint8] [--no-keras]

Exports the model folder's network to TF.js once per quantization (`export.export_tfjs`, into a temporary copy of
the folder), builds the site for each and lets that site's own classifier (wasm backend, headless Chromium) classify
every image of the model's test split (`split.csv`): the page fetches the JPEG files and decodes them itself, the
same way for every variant, so all variants see the same pixels. Metrics come from `evaluate.metrics` on those
browser probabilities. Keras in Python (the stored weights, Pillow decoding) is printed beside them as a reference.
Prints figures and the smallest variant within 0.5 balanced-accuracy points of float32; no pass or fail.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from common import (DEFAULT_DATA, DEFAULT_MODEL, READY_OBSERVER, chromium, machine, served, test_split,
                    wait_ready)

from skinlesion.classes import CODES
from skinlesion.evaluate import metrics
from skinlesion.export import QUANTIZATIONS, TFJS_DIR, export_tfjs, model_bytes, read_metadata
from skinlesion.site import build_site

IMAGES_DIR = "bench-images"
ALLOWED_LOSS = 0.005  # balanced accuracy, as a fraction: 0.5 points

CLASSIFY_URLS = """async (urls) => {
  const model = await globalThis.skinlesionApp.modelReady;
  const out = [];
  for (const url of urls) {
    const bitmap = await createImageBitmap(await (await fetch(url)).blob(), { premultiplyAlpha: 'none' });
    try {
      out.push((await model.classify(bitmap)).map((r) => r.probability));
    } finally {
      bitmap.close();
    }
  }
  return out;
}"""


def export_variant(network, model_dir: Path, folder: Path, quantization: str) -> Path:
    """A copy of `model_dir` whose tfjs/ holds this quantization (and the original metadata's thresholds)."""
    variant = folder / "model"
    shutil.copytree(model_dir, variant, ignore=shutil.ignore_patterns(TFJS_DIR))
    # the pipeline's entries (alert, uncertainty and OOD thresholds) kept; quantization and version are the export's
    export_tfjs(network, variant, quantization, extra_metadata=read_metadata(model_dir / TFJS_DIR))
    return variant


def _weights(tfjs_dir: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted(tfjs_dir.glob("*.bin"))]


def _gzip_bytes(tfjs_dir: Path) -> int:
    return sum(len(gzip.compress(p.read_bytes(), compresslevel=9)) for p in tfjs_dir.iterdir()
               if p.name != "metadata.json")


def browser_probabilities(browser, site_dir: Path, data_dir: Path, names: list[str], chunk: int,
                          timeout_ms: int) -> np.ndarray:
    """Probabilities from the site's classifier (wasm) for each image name, in order."""
    (site_dir / IMAGES_DIR).symlink_to((data_dir / "images").resolve(), target_is_directory=True)
    with served(site_dir) as base_url:
        context = browser.new_context(service_workers="block")  # nothing to cache: one page load
        context.add_init_script(READY_OBSERVER)
        page = context.new_page()
        try:
            page.goto(f"{base_url}index.html?backend=wasm", wait_until="commit")
            wait_ready(page, timeout_ms)
            backend = page.evaluate("async () => (await globalThis.skinlesionApp.modelReady).backend")
            if backend != "wasm":
                raise RuntimeError(f"the page runs on {backend}, not wasm")
            out = []
            for i in range(0, len(names), chunk):
                out += page.evaluate(CLASSIFY_URLS, [f"{IMAGES_DIR}/{n}" for n in names[i:i + chunk]])
        finally:
            context.close()
    return np.asarray(out, np.float64)


def keras_probabilities(network, paths: list[Path], chunk: int = 128) -> np.ndarray:
    from skinlesion.model import load_inputs, predict

    return np.concatenate([predict(network, load_inputs(paths[i:i + chunk], network.config))
                           for i in range(0, len(paths), chunk)]).astype(np.float64)


def _row(name: str, size: int | None, gz: int | None, m: dict, reference: dict, p: np.ndarray,
         p_ref: np.ndarray, seconds: float | None) -> tuple:
    mel = m["melanoma"]
    return (name, f"{size:,}" if size else "-", f"{gz:,}" if gz else "-", f"{m['accuracy']:.4f}",
            f"{m['balanced_accuracy']:.4f}",
            f"{100 * (m['balanced_accuracy'] - reference['balanced_accuracy']):+.2f}",
            f"{mel['sensitivity']:.4f} ({mel['true_positives']}/{mel['true_positives'] + mel['false_negatives']})",
            f"{m['expected_calibration_error']:.4f}", f"{np.abs(p - p_ref).max():.2e}",
            f"{int((p.argmax(1) != p_ref.argmax(1)).sum())}", f"{seconds:.0f}" if seconds else "-")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="model folder (default: model/)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="HAM10000 folder holding images/")
    parser.add_argument("--limit", type=int, default=None, help="only the first N test images (default: all)")
    parser.add_argument("--quantizations", default=",".join(QUANTIZATIONS),
                        help=f"comma-separated, of {','.join(QUANTIZATIONS)}; float32 is the reference")
    parser.add_argument("--no-keras", action="store_true", help="skip the Keras (Python) reference row")
    parser.add_argument("--chunk", type=int, default=50, help="images per call into the page (default 50)")
    parser.add_argument("--timeout", type=int, default=300, help="seconds to wait for the model to load")
    args = parser.parse_args(argv)
    quantizations = [q.strip() for q in args.quantizations.split(",") if q.strip()]
    if "float32" not in quantizations or any(q not in QUANTIZATIONS for q in quantizations):
        parser.error(f"--quantizations must include float32 and name only {', '.join(QUANTIZATIONS)}")
    quantizations = sorted(quantizations, key=QUANTIZATIONS.index)

    from skinlesion.model import WEIGHTS_NAME, load_network

    paths, labels = test_split(args.model, args.data, args.limit)
    labels = np.asarray(labels)
    names = [p.name for p in paths]
    metadata = read_metadata(args.model / TFJS_DIR)
    mel_threshold = (metadata.get("thresholds") or {}).get("mel")
    network = load_network(args.model)
    with np.load(args.model / WEIGHTS_NAME) as stored:
        stored_dtypes = sorted({str(stored[k].dtype) for k in stored.files})

    print(f"quantization benchmark, {machine()}")
    print(f"model {args.model}: alpha {network.config.alpha}, input {network.config.height}x{network.config.width}, "
          f"weights stored as {', '.join(stored_dtypes)} ({WEIGHTS_NAME}); shipped TF.js: "
          f"{metadata.get('quantization')}, {model_bytes(args.model / TFJS_DIR):,} bytes")
    melanomas = int((labels == CODES.index("mel")).sum())
    print(f"test split of {args.model / 'split.csv'}: {len(paths)} images, {melanomas} melanomas")

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-quantization-") as tmp, chromium() as browser:
        print(f"Chromium {browser.version}, headless, wasm backend; images decoded by the browser")
        for q in quantizations:
            started = time.perf_counter()
            variant = export_variant(network, args.model, Path(tmp) / q, q)
            site_dir = build_site(variant, Path(tmp) / q / "site")
            export_s = time.perf_counter() - started
            started = time.perf_counter()
            p = browser_probabilities(browser, site_dir, args.data, names, args.chunk, args.timeout * 1000)
            results[q] = {"p": p, "bytes": model_bytes(variant / TFJS_DIR), "gzip": _gzip_bytes(variant / TFJS_DIR),
                          "seconds": time.perf_counter() - started}
            same = ""
            if q == metadata.get("quantization"):
                same = "; weights identical to the shipped model's: " + (
                    "yes" if _weights(variant / TFJS_DIR) == _weights(args.model / TFJS_DIR) else "NO")
            print(f"  {q}: exported and built in {export_s:.0f} s, {len(p)} images classified in "
                  f"{results[q]['seconds']:.0f} s{same}", flush=True)
    if not args.no_keras:
        started = time.perf_counter()
        results["keras"] = {"p": keras_probabilities(network, paths), "bytes": None, "gzip": None,
                            "seconds": time.perf_counter() - started}

    for r in results.values():
        r["metrics"] = metrics(r["p"], labels, mel_threshold)
    reference, p_ref = results["float32"]["metrics"], results["float32"]["p"]
    header = ("variant", "model bytes", "gzip -9", "accuracy", "bal. acc.", "vs f32 pts", "mel. sensitivity",
              "ECE", "max|p-p_f32|", "top-1 changed", "s")
    rows = [_row(q if q != "keras" else "Keras (Python)", r["bytes"], r["gzip"], r["metrics"], reference, r["p"],
                 p_ref, r["seconds"]) for q, r in results.items()]
    print("\nmetrics on the test split from each variant's own predictions (Keras: Pillow decoding, not the "
          "browser's, so it differs by decoding as well)")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))
    if mel_threshold is not None:
        print(f"melanoma sensitivity at the metadata's alert threshold {mel_threshold:.3f}: " + ", ".join(
            f"{q} {r['metrics']['melanoma_at_threshold']['sensitivity']:.4f}" for q, r in results.items()))

    within = [q for q in quantizations
              if results[q]["metrics"]["balanced_accuracy"] >= reference["balanced_accuracy"] - ALLOWED_LOSS]
    smallest = min(within, key=lambda q: results[q]["bytes"])
    print(f"smallest variant within {100 * ALLOWED_LOSS:.1f} balanced-accuracy points of float32: {smallest} "
          f"({results[smallest]['bytes']:,} bytes, balanced accuracy "
          f"{results[smallest]['metrics']['balanced_accuracy']:.4f} vs {reference['balanced_accuracy']:.4f})")


if __name__ == "__main__":
    main()
