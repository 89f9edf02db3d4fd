"""Speed, download size and memory of the site in headless Chromium, per TF.js backend, against native TensorFlow.

    python bench/browser.py [--model model] [--data ../shared/data/ham10000] [--images 50] [--iterations 200]
                            [--backends wasm,webgl,cpu] [--slow-images 20] [--slow-iterations 50] [--loads 3]
                            [--wasm-threads 1,2] [--rounds 5]

Builds the site for the model folder into a temporary folder, serves it on a free port and, for each backend (forced
with `?backend=` in the page URL), in a fresh browser context:
- cold load: ms from navigation start to the model being ready (main[data-state=ready]) and to the first result
  (the first test image fetched, decoded and classified the moment the model is ready), and the bytes that came
  over the network, split into runtime (static/vendor/), model (model/) and page (the rest), with the gzip -9 size
  of the same files; what the page fetched and what its service worker precached afterwards are counted apart;
- per-image inference: `classify()` timed inside the page (performance.now(); decoding excluded) on the first
  N images of the model's test split: the first call and the median;
- memory: TF.js tensor count and bytes, and the JS heap after a forced GC (CDP), after 10 and after M predictions;
- warm load: the same context navigates again (the service worker answers), and, in another fresh context with
  service workers blocked, a second navigation that only the HTTP cache can help (the server's headers decide).
The server sends the cross-origin isolation headers (as `build.py --serve` does), so WASM may run on threads;
`--wasm-threads 1,2` adds a WASM row per thread count (`&threads=N`) beside the page's automatic choice.
Native TensorFlow (CPU, batch 1) is timed on the same images first, on the graph the browser runs (BatchNorm
folded, `export.inference_model`; only a zero padding beside an odd side stays a separate op there, since native
TensorFlow cannot run it merged), and on the Keras model as trained for reference. Then the WASM page and native
TensorFlow take turns on the same images (`--rounds`): the median of those rounds' browser / native ratios is the
figure to track, since absolute times depend on the machine and drift within minutes. Prints figures only: no pass
or fail.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from common import (DEFAULT_DATA, DEFAULT_MODEL, READY_OBSERVER, chromium, machine, served, test_split,
                    wait_ready)

from skinlesion.site import build_site

BACKENDS = ("wasm", "webgl", "cpu")
SLOW_BACKENDS = ("webgl", "cpu")  # here: SwiftShader (software) WebGL and plain JavaScript
IMAGES_DIR = "bench-images"  # copied into the built site after the build, so the service worker never lists them
MEMORY_EARLY = 10

# Added to the page before its scripts run: the moment the model is ready, classify the first image, as a user
# whose photo was already chosen would see it.
FIRST_RESULT = """(() => {
  globalThis.__benchFirst = new Promise((resolve, reject) => {
    const start = () => globalThis.skinlesionApp.modelReady.then(async (model) => {
      const blob = await (await fetch(%(url)s)).blob();
      const bitmap = await createImageBitmap(blob, { premultiplyAlpha: 'none' });
      const started = performance.now();
      await model.classify(bitmap);
      const done = performance.now();
      (globalThis.__benchBitmaps ??= []).push(bitmap);
      return { classifyMs: done - started, resultMs: done, backend: model.backend };
    }).then(resolve, reject);
    const wait = () => (globalThis.skinlesionApp ? start() : setTimeout(wait, 5));
    wait();
  });
})();"""

DECODE = """async (urls) => {
  const bitmaps = (globalThis.__benchBitmaps ??= []);
  for (const url of urls) {
    bitmaps.push(await createImageBitmap(await (await fetch(url)).blob(), { premultiplyAlpha: 'none' }));
  }
  return bitmaps.length;
}"""

# Predictions [from, to) over the decoded images, cycling; returns each classify() call's ms.
PREDICT = """async ([from, to]) => {
  const model = await globalThis.skinlesionApp.modelReady;
  const bitmaps = globalThis.__benchBitmaps;
  const ms = [];
  for (let i = from; i < to; i++) {
    const started = performance.now();
    await model.classify(bitmaps[i % bitmaps.length]);
    ms.push(performance.now() - started);
  }
  return ms;
}"""

SERVICE_WORKER_READY = """async () => {
  if (!('serviceWorker' in navigator)) return 'not supported';
  let registration;
  for (let i = 0; i < 50 && !registration; i++) {
    registration = await navigator.serviceWorker.getRegistration();
    if (!registration) await new Promise((resolve) => setTimeout(resolve, 100));
  }
  if (!registration) return 'none registered within 5 s of the first result';
  const timeout = new Promise((resolve) => setTimeout(() => resolve('registered, not active after 60 s'), 60000));
  return Promise.race([navigator.serviceWorker.ready.then(() => 'active (precache complete)'), timeout]);
}"""

TF_MEMORY = "() => { const m = tf.memory(); return { tensors: m.numTensors, bytes: m.numBytes }; }"


def _part(path: str) -> str:
    if path.startswith("static/vendor/"):
        return "runtime"
    if path.startswith("model/"):
        return "model"
    return "page"


def _body_bytes(request, response) -> int:
    """Response body bytes that came over the network (0 when a cache answered)."""
    if request.all_headers().get("service-worker") == "script":
        # Chromium fetches a service worker's script outside the page's network stack and reports no size for
        # it; the browser always fetches it from the server (registration and update checks bypass the cache).
        return len(response.body())
    return request.sizes()["responseBodySize"]


def _how(request, response) -> str:
    """How the browser got a response: from the network, after revalidation, from a cache, or not at all."""
    if response is None:
        return "failed"
    if response.from_service_worker:
        return "service worker cache"
    if _body_bytes(request, response) > 0:
        return "network"
    # A 304 reaches Playwright as the cached 200 with an empty body; the conditional header tells them apart.
    return "revalidated (304)" if "if-modified-since" in request.all_headers() else "http cache"


class Traffic:
    """Every request of a browser context (the page's and its service worker's), and whether any is in flight."""

    def __init__(self, context, root_url: str, site_dir: Path):
        self.root = root_url
        self.site_dir = site_dir
        self.finished: list = []
        self.pending: set = set()
        self.last_change = time.monotonic()
        context.on("request", self._start)
        context.on("requestfinished", self._end)
        context.on("requestfailed", self._end)

    def _start(self, request) -> None:
        self.pending.add(request)
        self.last_change = time.monotonic()

    def _end(self, request) -> None:
        self.pending.discard(request)
        self.finished.append(request)
        self.last_change = time.monotonic()

    def wait_quiet(self, page, quiet_s: float = 1.0, timeout_s: float = 60.0) -> None:
        """Return once no request has been in flight for `quiet_s`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.pending and time.monotonic() - self.last_change >= quiet_s:
                return
            page.wait_for_timeout(100)  # not time.sleep: Playwright delivers events only while it runs

    def take(self) -> dict:
        """Bytes over the network and how requests were answered, by who asked (page or service worker), since
        the last call; the benchmark's own image fetches are left out."""
        taken, self.finished = self.finished, []
        out = {}
        for request in taken:
            if not request.url.startswith(self.root):
                continue
            path = urlsplit(request.url).path[len(urlsplit(self.root).path):] or "index.html"
            if path.startswith(IMAGES_DIR + "/"):
                continue
            who = "service worker" if getattr(request, "service_worker", None) is not None else "page"
            entry = out.setdefault(who, {"parts": {p: {"bytes": 0, "gzip": 0, "files": 0}
                                                   for p in ("runtime", "model", "page")}, "how": {}})
            response = request.response() if request.failure is None else None
            how = _how(request, response)
            entry["how"][how] = entry["how"].get(how, 0) + 1
            if how == "network":
                part = entry["parts"][_part(path)]
                part["bytes"] += _body_bytes(request, response)
                part["files"] += 1
                part["gzip"] += _gzip_size(self.site_dir / path)
        return out


_GZIP: dict[Path, int] = {}


def _gzip_size(path: Path) -> int:
    if path not in _GZIP:
        _GZIP[path] = len(gzip.compress(path.read_bytes(), compresslevel=9)) if path.is_file() else 0
    return _GZIP[path]


def _median_ms(graph, inputs: list, warmup: int) -> tuple[float, float]:
    """(median, first timed) ms of graph(x)["probabilities"] over the inputs, after `warmup` untimed calls."""
    for x in inputs[:warmup]:
        graph(x)["probabilities"].numpy()
    ms = []
    for x in inputs:
        started = time.perf_counter()
        graph(x)["probabilities"].numpy()
        ms.append(1000 * (time.perf_counter() - started))
    return statistics.median(ms), ms[0]


class NativeTimer:
    """Native TensorFlow on the model's graphs (CPU, batch 1, each in a tf.function traced once, as a server would
    run it), on the preprocessed images of `paths`; `median_ms` can be called again, e.g. between browser rounds."""

    def __init__(self, model_dir: Path, paths: list[Path], warmup: int = 3):
        from skinlesion.model import load_network, preprocess, read_image  # first: it quiets TensorFlow's logging
        from skinlesion.export import inference_model

        import tensorflow as tf

        network = load_network(model_dir)
        self.preprocess_ms, self.inputs = [], []
        for p in [read_image(p) for p in paths]:
            started = time.perf_counter()
            x = preprocess(p, network.config)
            self.preprocess_ms.append(1000 * (time.perf_counter() - started))
            self.inputs.append(tf.constant(x[None]))
        # The browser's graph, but with the ZeroPadding2D of odd sides kept: TensorFlow's own graph optimizer aborts
        # on the explicitly padded depthwise convolutions the TF.js export puts there (export.inference_model)
        exported = inference_model(network, explicit_padding=False)
        self.graphs = {"graph": tf.function(lambda x: exported(x, training=False)),
                       "keras": tf.function(lambda x: network.full(x, training=False))}
        self.warmup = warmup
        self.version = tf.__version__
        self.threads = tf.config.threading.get_intra_op_parallelism_threads() or "TensorFlow's default"

    def median_ms(self, which: str = "graph", warmup: int | None = None) -> tuple[float, float]:
        """(median, first timed) ms of one graph ("graph": the exported one; "keras": as trained) after `warmup`
        untimed calls (default: the timer's)."""
        return _median_ms(self.graphs[which], self.inputs, self.warmup if warmup is None else warmup)


def native_figures(timer: NativeTimer) -> dict:
    """Median ms per image on CPU, batch 1, of the graph the browser runs (`export.inference_model`, BatchNorm
    folded) and of the Keras model as trained, each in a tf.function; and of preprocessing alone."""
    graph, first = timer.median_ms("graph")
    keras_graph, _ = timer.median_ms("keras")
    return {"graph": graph, "first": first, "keras": keras_graph, "preprocess": statistics.median(timer.preprocess_ms),
            "version": timer.version, "threads": timer.threads}


def time_native(model_dir: Path, paths: list[Path], warmup: int = 3) -> dict:
    """`native_figures` of a new NativeTimer on the model and images."""
    return native_figures(NativeTimer(model_dir, paths, warmup))


def paired_rounds(browser, root_url: str, names: list[str], timer: NativeTimer, rounds: int,
                  timeout_ms: int) -> list[dict]:
    """The WASM page's classify() median and native TensorFlow's median over the same images, in alternating
    rounds: this machine's speed drifts by tens of percent within minutes, and a ratio of two timings taken minutes
    apart carries that drift; one taken within a round mostly does not."""
    context = browser.new_context()
    context.add_init_script(READY_OBSERVER)
    page = context.new_page()
    try:
        page.goto(f"{root_url}index.html?backend=wasm")
        wait_ready(page, timeout_ms)
        page.evaluate(DECODE, [f"{IMAGES_DIR}/{name}" for name in names])
        page.evaluate(PREDICT, [0, 3])  # the first calls set up the pixel reading and the kernels
        result = []
        for _ in range(rounds):
            # Each side warms up again first: a thread pool that has gone idle wakes slowly (native TensorFlow takes
            # ~40% longer per image right after a 1-s pause here), and the other side's may still be spinning.
            page.evaluate(PREDICT, [0, 10])
            browser_ms = statistics.median(page.evaluate(PREDICT, [0, len(names)]))
            native_ms, _ = timer.median_ms("graph", warmup=10)
            result.append({"browser": browser_ms, "native": native_ms, "ratio": browser_ms / native_ms})
        return result
    finally:
        context.close()


def _heap_mb(cdp) -> float:
    cdp.send("HeapProfiler.collectGarbage")
    return cdp.send("Runtime.getHeapUsage")["usedSize"] / 1e6


def _memory(page, cdp) -> dict:
    heap = _heap_mb(cdp)
    return {"heap_mb": heap, **page.evaluate(TF_MEMORY)}


def _open(page, url: str, timeout_ms: int) -> dict:
    """Navigate; ms from navigation start to model ready and to the first result, and that classify() call."""
    page.goto(url, wait_until="commit")
    ready = wait_ready(page, timeout_ms)
    first = page.evaluate("() => globalThis.__benchFirst")
    return {"ready_ms": ready, "first_result_ms": first["resultMs"], "first_classify_ms": first["classifyMs"],
            "backend": first["backend"]}


def _reopen(page, traffic: Traffic, url: str, timeout_ms: int, loads: int) -> tuple[list[dict], dict]:
    """Load `url` again `loads` times in the same page (warm caches): the loads' timings and the last one's
    traffic."""
    opened, last_traffic = [], {}
    for _ in range(loads):
        opened.append(_open(page, url, timeout_ms))
        traffic.wait_quiet(page)
        last_traffic = traffic.take()
    return opened, last_traffic


def _loads(opened: list[dict]) -> dict:
    """Median and range of each timing over repeated loads."""
    out = {"n": len(opened), "backend": opened[0]["backend"]}
    for key in ("ready_ms", "first_result_ms", "first_classify_ms"):
        values = [o[key] for o in opened]
        out[key], out[key + "_range"] = statistics.median(values), (min(values), max(values))
    return out


def _fresh(browser, init: tuple[str, ...], root_url: str, site_dir: Path, **options):
    """A fresh context (empty caches) with the init scripts, its traffic log and a page."""
    context = browser.new_context(**options)
    for script in init:
        context.add_init_script(script)
    return context, Traffic(context, root_url, site_dir), context.new_page()


def bench_backend(browser, root_url: str, query: str, site_dir: Path, names: list[str], images: int,
                  iterations: int, loads: int, timeout_ms: int) -> dict:
    """Cold loads, inference, memory and warm loads of one page query (backend=...); each cold load in a fresh
    context."""
    url = f"{root_url}index.html?{query}"
    image_urls = [f"{IMAGES_DIR}/{name}" for name in names[:images]]
    init = (READY_OBSERVER, FIRST_RESULT % {"url": json.dumps(image_urls[0])})
    result: dict = {"errors": []}
    cold = []

    context, traffic, page = _fresh(browser, init, root_url, site_dir)
    page.on("pageerror", lambda e: result["errors"].append(str(e)))
    cdp = context.new_cdp_session(page)
    try:
        cold.append(_open(page, url, timeout_ms))
        result["runs_on"] = page.text_content("#backend")
        result["isolated"] = page.evaluate("crossOriginIsolated")
        result["service_worker"] = page.evaluate(SERVICE_WORKER_READY)
        traffic.wait_quiet(page)
        cold_traffic = traffic.take()

        page.evaluate(DECODE, image_urls[1:])
        ms = [cold[0]["first_classify_ms"]] + page.evaluate(PREDICT, [1, MEMORY_EARLY])
        early = _memory(page, cdp)
        total = max(images, iterations)
        ms += page.evaluate(PREDICT, [MEMORY_EARLY, total])
        late = _memory(page, cdp)
        result.update(first_ms=ms[0], median_ms=statistics.median(ms[:images]), images=images,
                      memory={"early": (MEMORY_EARLY, early), "late": (total, late)})
        traffic.wait_quiet(page)
        traffic.take()

        warm, warm_traffic = _reopen(page, traffic, url, timeout_ms, loads)
    finally:
        context.close()

    for _ in range(loads - 1):
        context, _, page = _fresh(browser, init, root_url, site_dir)
        try:
            cold.append(_open(page, url, timeout_ms))
        finally:
            context.close()

    # Without the service worker: what the HTTP cache alone gives (the server's headers decide).
    context, traffic, page = _fresh(browser, init, root_url, site_dir, service_workers="block")
    try:
        _open(page, url, timeout_ms)
        traffic.wait_quiet(page)
        traffic.take()
        warm_http, warm_http_traffic = _reopen(page, traffic, url, timeout_ms, loads)
    finally:
        context.close()
    result["cold"] = {**_loads(cold), "traffic": cold_traffic}
    result["warm"] = {**_loads(warm), "traffic": warm_traffic}
    result["warm_http"] = {**_loads(warm_http), "traffic": warm_http_traffic}
    return result


def _mb(n: float) -> str:
    return f"{n / 1e6:.2f} MB"


def _ms(load: dict, key: str) -> str:
    low, high = load[key + "_range"]
    return f"{load[key]:.0f} ms ({low:.0f}-{high:.0f})" if load["n"] > 1 else f"{load[key]:.0f} ms"


def _bytes(traffic: dict, who: str) -> int:
    return sum(p["bytes"] for p in traffic.get(who, {}).get("parts", {}).values())


def _how_line(traffic: dict) -> str:
    return "; ".join(f"{who}: " + ", ".join(f"{n} {how}" for how, n in sorted(entry["how"].items()))
                     for who, entry in traffic.items()) or "no requests"


def print_backend(name: str, r: dict, native: dict, slow: bool) -> None:
    print(f"\n== {name} ==" + ("  (fewer images and predictions: this backend is slow here)" if slow else ""))
    backend = name.split("-")[0]
    if r["cold"]["backend"] != backend:
        print(f"!! the page ran on {r['cold']['backend']}, not {backend}: {backend} did not start")
    print(f"the page says it runs on: {r['runs_on']}; cross-origin isolated: {r['isolated']}")
    for key, what in (("cold", "cold (fresh context, empty caches)"),
                      ("warm", "warm (same context, 2nd navigation)"),
                      ("warm_http", "warm, service workers blocked (HTTP cache only)")):
        load = r[key]
        print(f"{what}, median of {load['n']}: navigation -> model ready {_ms(load, 'ready_ms')}, "
              f"-> first result {_ms(load, 'first_result_ms')}; that classify() {_ms(load, 'first_classify_ms')}")
        if key != "cold":
            print(f"  requests: {_how_line(load['traffic'])}; body bytes over the network "
                  f"{sum(_bytes(load['traffic'], who) for who in load['traffic']):,}")
    print(f"service worker after the cold load: {r['service_worker']}")
    print(f"classify() per image, in the page: first {r['first_ms']:.1f} ms, median {r['median_ms']:.1f} ms over "
          f"{r['images']} test images")
    print(f"  median / native graph {r['median_ms'] / native['graph']:.2f}x; median / native preprocess + graph "
          f"{r['median_ms'] / (native['graph'] + native['preprocess']):.2f}x")
    traffic = r["cold"]["traffic"]
    for who, what in (("page", "fetched by the page to reach the first result"),
                      ("service worker", "fetched afterwards by the service worker's precache")):
        if who not in traffic:
            continue
        parts = traffic[who]["parts"]
        print(f"cold load, {what} (response bodies over the network; gzip -9 of the same files):")
        for part, p in parts.items():
            print(f"  {part:8} {p['bytes']:>11,} B {p['files']:>3} files   gzip {p['gzip']:>11,} B")
        print(f"  {'total':8} {_bytes(traffic, who):>11,} B {sum(p['files'] for p in parts.values()):>3} files"
              f"   gzip {sum(p['gzip'] for p in parts.values()):>11,} B")
    print(f"  requests: {_how_line(traffic)}")
    (n1, m1), (n2, m2) = r["memory"]["early"], r["memory"]["late"]
    print(f"memory after {n1} / {n2} predictions: tensors {m1['tensors']} / {m2['tensors']}, TF.js tensor bytes "
          f"{_mb(m1['bytes'])} / {_mb(m2['bytes'])}, JS heap after GC {m1['heap_mb']:.2f} / {m2['heap_mb']:.2f} MB "
          f"(growth {m2['heap_mb'] - m1['heap_mb']:+.2f} MB)")
    for error in r["errors"]:
        print(f"page error: {error}")


def print_summary(results: dict, native: dict) -> None:
    print("\nsummary (ms; loads: medians; ratio = classify() median / native graph median; MB over the network on "
          "a cold load: the page's own, + the service worker's precache)")
    header = ("backend", "cold ready", "cold result", "warm ready", "warm result", "first", "median", "ratio",
              "cold MB", "+SW MB", "tensors", "heap +MB")
    rows = []
    for name, r in results.items():
        (n1, m1), (n2, m2) = r["memory"]["early"], r["memory"]["late"]
        traffic = r["cold"]["traffic"]
        rows.append((name, f"{r['cold']['ready_ms']:.0f}", f"{r['cold']['first_result_ms']:.0f}",
                     f"{r['warm']['ready_ms']:.0f}", f"{r['warm']['first_result_ms']:.0f}", f"{r['first_ms']:.1f}",
                     f"{r['median_ms']:.1f}", f"{r['median_ms'] / native['graph']:.2f}",
                     f"{_bytes(traffic, 'page') / 1e6:.2f}", f"{_bytes(traffic, 'service worker') / 1e6:.2f}",
                     f"{m1['tensors']}/{m2['tensors']} @{n1}/{n2}", f"{m2['heap_mb'] - m1['heap_mb']:+.2f}"))
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(c).rjust(w) for c, w in zip(row, widths)))


def _cache_headers(url: str) -> str:
    """The caching headers the server actually sends, as one line."""
    with urllib.request.urlopen(url) as response:
        found = [f"{h}: {response.headers[h]}" for h in ("Cache-Control", "ETag", "Last-Modified", "Expires")
                 if response.headers[h]]
    return "; ".join(found) or "no caching headers"


def _describe(model_dir: Path) -> str:
    report = json.loads((model_dir / "report.json").read_text())
    m = report.get("model", {})
    return (f"{m.get('backbone', '?')}, input {m.get('input', '?')}, {m.get('quantization', '?')}, "
            f"{m.get('tfjs_bytes', 0):,} TF.js bytes, trained {report.get('training', {}).get('date', '?')}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="model folder (default: model/)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="HAM10000 folder holding images/")
    parser.add_argument("--images", type=int, default=50, help="test images timed per backend (default 50)")
    parser.add_argument("--iterations", type=int, default=200,
                        help="predictions before the second memory reading (default 200)")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated, of wasm,webgl,cpu")
    parser.add_argument("--slow-images", type=int, default=20, help="--images for webgl and cpu (default 20)")
    parser.add_argument("--slow-iterations", type=int, default=50, help="--iterations for webgl and cpu (default 50)")
    parser.add_argument("--loads", type=int, default=3,
                        help="cold loads (each in a fresh context) and warm reloads timed per backend (default 3)")
    parser.add_argument("--timeout", type=int, default=300, help="seconds to wait for the model to load")
    parser.add_argument("--rounds", type=int, default=5,
                        help="alternating rounds of WASM classify() and native TensorFlow on the same images, for "
                             "the ratio (default 5; 0 skips them)")
    parser.add_argument("--wasm-threads", default="",
                        help="comma-separated WASM thread counts to time as extra rows, e.g. 1,2 (default: only the "
                             "page's automatic choice)")
    args = parser.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        parser.error(f"unknown backend {unknown[0]!r}; valid: {', '.join(BACKENDS)}")
    try:
        threads = [int(n) for n in args.wasm_threads.split(",") if n.strip()]
    except ValueError:
        parser.error(f"--wasm-threads: {args.wasm_threads!r} is not a comma-separated list of whole numbers")
    if any(n < 1 for n in threads):
        parser.error("--wasm-threads: thread counts start at 1")
    paths, _ = test_split(args.model, args.data, args.images)

    print(f"browser benchmark, {machine()}")
    print(f"model {args.model}: {_describe(args.model)}")
    timer = NativeTimer(args.model, paths[:args.images])
    native = native_figures(timer)
    print(f"native TensorFlow {native['version']} (the exported graph, BatchNorm folded, in a tf.function, CPU, "
          f"intra-op threads {native['threads']}, batch 1, {args.images} test images after 3 warm-up calls): median "
          f"{native['graph']:.1f} ms (first timed {native['first']:.1f}); the Keras model as trained: median "
          f"{native['keras']:.1f} ms; preprocessing alone (crop, halve, resize) median {native['preprocess']:.1f} ms")

    results, paired = {}, []
    with tempfile.TemporaryDirectory(prefix="bench-browser-") as tmp:
        site_dir = build_site(args.model, Path(tmp) / "site")
        (site_dir / IMAGES_DIR).mkdir()
        for path in paths:
            shutil.copy(path, site_dir / IMAGES_DIR / path.name)
        names = [p.name for p in paths]
        with served(site_dir) as base_url, chromium() as browser:
            print(f"Chromium {browser.version}, headless; the server (skinlesion.site.make_server) sends "
                  f"{_cache_headers(base_url + 'model/model.json')}")
            for name in backends:
                slow = name in SLOW_BACKENDS
                images = min(args.slow_images, args.images) if slow else args.images
                iterations = min(args.slow_iterations, args.iterations) if slow else args.iterations
                rows = {name: f"backend={name}"}
                if name == "wasm":
                    rows.update({f"wasm-{n}t": f"backend=wasm&threads={n}" for n in threads})
                for row, query in rows.items():
                    results[row] = bench_backend(browser, base_url, query, site_dir, names, images, iterations,
                                                 args.loads, args.timeout * 1000)
                    print_backend(row, results[row], native, slow)
            if "wasm" in backends and args.rounds > 0:
                paired = paired_rounds(browser, base_url, names[:args.images], timer, args.rounds,
                                       args.timeout * 1000)
    print_summary(results, native)
    if paired:
        ratios = [r["ratio"] for r in paired]
        print(f"\nwasm (the page's automatic threads) against native TensorFlow in {args.rounds} alternating rounds "
              f"of {min(args.images, len(names))} images each (ms, medians of each round):")
        for i, r in enumerate(paired, 1):
            print(f"  round {i}: classify() {r['browser']:.1f}, native {r['native']:.1f}, ratio {r['ratio']:.2f}x")
        print(f"  ratio: median {statistics.median(ratios):.2f}x (range {min(ratios):.2f}-{max(ratios):.2f}x): the "
              f"figure to track")


if __name__ == "__main__":
    main()
