"""Where the WASM backend's time goes: milliseconds per kernel type of the shipped graph in headless Chromium.

    python bench/wasm_ops.py [--model model] [--data ../shared/data/ham10000] [--runs 30] [--threads N]

Builds the site for the model folder into a temporary folder, opens it with `?backend=wasm` (the page's own
backend setup: SIMD, and threads when the page is cross-origin isolated), loads the site's model.json a second time
with `tf.loadGraphModel` and times `predict` on one zero image with `tf.profile`, `--runs` times after 3 warm-up
calls. Prints, per kernel type: the median ms per image, the multiply-adds it does (from the input and output
shapes the profile records) and its rate in GMAC/s; then native TensorFlow (CPU, batch 1) on the same graph
(`export.inference_model`, the zero paddings of odd sides as separate ops: see bench/browser.py), timed by
bench/browser.py's `time_native` on the first `--runs` test images, whose rate over the whole graph is what each
kernel type is compared with. Prints figures only: no pass or fail.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections import defaultdict
from pathlib import Path

from browser import time_native
from common import (DEFAULT_DATA, DEFAULT_MODEL, READY_OBSERVER, chromium, machine, served, test_split,
                    wait_ready)

from skinlesion.site import build_site

PROFILE = """async ([runs]) => {
  const model = await tf.loadGraphModel('model/model.json');
  const [, height, width, channels] = model.inputs[0].shape;
  const x = tf.zeros([1, height, width, channels]);
  const predict = () => model.predict(x);
  for (let i = 0; i < 3; i++) {
    const outputs = predict();
    await Promise.all([outputs].flat().map((t) => t.data()));
    tf.dispose(outputs);
  }
  const profiles = [];
  for (let run = 0; run < runs; run++) {
    const info = await tf.profile(predict);
    tf.dispose(info.result);
    // The profile lists each op's scope ("fusedConv2d__op") besides the kernel it ran: kernels only.
    profiles.push(info.kernels.filter((k) => !k.name.endsWith('__op')).map((k) => ({
      name: k.name, ms: k.kernelTimeMs, inputs: k.inputShapes, outputs: k.outputShapes })));
  }
  x.dispose();
  model.dispose();
  return { backend: tf.getBackend(), threads: tf.wasm?.getThreadsCount?.() ?? null, profiles };
}"""


def multiply_adds(kernel: dict) -> int:
    """Multiply-adds of one convolution or matrix product from its recorded shapes; 0 for anything else."""
    out = kernel["outputs"][0] if kernel["outputs"] else None
    if not out or len(kernel["inputs"]) < 2:
        return 0
    x, w = kernel["inputs"][0], kernel["inputs"][1]
    if kernel["name"] in ("FusedConv2D", "Conv2D"):  # filter (kh, kw, in, out)
        return out[0] * out[1] * out[2] * out[3] * w[0] * w[1] * w[2]
    if kernel["name"] in ("FusedDepthwiseConv2D", "DepthwiseConv2dNative"):  # filter (kh, kw, in, multiplier)
        return out[0] * out[1] * out[2] * out[3] * w[0] * w[1]
    if kernel["name"] in ("_FusedMatMul", "BatchMatMul", "MatMul"):
        return out[0] * out[-1] * x[-1]
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="HAM10000 folder (native TensorFlow's images)")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--threads", type=int, help="WASM threads (the page's &threads=N); default: the page's choice")
    args = parser.parse_args()
    print(machine())

    with tempfile.TemporaryDirectory() as tmp, chromium() as browser:
        site = build_site(args.model, Path(tmp) / "site")
        with served(site) as url:
            page = browser.new_page()
            page.add_init_script(READY_OBSERVER)
            page.goto(f"{url}index.html?backend=wasm" + (f"&threads={args.threads}" if args.threads else ""))
            wait_ready(page, 120_000)
            isolated = page.evaluate("crossOriginIsolated")
            result = page.evaluate(PROFILE, [args.runs])

    per_type: dict[str, list[float]] = defaultdict(list)
    macs: dict[str, int] = defaultdict(int)
    counts: dict[str, int] = defaultdict(int)
    for run, kernels in enumerate(result["profiles"]):
        totals: dict[str, float] = defaultdict(float)
        for kernel in kernels:
            totals[kernel["name"]] += kernel["ms"]
            if run == 0:
                macs[kernel["name"]] += multiply_adds(kernel)
                counts[kernel["name"]] += 1
        for name, ms in totals.items():
            per_type[name].append(ms)
    totals = [sum(kernel["ms"] for kernel in kernels) for kernels in result["profiles"]]
    total_ms, total_macs = statistics.median(totals), sum(macs.values())

    print(f"TF.js {result['backend']} backend, threads {result['threads']}, cross-origin isolated {isolated}; "
          f"{args.runs} profiled runs of predict on one zero image")
    print(f"{'kernel':<28}{'count':>6}{'ms (median)':>13}{'share':>8}{'MMAC':>9}{'GMAC/s':>9}")
    for name, ms in sorted(per_type.items(), key=lambda item: -statistics.median(item[1])):
        median = statistics.median(ms)
        rate = f"{macs[name] / median / 1e6:.1f}" if macs[name] and median else "-"
        print(f"{name:<28}{counts[name]:>6}{median:>13.2f}{median / total_ms:>8.1%}{macs[name] / 1e6:>9.1f}{rate:>9}")
    print(f"{'all kernels':<28}{sum(counts.values()):>6}{total_ms:>13.2f}{1:>8.0%}{total_macs / 1e6:>9.1f}"
          f"{total_macs / total_ms / 1e6:>9.1f}")
    native = time_native(args.model, test_split(args.model, args.data, limit=args.runs)[0])
    print(f"native TensorFlow, same graph, batch 1 (intra-op threads {native['threads']}; {args.runs} test images, "
          f"as bench/browser.py times it): median {native['graph']:.2f} ms, {total_macs / native['graph'] / 1e6:.1f} "
          f"GMAC/s; WASM kernels / native: {total_ms / native['graph']:.2f}x")


if __name__ == "__main__":
    main()
