// Picks the TF.js backend once per page and exports the choice.
//
// Order: WebGL when the WebGL renderer is a real GPU, else WASM, else CPU. A software WebGL renderer
// (SwiftShader, llvmpipe) is ~10x slower than WASM on the same CPU, so it only comes after WASM.
// `?backend=webgl|wasm|cpu` in the page URL forces a backend to be tried first (the page's settings form and the
// benchmarks set it). WASM runs on several threads when the page is cross-origin isolated (SharedArrayBuffer
// exists): as many as the CPU has logical cores, or `?threads=N`.
//
// Expects the classic scripts tf.min.js and tf-backend-wasm.min.js to have set the global `tf`.

const tf = globalThis.tf;

export const BACKENDS = Object.freeze(['webgl', 'wasm', 'cpu']);

// The vendored TF.js folder, resolved against this module so the site works under any sub-path.
const WASM_DIR = new URL('../vendor/tfjs/', import.meta.url).href;

const SOFTWARE_RENDERER = /swiftshader|llvmpipe|softpipe|software|basic render|mesa offscreen/i;

/** The chosen backend's name ('webgl' | 'wasm' | 'cpu'), or null until selectBackend() has settled. */
export let backendName = null;

let selection = null;

/**
 * Describes the WebGL renderer: {available, renderer, realGpu}.
 * Uses an OffscreenCanvas where there is one, so it also runs without a document.
 */
export function probeWebGL() {
  let canvas;
  try {
    canvas = typeof OffscreenCanvas !== 'undefined'
      ? new OffscreenCanvas(1, 1)
      : globalThis.document?.createElement('canvas');
  } catch {
    canvas = null;
  }
  const gl = canvas && (canvas.getContext('webgl2') || canvas.getContext('webgl'));
  if (!gl) return { available: false, renderer: '', realGpu: false };
  const info = gl.getExtension('WEBGL_debug_renderer_info');
  const renderer = String(gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER) || '');
  let realGpu = renderer !== '' && !SOFTWARE_RENDERER.test(renderer);
  // Without the debug extension (Firefox with fingerprinting protection) RENDERER is a generic
  // string; ask the browser instead whether WebGL would be a major performance caveat here.
  if (realGpu && !info && probeStrict() === false) realGpu = false;
  gl.getExtension('WEBGL_lose_context')?.loseContext();
  return { available: true, renderer, realGpu };
}

function probeStrict() {
  try {
    const c = typeof OffscreenCanvas !== 'undefined'
      ? new OffscreenCanvas(1, 1) : globalThis.document.createElement('canvas');
    const gl = c.getContext('webgl', { failIfMajorPerformanceCaveat: true });
    if (gl) gl.getExtension('WEBGL_lose_context')?.loseContext();
    return Boolean(gl);
  } catch {
    return null;
  }
}

/** The order in which to try backends, given a WebGL probe and an optional forced first choice. */
export function backendOrder(webgl, forced = null) {
  const order = webgl.realGpu ? ['webgl', 'wasm', 'cpu'] : ['wasm', 'webgl', 'cpu'];
  if (!webgl.available) order.splice(order.indexOf('webgl'), 1);
  if (forced && BACKENDS.includes(forced)) {
    return [forced, ...order.filter((name) => name !== forced)];
  }
  return order;
}

/** A setting from the page URL's query (`?backend=wasm&threads=2`), lower-cased; null when absent or empty. */
export function urlSetting(name) {
  const value = new URLSearchParams(globalThis.location?.search ?? '').get(name);
  return value ? value.toLowerCase() : null;
}

/** Whether WASM can use threads here: they need SharedArrayBuffer, which only a cross-origin isolated page has. */
export function threadsPossible() {
  return Boolean(globalThis.crossOriginIsolated) && typeof SharedArrayBuffer === 'function';
}

/** The WASM thread count to ask for: a positive integer `wanted`, else one per logical core. */
export function threadCount(wanted, cores = globalThis.navigator?.hardwareConcurrency) {
  const n = Number(wanted);
  if (Number.isInteger(n) && n > 0) return n;
  return Math.max(1, Number(cores) || 1);
}

// TF.js's WASM module caps its thread pool at navigator.hardwareConcurrency / 2, assuming two hardware threads per
// core; on CPUs without them (this project's 2-core VM, ARM phones and laptops) that halves the cores used. While
// the module initialises, report enough logical cores for `threads` (the instance property hides the prototype's
// getter, then goes).
async function withCoresFor(threads, initialise) {
  const nav = globalThis.navigator;
  if (!nav || !threads || threads <= (nav.hardwareConcurrency || 1) / 2) return initialise();
  Object.defineProperty(nav, 'hardwareConcurrency', { value: 2 * threads, configurable: true });
  try {
    return await initialise();
  } finally {
    delete nav.hardwareConcurrency;
  }
}

async function trySetBackend(name, threads) {
  let wasmThreads = 0;
  if (name === 'wasm') {
    if (!tf.wasm) return 'the WASM backend script did not load';
    // Both must run before the wasm backend initialises; later calls are ignored by TF.js.
    tf.wasm.setWasmPaths(WASM_DIR);
    if (threadsPossible()) {
      wasmThreads = threadCount(threads);
      tf.wasm.setThreadsCount(wasmThreads);
    }
  }
  try {
    // setBackend resolves to false (not an exception) when the backend fails to initialise, and then
    // leaves the previous backend active, so the boolean is the only reliable signal.
    const ok = await withCoresFor(wasmThreads, () => tf.setBackend(name));
    if (!ok) return 'failed to initialise';
    await tf.ready();
    return tf.getBackend() === name ? null : `TF.js reports ${tf.getBackend()} instead`;
  } catch (err) {
    return err?.message || String(err);
  }
}

function explain(name, webgl) {
  if (name === 'webgl') {
    return webgl.realGpu ? `GPU: ${webgl.renderer}` : 'WebAssembly did not start (WebGL here is software)';
  }
  if (name === 'wasm') {
    if (webgl.realGpu) return 'WebGL did not start';
    return webgl.available ? 'no hardware GPU found (WebGL here is software)' : 'no WebGL';
  }
  return 'the other backends did not start';
}

async function select(forced, threads) {
  if (!tf) throw new Error('TensorFlow.js did not load (static/vendor/tfjs/tf.min.js).');
  const webgl = probeWebGL();
  const notes = [];
  if (forced && !BACKENDS.includes(forced)) {
    notes.push(`ignored unknown backend "${forced}" (valid: ${BACKENDS.join(', ')})`);
  }
  for (const name of backendOrder(webgl, forced)) {
    const failure = await trySetBackend(name, threads);
    if (failure === null) {
      backendName = name;
      const reason = name === forced ? 'chosen in the settings' : explain(name, webgl);
      const threadsUsed = name === 'wasm' ? tf.wasm.getThreadsCount() : null;
      return { name, reason, renderer: webgl.renderer, notes, threads: threadsUsed };
    }
    notes.push(`${name}: ${failure}`);
  }
  throw new Error(`No TF.js backend could start (${notes.join('; ')}).`);
}

/**
 * Selects the backend once; later calls return the same promise.
 * Resolves to {name, reason, renderer, notes, threads}; `notes` lists backends that were tried and failed,
 * `threads` is the number of WASM threads (null for the other backends).
 * @param {{forced?: string|null, threads?: string|number|null}} [options] forced: a backend to try first
 *   (default: ?backend= in the URL); threads: WASM threads when the page is isolated (default: ?threads=)
 */
export function selectBackend({ forced = urlSetting('backend'), threads = urlSetting('threads') } = {}) {
  if (!selection) selection = select(forced, threads);
  return selection;
}

/** A short human-readable label for a backend name; it names the ?backend= value too. */
export function backendLabel(name) {
  return { webgl: 'WebGL', wasm: 'WebAssembly (wasm)', cpu: 'plain JavaScript (cpu, slow)' }[name] ?? name;
}
