// Loads the exported TF.js graph model and classifies images. No DOM access.
//
// Everything about the model comes from its metadata JSON (written by the Python export):
// class list and order, input size, crop rule. Pixel scaling and softmax live inside the model,
// so images go in as raw 0-255 RGB and probabilities come out.

import { selectBackend } from './backend.js';

const tf = globalThis.tf;

/** Number of live TF.js tensors (tests check it stays flat over many predictions). */
export function numTensors() {
  return tf.memory().numTensors;
}

/**
 * The centre crop of a w x h image to the aspect width/height, as {x, y, width, height}.
 * The same integer arithmetic as the Python side (model.center_crop_box): cut the longer side to the
 * model's aspect, rounding halves up, and keep the middle.
 */
export function centreCrop(w, h, width, height) {
  if (w * height > h * width) {
    const cropW = Math.floor((2 * h * width + height) / (2 * height));
    return { x: Math.floor((w - cropW) / 2), y: 0, width: cropW, height: h };
  }
  const cropH = Math.floor((2 * w * height + width) / (2 * width));
  return { x: 0, y: Math.floor((h - cropH) / 2), width: w, height: cropH };
}

/** Results sorted by probability, highest first; at most k of them. */
export function topK(results, k = 3) {
  return [...results].sort((a, b) => b.probability - a.probability).slice(0, k);
}

function checkMetadata(meta, url) {
  const problems = [];
  const input = meta?.input ?? {};
  for (const key of ['height', 'width']) {
    if (!Number.isInteger(input[key]) || input[key] <= 0) problems.push(`input.${key} is not a positive integer`);
  }
  if (input.channels !== undefined && input.channels !== 3) problems.push(`input.channels is ${input.channels}, not 3`);
  if (input.crop !== undefined && input.crop !== 'center') problems.push(`unsupported input.crop "${input.crop}"`);
  if (input.resize !== undefined && input.resize !== 'bilinear') {
    problems.push(`unsupported input.resize "${input.resize}"`);
  }
  if (meta?.output !== undefined && meta.output !== 'probabilities') {
    problems.push(`unsupported output "${meta.output}"`);
  }
  if (!Array.isArray(meta?.classes) || meta.classes.length === 0 || meta.classes.some((c) => !c?.code)) {
    problems.push('classes is not a non-empty list of {code, name, ...}');
  }
  if (typeof meta?.model_url !== 'string' || meta.model_url === '') problems.push('model_url is missing');
  if (problems.length) {
    throw new Error(`The model metadata at ${url} is not usable: ${problems.join('; ')}. `
      + 'Rebuild the site with `python build.py`.');
  }
}

async function fetchMetadata(url) {
  let response;
  try {
    response = await fetch(url);
  } catch (err) {
    throw new Error(`Could not fetch the model metadata at ${url} (${err.message}).`);
  }
  if (!response.ok) {
    throw new Error(`Could not fetch the model metadata at ${url} (HTTP ${response.status}). `
      + 'Rebuild the site with `python build.py`.');
  }
  try {
    return await response.json();
  } catch {
    throw new Error(`The model metadata at ${url} is not valid JSON.`);
  }
}

// The exported model has named outputs (probabilities, class_maps, ood_score: see skinlesion/model.py).
// predict() returns them as an array in the order of model.outputNodes (the signature's names); a model with a
// single output returns just its probabilities.
function namedOutputs(model, y) {
  if (y instanceof tf.Tensor) return { probabilities: y };
  if (Array.isArray(y)) return Object.fromEntries(model.outputNodes.map((name, i) => [name, y[i]]));
  return y;
}

// RGBA values (0-255, row-major) -> RGB floats with transparent pixels composited on white, as the page shows
// them and as Python reads them; opaque pixels come through unchanged. A plain loop: pulling the channels apart
// with tensor slices took longer on WASM (about 3 ms a photo) than several of the model's layers.
function onWhite(rgba) {
  const rgb = new Float32Array((rgba.length / 4) * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
    const a = rgba[i + 3];
    if (a === 255) {
      rgb[j] = rgba[i];
      rgb[j + 1] = rgba[i + 1];
      rgb[j + 2] = rgba[i + 2];
    } else {
      const alpha = a / 255;
      for (let c = 0; c < 3; c++) rgb[j + c] = Math.round(rgba[i + c] * alpha + (1 - alpha) * 255);
    }
  }
  return rgb;
}

// The pixel size of anything drawImage takes (ImageBitmap, canvas, <img>, <video>) or of ImageData.
function sourceSize(source) {
  return {
    width: source.videoWidth || source.naturalWidth || source.width,
    height: source.videoHeight || source.naturalHeight || source.height,
  };
}

// A 2D canvas to read pixels through, reused from one photo to the next: drawing the crop onto it and reading it
// back is what tf.browser.fromPixels does on the WASM and CPU backends, without its int32 copy of the whole photo,
// the crop as a tensor slice, and the read-back of that slice (about 1.5 ms a photo on WASM).
let pixelCanvas = null;

// The RGBA bytes of `box` ({x, y, width, height}, whole pixels) of `source`, row-major.
function cropPixels(source, box) {
  if (source instanceof ImageData) {
    const rows = new Uint8ClampedArray(box.width * box.height * 4);
    for (let y = 0; y < box.height; y++) {
      const start = ((box.y + y) * source.width + box.x) * 4;
      rows.set(source.data.subarray(start, start + box.width * 4), y * box.width * 4);
    }
    return rows;
  }
  pixelCanvas ??= typeof OffscreenCanvas !== 'undefined'
    ? new OffscreenCanvas(box.width, box.height) : globalThis.document.createElement('canvas');
  if (pixelCanvas.width !== box.width || pixelCanvas.height !== box.height) {
    pixelCanvas.width = box.width;
    pixelCanvas.height = box.height;
  }
  const ctx = pixelCanvas.getContext('2d', { willReadFrequently: true });
  ctx.clearRect(0, 0, box.width, box.height);
  ctx.drawImage(source, box.x, box.y, box.width, box.height, 0, 0, box.width, box.height);
  return ctx.getImageData(0, 0, box.width, box.height).data;
}

// The class activation map of one class, scaled to 0..1: where in the image the evidence for it lies.
function activationMap(classMaps, index) {
  const [, rows, cols, classes] = classMaps.shape;
  const values = new Float32Array(rows * cols);
  for (let i = 0; i < values.length; i++) values[i] = classMaps.data[i * classes + index];
  let min = Infinity;
  let max = -Infinity;
  for (const v of values) { min = Math.min(min, v); max = Math.max(max, v); }
  for (let i = 0; i < values.length; i++) values[i] = max > min ? (values[i] - min) / (max - min) : 0;
  return { width: cols, height: rows, values };
}

/**
 * Loads the model described by the metadata JSON at `metadataUrl` and warms it up.
 * @param {string} metadataUrl URL of metadata.json (relative URLs resolve against the page)
 * @param {{onProgress?: (fraction: number) => void}} [options]
 * @returns {Promise<{metadata: object, backend: string, classify: Function, analyze: Function,
 *   dispose: Function}>}
 */
export async function load(metadataUrl, { onProgress } = {}) {
  const backend = await selectBackend();
  const base = globalThis.location?.href;
  const metaUrl = base ? new URL(metadataUrl, base).href : metadataUrl;
  onProgress?.(0);
  const metadata = await fetchMetadata(metaUrl);
  checkMetadata(metadata, metaUrl);
  const modelUrl = new URL(metadata.model_url, metaUrl).href;

  let model;
  try {
    model = await tf.loadGraphModel(modelUrl, { onProgress });
  } catch (err) {
    throw new Error(`Could not load the model at ${modelUrl} (${err.message}).`);
  }

  const { height, width } = metadata.input;
  const classes = metadata.classes;
  // Shrink by 2x2 averages while the crop is at least this many times the input in both sides (Python does the
  // same): bilinear resizing alone aliases badly when it shrinks a photo many times. Absent: no halving.
  const halveAt = Number(metadata.input.halve_while_at_least) || Infinity;

  async function run(input4d) {
    const outputs = namedOutputs(model, model.predict(input4d));
    try {
      const { probabilities, class_maps: classMaps, ood_score: oodScore } = outputs;
      if (!probabilities || probabilities.size !== classes.length) {
        throw new Error(`The model returned ${probabilities?.size} probabilities but its metadata lists `
          + `${classes.length} classes.`);
      }
      return {
        probabilities: await probabilities.data(),
        classMaps: classMaps ? { shape: classMaps.shape, data: await classMaps.data() } : null,
        oodScore: oodScore ? (await oodScore.data())[0] : null,
      };
    } finally {
      Object.values(outputs).forEach((t) => t.dispose());
    }
  }

  // -> {input: [1, height, width, 3] tensor, crop: the centre crop as fractions of the source's size}
  function preprocess(source) {
    const { width: w, height: h } = sourceSize(source);
    const crop = centreCrop(w, h, width, height);
    const rgb = onWhite(cropPixels(source, crop));
    const input = tf.tidy(() => {
      let x = tf.tensor4d(rgb, [1, crop.height, crop.width, 3]);
      while (x.shape[1] >= halveAt * height && x.shape[2] >= halveAt * width) {
        x = tf.avgPool(x, 2, 2, 'valid');
      }
      if (x.shape[1] === height && x.shape[2] === width) return x; // a resize to its own size changes nothing
      // alignCorners=false, halfPixelCenters=true: what Python's tf.image.resize does.
      return tf.image.resizeBilinear(x, [height, width], false, true);
    });
    return {
      input,
      crop: { x: crop.x / w, y: crop.y / h, width: crop.width / w, height: crop.height / h },
    };
  }

  function toResults(probs) {
    // The model already outputs calibrated probabilities: the temperature is a layer inside it, so the
    // metadata's "temperature" is informational and is not applied again here.
    return classes.map((c, i) => ({ code: c.code, name: c.name ?? c.code, probability: probs[i] }));
  }

  /**
   * Classifies one image (ImageBitmap, ImageData, HTMLImageElement, canvas or video) and says how far to trust
   * it. Pixels of anything but ImageData are read through a 2D canvas, which stores them with premultiplied alpha:
   * opaque and fully transparent pixels reach the model as Python reads them, a semi-transparent one may differ by
   * one level.
   * @returns {Promise<{results: Array<{code, name, probability}>, cam: ?{width, height, values, crop},
   *   oodScore: ?number, uncertain: boolean, outOfDistribution: boolean, alerts: Array}>}
   *   results in metadata class order; cam: the top class's activation map (values 0..1, row-major) over the
   *   crop the model saw (fractions of the source image); uncertain: the top probability is under the
   *   metadata's uncertain_below; outOfDistribution: the image's features are far from every training image
   *   (ood_score above the metadata's ood_threshold). Both thresholds were chosen on validation images.
   */
  async function analyze(source) {
    const { input, crop } = preprocess(source);
    let output;
    try {
      output = await run(input);
    } finally {
      input.dispose();
    }
    const results = toResults(output.probabilities);
    const top = results.reduce((best, r, i) => (r.probability > results[best].probability ? i : best), 0);
    return {
      results,
      cam: output.classMaps ? { ...activationMap(output.classMaps, top), crop } : null,
      oodScore: output.oodScore,
      uncertain: typeof metadata.uncertain_below === 'number' && results[top].probability < metadata.uncertain_below,
      outOfDistribution: typeof metadata.ood_threshold === 'number' && output.oodScore !== null
        && output.oodScore > metadata.ood_threshold,
      alerts: alerts(results),
    };
  }

  /** The class probabilities alone, in metadata class order: [{code, name, probability}]. */
  async function classify(source) {
    return (await analyze(source)).results;
  }

  /**
   * Alert thresholds from the metadata ({code: probability}) that these results reach or pass, as
   * [{code, name, probability, threshold}]; thresholds were chosen on validation images by the pipeline.
   */
  function alerts(results) {
    return Object.entries(metadata.thresholds ?? {}).flatMap(([code, threshold]) => {
      const r = results.find((x) => x.code === code);
      return r && typeof threshold === 'number' && r.probability >= threshold ? [{ ...r, threshold }] : [];
    });
  }

  // The first inference compiles shaders / kernels (seconds on WebGL) and the first photo sets up the pixel reading;
  // do both here, on a blank image the size of the model's input, not on the user's photo.
  try {
    await analyze(await createImageBitmap(new ImageData(width, height), { premultiplyAlpha: 'none' }));
  } catch (err) {
    model.dispose();
    throw new Error(`The model at ${modelUrl} does not run on a [1, ${height}, ${width}, 3] input (${err.message}).`);
  }

  return {
    metadata,
    backend: backend.name,
    classify,
    analyze,
    /** The metadata entry (code, name, description, urgency, ...) for a class code. */
    classInfo: (code) => classes.find((c) => c.code === code),
    alerts,
    dispose: () => model.dispose(),
  };
}
