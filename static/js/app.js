// The classifier page: takes photos (picker, folder, camera, drop, paste), lets the person frame the lesion,
// shows the model's answer (one photo: a result card; several: a batch table), and reports every problem on the
// page. Owns the DOM; the model lives in classifier.js, photo decoding in images.js.

import { Batch } from './batch.js';
import {
  BACKENDS, backendLabel, selectBackend, threadsPossible, urlSetting,
} from './backend.js';
import { Camera, cameraProblem, cameraSupported } from './camera.js';
import { load, numTensors, topK } from './classifier.js';
import { CropStep } from './crop.js';
import { drawActivationMap } from './explain.js';
import { offlineSupported, registerServiceWorker } from './offline.js';
import {
  defaultFrame, drawFrame, fromBitmap, ImageProblem, looksLikeImage, modelInput, readImage, stem,
} from './images.js';

// Result images are drawn at most this wide (CSS pixels x device pixel ratio stay sharp in a 14rem column).
const RESULT_WIDTH = 640;

const root = document.querySelector('[data-metadata-url]');
const byId = (id) => document.getElementById(id);
const els = {
  fileInput: byId('file-input'),
  folderInput: byId('folder-input'),
  cameraInput: byId('camera-input'),
  cameraOpen: byId('camera-open'),
  cropFirst: byId('crop-first'),
  dropzone: byId('dropzone'),
  progress: byId('model-progress'),
  modelStatus: byId('model-status'),
  backend: byId('backend'),
  offline: byId('offline-status'),
  messages: byId('messages'),
  results: byId('results'),
  clear: byId('clear'),
  template: byId('result-template'),
};
const cropStep = new CropStep(byId('crop-dialog'));
const camera = new Camera(byId('camera-dialog'));
const batch = new Batch(byId('batch'));

let queue = Promise.resolve();
let cameraCount = 0;

function formatPercent(p) {
  if (p < 0.001) return '<0.1%';
  return `${(p * 100).toFixed(1)}%`;
}

function showMessage(text, kind = 'error') {
  const item = document.createElement('li');
  item.className = `message message-${kind}`;
  item.textContent = text;
  els.messages.prepend(item);
  els.clear.hidden = false;
}

// ---------------------------------------------------------------- settings

// The settings form's choices, with the page's current ones selected (the form reloads the page with them).
function fillSettings() {
  const backend = byId('setting-backend');
  const threads = byId('setting-threads');
  for (const name of BACKENDS) backend.add(new Option(backendLabel(name), name));
  const cores = Math.max(1, navigator.hardwareConcurrency || 1);
  for (let n = 1; n <= Math.max(cores, 2); n++) threads.add(new Option(String(n), String(n)));
  backend.value = BACKENDS.includes(urlSetting('backend')) ? urlSetting('backend') : '';
  threads.value = [...threads.options].some((o) => o.value === urlSetting('threads')) ? urlSetting('threads') : '';
  if (backend.value || threads.value) backend.closest('details').open = true;  // show the choices in force
  byId('threads-note').textContent = threadsPossible()
    ? `This device reports ${cores} logical processor${cores === 1 ? '' : 's'}.`
    : 'Here WebAssembly runs on one thread: threads need a cross-origin isolated page. Where the server cannot '
      + 'make it so (GitHub Pages), the page becomes isolated from the next visit, once offline use is ready.';
}

fillSettings();

// ---------------------------------------------------------------- model

const modelReady = (async () => {
  selectBackend().then(
    (b) => {
      const notes = b.notes.length ? ` (${b.notes.join('; ')})` : '';
      const threads = b.threads ? `, ${b.threads} thread${b.threads === 1 ? '' : 's'}` : '';
      els.backend.textContent = `${backendLabel(b.name)}${threads}: ${b.reason}${notes}`;
    },
    () => { els.backend.textContent = 'none'; },
  );
  const model = await load(root.dataset.metadataUrl, {
    onProgress: (fraction) => {
      els.progress.value = Math.round(fraction * 100);
      els.modelStatus.textContent = `Downloading the model: ${Math.round(fraction * 100)}%`;
    },
  });
  els.progress.value = 100;
  els.progress.hidden = true;
  const version = model.metadata.version ? ` (version ${model.metadata.version})` : '';
  els.modelStatus.textContent = `Model ready${version}. It runs on this device.`;
  root.dataset.state = 'ready';
  return model;
})();

modelReady.catch((err) => {
  root.dataset.state = 'error';
  els.progress.hidden = true;
  els.modelStatus.textContent = 'The model could not be loaded.';
  showMessage(`The model could not be loaded: ${err.message}`);
});

// The model's answer for one input: {results, cam, uncertain, outOfDistribution, alerts} from analyze(), or
// {results} alone from a classifier without it.
async function analyse(model, source) {
  if (typeof model.analyze === 'function') return model.analyze(source);
  return { results: await model.classify(source) };
}

// What the model's own checks say about a photo (see analyse()): alerts ("have it checked") and warnings
// (unsure, unlike the training photos), each as {text} for a result card and {short} for a batch row.
// Nothing when the model reports nothing.
function cautions(model, analysis) {
  const alerts = (analysis.alerts ?? model.alerts(analysis.results)).map((a) => {
    const score = `${a.name.toLowerCase()} score (${formatPercent(a.probability)})`;
    return {
      text: `The ${score} reaches the alert threshold (${formatPercent(a.threshold)}) chosen on validation `
        + 'images so that most such lesions are caught. Have this lesion checked by a doctor.',
      short: `Have it checked by a doctor: the ${score} reaches its alert threshold `
        + `(${formatPercent(a.threshold)}).`,
    };
  });
  const warnings = [];
  if (analysis.outOfDistribution) {
    warnings.push({
      text: 'This does not look like the dermatoscopic lesion photos the model was trained on, so its answer '
        + 'means little here.',
      short: 'Does not look like a dermatoscopic lesion photo: the answer means little.',
    });
  }
  if (analysis.uncertain) {
    warnings.push({
      text: 'The model is unsure about this photo: no class stands out clearly. Do not read much into the ranking '
        + 'below.',
      short: 'The model is unsure: no class stands out.',
    });
  }
  return { alerts, warnings };
}

// ---------------------------------------------------------------- one photo: a result card

function renderBars(bars, model, results) {
  const rank = new Map(topK(results, 3).map((r, i) => [r.code, i + 1]));
  for (const r of results) {
    const info = model.classInfo(r.code) ?? {};
    const item = document.createElement('li');
    item.className = 'bar';
    if (rank.has(r.code)) item.classList.add('top', 'bar-top', `bar-rank-${rank.get(r.code)}`);
    const label = document.createElement('span');
    label.className = 'bar-label';
    if (rank.has(r.code)) {
      const badge = document.createElement('span');
      badge.className = 'bar-rank';
      badge.textContent = `#${rank.get(r.code)}`;
      label.append(badge, ' ');
    }
    const name = document.createElement('span');
    name.className = 'bar-name';
    name.textContent = r.name;
    label.append(name);
    if (info.malignant) {
      const tag = document.createElement('span');
      tag.className = 'tag-malignant';
      tag.textContent = 'cancer or pre-cancer';
      label.append(' ', tag);
    }
    const value = document.createElement('span');
    value.className = 'bar-value';
    value.textContent = formatPercent(r.probability);
    const track = document.createElement('span');
    track.className = 'bar-track';
    track.setAttribute('aria-hidden', 'true');
    const fill = document.createElement('span');
    fill.className = 'bar-fill';
    // CSSOM writes are allowed under the CSP's style-src 'self'; style="" attributes would not be.
    fill.style.width = `${(r.probability * 100).toFixed(2)}%`;
    track.append(fill);
    item.append(label, value, track);
    bars.append(item);
  }
  bars.hidden = false;
}

// The card shows the model's view only (the frame), so the map's crop, given as fractions of the source the
// classifier received, is re-expressed as fractions of that view.
function showActivationMap(card, cam, className) {
  const { sourceSize: size, sourceFrame: frame } = card;
  const crop = {
    x: (cam.crop.x * size.width - frame.x) / frame.width,
    y: (cam.crop.y * size.height - frame.y) / frame.height,
    width: (cam.crop.width * size.width) / frame.width,
    height: (cam.crop.height * size.height) / frame.height,
  };
  const overlay = card.querySelector('.result-overlay');
  const toggle = card.querySelector('.result-map-toggle');
  overlay.hidden = false; // laid out first: the map is drawn at the overlay's displayed size
  drawActivationMap(overlay, { ...cam, crop });
  overlay.setAttribute('aria-label', `Where the model found the most evidence for ${className}: yellow to red `
    + 'marks the areas that weighed most.');
  toggle.hidden = false;
  const input = toggle.querySelector('input');
  input.addEventListener('change', () => { overlay.hidden = !input.checked; });
}

function renderResult(card, model, analysis, ms) {
  const { results } = analysis;
  const [best] = topK(results, 1);
  const info = model.classInfo(best.code) ?? best;
  card.querySelector('.result-status').textContent = '';
  card.querySelector('.top-name').textContent = info.name ?? best.name;
  card.querySelector('.top-probability').textContent = formatPercent(best.probability);
  card.querySelector('.top-description').textContent = info.description ?? '';
  card.querySelector('.top-urgency').textContent = info.urgency ?? '';
  card.querySelector('.result-top').hidden = false;

  const { alerts, warnings } = cautions(model, analysis);
  const alertBox = card.querySelector('.result-alert');
  alertBox.textContent = alerts.map((c) => c.text).join(' ');
  alertBox.hidden = alerts.length === 0;
  const warning = card.querySelector('.result-warning');
  warning.textContent = warnings.map((c) => c.text).join(' ');
  warning.hidden = warnings.length === 0;
  if (analysis.cam) showActivationMap(card, analysis.cam, info.name ?? best.name);

  renderBars(card.querySelector('.bars'), model, results);
  card.querySelector('.result-meta').textContent = `Classified in ${Math.round(ms)} ms with ${backendLabel(model.backend)}.`;
}

function newCard(image, frame) {
  const card = els.template.content.firstElementChild.cloneNode(true);
  card.querySelector('.result-file').textContent = image.name;
  card.setAttribute('aria-label', `Result for ${image.name}`);
  const view = drawFrame(image.bitmap, frame, RESULT_WIDTH);
  const shown = card.querySelector('.result-image');
  shown.width = view.width;
  shown.height = view.height;
  shown.getContext('2d').drawImage(view, 0, 0);
  shown.setAttribute('aria-label', `The part of ${image.name} the model looked at`);
  const { width, height } = image.original;
  const scale = width / image.bitmap.width;
  const cut = `${Math.round(frame.width * scale)} x ${Math.round(frame.height * scale)}`;
  card.querySelector('.result-size').textContent = `The model's view: ${cut} px of the ${width} x ${height} px photo.`;
  els.results.prepend(card);
  els.clear.hidden = false;
  return card;
}

async function classifyOne(image) {
  let card;
  try {
    for (const note of image.notes) showMessage(note.text, note.kind);
    const model = await modelReady;
    let frame = defaultFrame(image.bitmap, model.metadata.input);
    if (els.cropFirst.checked) {
      const choice = await cropStep.open(image.bitmap, model.metadata.input, image.name);
      if (!choice) {
        showMessage(`${image.name} was not classified (cancelled).`, 'info');
        return;
      }
      if (choice.action === 'crop') frame = choice.frame;
    }
    card = newCard(image, frame);
    card.querySelector('.result-status').textContent = 'Classifying...';
    const source = modelInput(image.bitmap, frame, model.metadata.input);
    card.sourceSize = { width: source.width, height: source.height };
    card.sourceFrame = source === image.bitmap ? frame : { x: 0, y: 0, width: source.width, height: source.height };
    const started = performance.now();
    const analysis = await analyse(model, source);
    renderResult(card, model, analysis, performance.now() - started);
    card.focus({ preventScroll: false });
  } catch (err) {
    if (card) card.querySelector('.result-status').textContent = 'Not classified.';
    showMessage(`${image.name} could not be classified: ${err.message}`);
  } finally {
    image.bitmap.close();
  }
}

async function classifyFile(file) {
  let image;
  try {
    image = await readImage(file);
  } catch (err) {
    showMessage(err instanceof ImageProblem ? err.message : `${file.name}: ${err.message}`);
    return;
  }
  await classifyOne(image);
}

// ---------------------------------------------------------------- several photos: the batch table

async function classifyInBatch(file) {
  const name = file.webkitRelativePath || file.name || 'Pasted image';
  if (batch.cancelled) {
    batch.skip();
    return;
  }
  batch.working(name);
  let model;
  try {
    model = await modelReady;
  } catch (err) {
    batch.fail(name, `Not classified: the model could not be loaded (${err.message}).`);
    return;
  }
  batch.setClasses(model.metadata.classes);
  let image;
  try {
    image = await readImage(file);
  } catch (err) {
    batch.fail(name, err instanceof ImageProblem ? err.message : `${name}: ${err.message}`);
    return;
  }
  try {
    const source = modelInput(image.bitmap, defaultFrame(image.bitmap, model.metadata.input), model.metadata.input);
    const analysis = await analyse(model, source);
    const { alerts, warnings } = cautions(model, analysis);
    // The photo's own problems (tiny, greyscale) matter as much here as on a result card.
    const notes = image.notes.filter((n) => n.kind === 'warning').map((n) => ({ kind: 'warning', text: n.text }));
    batch.done(name, stem(file.name || 'pasted'), analysis.results, [
      ...alerts.map((c) => ({ kind: 'alert', text: c.short })),
      ...warnings.map((c) => ({ kind: 'warning', text: c.short })),
      ...notes,
    ]);
  } catch (err) {
    batch.fail(name, `${name} could not be classified: ${err.message}`);
  } finally {
    image.bitmap.close();
  }
}

function handleFiles(files, { fromFolder = false } = {}) {
  let list = [...files];
  if (fromFolder) {
    const images = list.filter(looksLikeImage);
    if (images.length < list.length) {
      showMessage(`${list.length - images.length} file(s) in the folder are not images and were left out.`, 'info');
    }
    list = images;
  }
  if (list.length === 0) {
    showMessage(fromFolder ? 'The folder holds no images.' : 'No file was chosen.', 'info');
    return;
  }
  // One at a time keeps memory flat when many files arrive together.
  if (list.length === 1 && !fromFolder) {
    queue = queue.then(() => classifyFile(list[0]));
    return;
  }
  batch.add(list.length);
  for (const file of list) {
    queue = queue.then(() => classifyInBatch(file));
  }
}

// Browser tests read these: the loaded model, the queue of pending photos and the live tensor count.
globalThis.skinlesionApp = { modelReady, idle: () => queue, numTensors };

// ---------------------------------------------------------------- input

for (const input of [els.fileInput, els.cameraInput, els.folderInput]) {
  input.addEventListener('change', () => {
    handleFiles(input.files, { fromFolder: input === els.folderInput });
    input.value = ''; // choosing the same file again fires change again
  });
}

els.dropzone.addEventListener('dragover', (event) => {
  event.preventDefault();
  els.dropzone.classList.add('dragging');
});
els.dropzone.addEventListener('dragleave', () => els.dropzone.classList.remove('dragging'));
els.dropzone.addEventListener('drop', (event) => {
  event.preventDefault();
  els.dropzone.classList.remove('dragging');
  const files = event.dataTransfer?.files;
  if (!files || files.length === 0) {
    showMessage('Nothing to classify was dropped: drop an image file.');
    return;
  }
  handleFiles(files);
});
// A file dropped beside the drop zone would otherwise make the browser navigate away to it.
window.addEventListener('dragover', (event) => event.preventDefault());
window.addEventListener('drop', (event) => event.preventDefault());

document.addEventListener('paste', (event) => {
  const files = [...(event.clipboardData?.files ?? [])];
  if (files.length === 0) {
    showMessage('The clipboard holds no image. Copy an image, then paste it here.');
    return;
  }
  event.preventDefault();
  handleFiles(files);
});

if (cameraSupported) {
  els.cameraOpen.hidden = false;
  els.cameraOpen.addEventListener('click', async () => {
    let bitmap;
    try {
      bitmap = await camera.open();
    } catch (err) {
      showMessage(cameraProblem(err));
      els.cameraOpen.focus();
      return;
    }
    if (!bitmap) {
      els.cameraOpen.focus();
      return;
    }
    cameraCount += 1;
    const image = await fromBitmap(`Camera picture ${cameraCount}`, bitmap);
    queue = queue.then(() => classifyOne(image));
  });
}

els.clear.addEventListener('click', () => {
  els.results.replaceChildren();
  els.messages.replaceChildren();
  if (batch.finished === batch.total) batch.clear();
  els.clear.hidden = true;
  els.fileInput.focus();
});

// ---------------------------------------------------------------- offline

// Registered 2 s after the model is in (or has failed): time for a photo chosen while it loaded to get its answer
// first. Started at once, caching the site (~1.5 MB) made that classification 3-4 times slower on a 2-core machine
// (about 85 ms instead of 25). Not after the whole queue: a framing dialog left open would hold it forever.
const SERVICE_WORKER_DELAY_MS = 2000;

// Listened for from the start, not from the delayed registration: a reload checks for a new sw.js at once, and the
// new worker can take over before the registration runs.
if (offlineSupported && navigator.serviceWorker.controller) {
  navigator.serviceWorker.addEventListener('controllerchange', () => {
    showMessage('A new version of this site has been installed; reload the page to use it.', 'info');
  }, { once: true });
}

async function setUpOfflineUse() {
  if (!offlineSupported) {
    els.offline.textContent = 'Offline use: not available in this browser.';
    return;
  }
  try {
    await registerServiceWorker();
    els.offline.textContent = 'Offline use: ready. This page and the model now work without a network.';
  } catch (err) {
    els.offline.textContent = `Offline use: not available (${err.message}).`;
  }
}

modelReady.catch(() => {}).finally(() => setTimeout(setUpOfflineUse, SERVICE_WORKER_DELAY_MS));
