// The classifier page: takes photos (picker, camera, drop, paste), shows the model's answer, and reports
// every problem on the page. Owns the DOM; the model lives in classifier.js.

import { backendLabel, selectBackend } from './backend.js';
import { load, numTensors, topK } from './classifier.js';

// Larger photos are scaled down before classification; 4096 px keeps a 50-megapixel photo's
// float32 tensor near 200 MB instead of 600 MB, and leaves ordinary photos untouched.
const MAX_SIDE = 4096;
const SMALL_SIDE = 64;
const HEIC = /\.(heic|heif)$/i;

const root = document.querySelector('[data-metadata-url]');
const els = {
  fileInput: document.getElementById('file-input'),
  cameraInput: document.getElementById('camera-input'),
  dropzone: document.getElementById('dropzone'),
  progress: document.getElementById('model-progress'),
  modelStatus: document.getElementById('model-status'),
  backend: document.getElementById('backend'),
  messages: document.getElementById('messages'),
  results: document.getElementById('results'),
  clear: document.getElementById('clear'),
  template: document.getElementById('result-template'),
};

let queue = Promise.resolve();

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

// ---------------------------------------------------------------- model

const modelReady = (async () => {
  selectBackend().then(
    (b) => {
      const notes = b.notes.length ? ` (${b.notes.join('; ')})` : '';
      els.backend.textContent = `${backendLabel(b.name)}: ${b.reason}${notes}`;
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

// ---------------------------------------------------------------- decoding

// Unpremultiplied pixels: the WebGL backend uploads an ImageBitmap as stored, and premultiplied colours
// would be darkened a second time when the classifier composites transparency on white (seen in Chromium).
const DECODE = { imageOrientation: 'from-image', premultiplyAlpha: 'none' };

async function decode(file) {
  try {
    return await createImageBitmap(file, DECODE);
  } catch (err) {
    // Browsers that predate the 'from-image' value (Chrome < 111, Safari < 16.4) reject it with a
    // TypeError; they apply EXIF orientation by default anyway.
    if (err?.name !== 'TypeError') throw err;
    return createImageBitmap(file, { premultiplyAlpha: 'none' });
  }
}

async function downscale(bitmap) {
  const side = Math.max(bitmap.width, bitmap.height);
  if (side <= MAX_SIDE) return bitmap;
  const scale = MAX_SIDE / side;
  const smaller = await createImageBitmap(bitmap, {
    resizeWidth: Math.max(1, Math.round(bitmap.width * scale)),
    resizeHeight: Math.max(1, Math.round(bitmap.height * scale)),
    resizeQuality: 'high',
    premultiplyAlpha: 'none',
  });
  bitmap.close();
  return smaller;
}

function refuse(file) {
  if (file.size === 0) return `${file.name}: the file is empty.`;
  if (file.type && !file.type.startsWith('image/')) {
    return `${file.name} is not an image (${file.type}). Choose a photo (JPEG or PNG).`;
  }
  return null;
}

function unreadable(file) {
  if (HEIC.test(file.name) || /hei[cf]/i.test(file.type)) {
    return `${file.name}: this browser cannot read HEIC/HEIF photos. Convert it to JPEG first (on an iPhone: `
      + 'Settings > Camera > Formats > Most Compatible, or share the photo as JPEG).';
  }
  return `${file.name} could not be read as an image: the file may be damaged or in a format this browser `
    + 'cannot open. Try a JPEG or PNG.';
}

// ---------------------------------------------------------------- results

function renderResult(card, model, results, ms) {
  const top = topK(results, 3);
  const rank = new Map(top.map((r, i) => [r.code, i + 1]));
  const best = model.classInfo(top[0].code) ?? top[0];

  card.querySelector('.result-status').textContent = '';
  card.querySelector('.top-name').textContent = best.name ?? top[0].name;
  card.querySelector('.top-probability').textContent = formatPercent(top[0].probability);
  card.querySelector('.top-description').textContent = best.description ?? '';
  card.querySelector('.top-urgency').textContent = best.urgency ?? '';
  card.querySelector('.result-top').hidden = false;

  const alertBox = card.querySelector('.result-alert');
  const alerts = model.alerts(results);
  alertBox.textContent = alerts.map((a) => `The ${a.name.toLowerCase()} score (${formatPercent(a.probability)}) `
    + `reaches the alert threshold (${formatPercent(a.threshold)}) chosen on validation images so that most `
    + 'such lesions are caught. Have this lesion checked by a doctor.').join(' ');
  alertBox.hidden = alerts.length === 0;

  const bars = card.querySelector('.bars');
  for (const r of results) {
    const info = model.classInfo(r.code) ?? {};
    const item = document.createElement('li');
    item.className = 'bar';
    if (rank.has(r.code)) {
      item.classList.add('bar-top', `bar-rank-${rank.get(r.code)}`);
    }
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
  card.querySelector('.result-meta').textContent = `Classified in ${Math.round(ms)} ms with ${backendLabel(model.backend)}.`;
}

function newCard(file, bitmap) {
  const card = els.template.content.firstElementChild.cloneNode(true);
  card.querySelector('.result-file').textContent = file.name || 'Pasted image';
  const img = card.querySelector('.result-image');
  const url = URL.createObjectURL(file);
  const revoke = () => URL.revokeObjectURL(url);
  img.addEventListener('load', revoke, { once: true });
  img.addEventListener('error', revoke, { once: true });
  img.alt = `Your photo ${file.name || ''}`.trim();
  img.src = url;
  card.querySelector('.result-size').textContent = `${bitmap.width} x ${bitmap.height} px`;
  els.results.prepend(card);
  els.clear.hidden = false;
  return card;
}

async function classifyFile(file) {
  const refusal = refuse(file);
  if (refusal) {
    showMessage(refusal);
    return;
  }
  let bitmap;
  try {
    bitmap = await downscale(await decode(file));
  } catch {
    showMessage(unreadable(file));
    return;
  }
  let card;
  try {
    card = newCard(file, bitmap);
    if (Math.min(bitmap.width, bitmap.height) < SMALL_SIDE) {
      showMessage(`${file.name || 'The image'} is very small (${bitmap.width} x ${bitmap.height} px); `
        + 'the result is unreliable. Use a sharper, closer photo.', 'warning');
    }
    card.querySelector('.result-status').textContent = 'Classifying...';
    const model = await modelReady;
    const started = performance.now();
    const results = await model.classify(bitmap);
    renderResult(card, model, results, performance.now() - started);
  } catch (err) {
    if (card) card.querySelector('.result-status').textContent = 'Not classified.';
    showMessage(`${file.name || 'The image'} could not be classified: ${err.message}`);
  } finally {
    bitmap.close();
  }
}

function handleFiles(files) {
  const list = [...files];
  if (list.length === 0) return;
  // One at a time keeps memory flat when many files arrive together.
  for (const file of list) {
    queue = queue.then(() => classifyFile(file));
  }
}

// Browser tests read these: the loaded model, the queue of pending photos and the live tensor count.
globalThis.skinlesionApp = { modelReady, idle: () => queue, numTensors };

// ---------------------------------------------------------------- input

for (const input of [els.fileInput, els.cameraInput]) {
  input?.addEventListener('change', () => {
    handleFiles(input.files);
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

els.clear.addEventListener('click', () => {
  els.results.replaceChildren();
  els.messages.replaceChildren();
  els.clear.hidden = true;
  els.fileInput.focus();
});
