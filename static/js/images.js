// Reading photos for the page: refuses what is not an image, decodes with the EXIF orientation applied, shrinks
// huge photos, notices what makes a result less reliable (tiny, greyscale, transparent, animated), and cuts out
// the part of the photo the model looks at. Makes canvases and bitmaps; touches no element of the page.

import { centreCrop } from './classifier.js';

// Larger photos are scaled down right after decoding: a 50-megapixel photo then holds 4096 x 3072 pixels
// (50 MB) instead of 200 MB for as long as it stays on the page.
export const MAX_SIDE = 4096;
// Smaller than this (either side) and there is too little detail to classify: warn.
export const SMALL_SIDE = 64;
// The model sees its input size; a frame is handed over at no more than this multiple of it (plenty for the
// classifier's 2x2 halving and bilinear resize, and it keeps tensors small).
const MAX_INPUT_FACTOR = 4;

const IMAGE_NAME = /\.(jpe?g|png|gif|webp|bmp|avif|heic|heif|tiff?)$/i;
const HEIC_NAME = /\.(heic|heif)$/i;
const HEIC_BRANDS = new Set(['heic', 'heix', 'hevc', 'hevx', 'heim', 'heis', 'mif1', 'msf1']);

/** An input the page cannot use; `message` is written for the person who chose the file. */
export class ImageProblem extends Error {}

/** Whether a file from a folder looks like an image worth trying (folders also hold .DS_Store, CSVs...). */
export function looksLikeImage(file) {
  return file.type.startsWith('image/') || IMAGE_NAME.test(file.name);
}

/** The file name without its extension, as the command-line `predict` names images in its CSV. */
export function stem(name) {
  const base = name.split('/').pop();
  const dot = base.lastIndexOf('.');
  return dot > 0 ? base.slice(0, dot) : base;
}

// The first bytes of an HEIC/HEIF file: '....ftypheic' (an ISO base media file with an HEIF brand).
async function isHeic(file) {
  if (HEIC_NAME.test(file.name) || /hei[cf]/i.test(file.type)) return true;
  const head = new Uint8Array(await file.slice(0, 12).arrayBuffer());
  const text = String.fromCharCode(...head.subarray(4, 12));
  return text.startsWith('ftyp') && HEIC_BRANDS.has(text.slice(4));
}

/** Number of frames in a GIF, counted up to `stopAt` by walking its blocks (0 if it is not a GIF). */
export function gifFrames(bytes, stopAt = 2) {
  const ascii = (from, to) => String.fromCharCode(...bytes.subarray(from, to));
  if (bytes.length < 13 || !ascii(0, 6).startsWith('GIF8')) return 0;
  const skipSubBlocks = (at) => {
    let i = at;
    while (i < bytes.length && bytes[i] !== 0) i += bytes[i] + 1;
    return i + 1;
  };
  let i = 13;
  if (bytes[10] & 0x80) i += 3 * (2 << (bytes[10] & 0x07)); // global colour table
  let frames = 0;
  while (i < bytes.length && frames < stopAt) {
    const block = bytes[i];
    if (block === 0x2c) { // image descriptor: 9 bytes, optional local colour table, LZW code size, data
      frames += 1;
      const packed = bytes[i + 9];
      i += 10;
      if (packed & 0x80) i += 3 * (2 << (packed & 0x07));
      i = skipSubBlocks(i + 1);
    } else if (block === 0x21) { // extension: label, then sub-blocks
      i = skipSubBlocks(i + 2);
    } else {
      break; // 0x3b trailer, or damage
    }
  }
  return frames;
}

// Unpremultiplied pixels: the WebGL backend uploads an ImageBitmap as stored, and premultiplied colours
// would be darkened a second time when the classifier composites transparency on white (seen in Chromium).
const DECODE = { imageOrientation: 'from-image', premultiplyAlpha: 'none' };

async function decode(blob) {
  try {
    return await createImageBitmap(blob, DECODE);
  } catch (err) {
    // Browsers that predate the 'from-image' value (Chrome < 111, Safari < 16.4) reject it with a
    // TypeError; they apply EXIF orientation by default anyway.
    if (err?.name !== 'TypeError') throw err;
    return createImageBitmap(blob, { premultiplyAlpha: 'none' });
  }
}

async function shrink(bitmap) {
  const side = Math.max(bitmap.width, bitmap.height);
  if (side <= MAX_SIDE) return bitmap;
  const scale = MAX_SIDE / side;
  try {
    return await createImageBitmap(bitmap, {
      resizeWidth: Math.max(1, Math.round(bitmap.width * scale)),
      resizeHeight: Math.max(1, Math.round(bitmap.height * scale)),
      resizeQuality: 'high',
      premultiplyAlpha: 'none',
    });
  } finally {
    bitmap.close();
  }
}

function canvas(width, height) {
  const c = document.createElement('canvas');
  c.width = width;
  c.height = height;
  return c;
}

// Transparency and colour, judged on a small copy (at most 96 px a side): cheap even for a huge photo.
function inspect(bitmap) {
  const scale = Math.min(1, 96 / Math.max(bitmap.width, bitmap.height));
  const w = Math.max(1, Math.round(bitmap.width * scale));
  const h = Math.max(1, Math.round(bitmap.height * scale));
  const ctx = canvas(w, h).getContext('2d', { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0, w, h);
  const { data } = ctx.getImageData(0, 0, w, h);
  let transparent = false;
  let grey = true;
  const low = [255, 255, 255];
  const high = [0, 0, 0];
  for (let i = 0; i < data.length; i += 4) {
    const alpha = data[i + 3];
    if (alpha < 250) transparent = true;
    // JPEG colour conversion leaves +-1 or 2 on grey pixels
    if (alpha > 0 && (Math.abs(data[i] - data[i + 1]) > 2 || Math.abs(data[i + 1] - data[i + 2]) > 2)) grey = false;
    for (let c = 0; c < 3; c += 1) {
      const shown = (data[i + c] * alpha + 255 * (255 - alpha)) / 255; // on white, as it is classified
      low[c] = Math.min(low[c], shown);
      high[c] = Math.max(high[c], shown);
    }
  }
  // One flat colour (JPEG noise aside) once composited on white: there is nothing in it to classify.
  const blank = high.every((top, c) => top - low[c] <= 4);
  return { transparent, grey: grey && !blank, blank };
}

function unreadable(file, heic) {
  if (heic) {
    return `${file.name}: this browser cannot open HEIC/HEIF photos (the iPhone's default format). Convert it to `
      + 'JPEG first: on the iPhone choose Settings > Camera > Formats > Most Compatible, or share the photo by '
      + 'mail or AirDrop as JPEG; on a Mac open it in Preview and use File > Export > JPEG.';
  }
  return `${file.name} could not be read as an image: the file may be damaged or in a format this browser `
    + 'cannot open. Try a JPEG or PNG.';
}

/**
 * Reads an image file. Resolves to {name, bitmap, original: {width, height}, notes}, where `notes` are
 * [{kind: 'warning' | 'info', text}] for the page; rejects with an ImageProblem when the file is unusable.
 * The caller owns `bitmap` and must close() it.
 */
export async function readImage(file) {
  const name = file.name || 'Pasted image';
  if (file.size === 0) throw new ImageProblem(`${name}: the file is empty (0 bytes). Choose the photo again.`);
  if (file.type && !file.type.startsWith('image/')) {
    throw new ImageProblem(`${name} is not an image (${file.type}). Choose a photo (JPEG or PNG).`);
  }
  let bitmap;
  try {
    bitmap = await decode(file);
  } catch {
    throw new ImageProblem(unreadable({ name }, await isHeic(file).catch(() => false)));
  }
  const original = { width: bitmap.width, height: bitmap.height };
  bitmap = await shrink(bitmap);
  return { name, bitmap, original, notes: await notesFor(file, name, bitmap, original) };
}

/** Wraps an ImageBitmap that did not come from a file (a camera frame) like readImage's result. */
export async function fromBitmap(name, bitmap) {
  const original = { width: bitmap.width, height: bitmap.height };
  const small = await shrink(bitmap);
  return { name, bitmap: small, original, notes: await notesFor(null, name, small, original) };
}

async function notesFor(file, name, bitmap, original) {
  const notes = [];
  const { width, height } = original;
  if (Math.min(width, height) < SMALL_SIDE) {
    notes.push({ kind: 'warning', text: `${name} is very small (${width} x ${height} px): there is too little `
      + 'detail for a reliable result. Use a sharper, closer photo of at least a few hundred pixels.' });
  }
  if (bitmap.width !== width) {
    notes.push({ kind: 'info', text: `${name} is a large photo (${width} x ${height} px, `
      + `${(width * height / 1e6).toFixed(0)} megapixels); it was scaled down to ${bitmap.width} x ${bitmap.height} `
      + 'px on this device first.' });
  }
  if (file && (file.type === 'image/gif' || /\.gif$/i.test(file.name))) {
    const bytes = new Uint8Array(await file.arrayBuffer());
    if (gifFrames(bytes) > 1) {
      notes.push({ kind: 'info', text: `${name} is an animated GIF: only its first frame is classified.` });
    }
  }
  const { transparent, grey, blank } = inspect(bitmap);
  if (blank) {
    notes.push({ kind: 'warning', text: `${name} looks blank (one flat colour${transparent ? ', or transparent' : ''}`
      + '): there is no lesion in it to classify, so the result below means nothing.' });
  } else if (transparent) {
    notes.push({ kind: 'info', text: `${name} has transparent areas: they are shown and classified as white.` });
  }
  if (grey) {
    notes.push({ kind: 'warning', text: `${name} is a greyscale (black and white) image. The model learnt from `
      + 'colour photos, and colour matters for telling lesions apart: treat this result with extra caution.' });
  }
  return notes;
}

/** The model's default frame for a photo: the centre crop at the model's aspect (as the classifier cuts it). */
export function defaultFrame(bitmap, input) {
  return centreCrop(bitmap.width, bitmap.height, input.width, input.height);
}

function sameBox(a, b) {
  return ['x', 'y', 'width', 'height'].every((k) => Math.abs(a[k] - b[k]) < 0.5);
}

/**
 * Draws `frame` (a box in bitmap pixels) of `bitmap` onto a new canvas at most `maxWidth` wide, with white
 * behind transparent pixels (as the classifier composites them).
 */
export function drawFrame(bitmap, frame, maxWidth) {
  let { x, y, width: w, height: h } = frame;
  if (w <= maxWidth) {
    // Whole source pixels, copied 1:1: no resampling blur from a fractional frame.
    x = Math.round(x);
    y = Math.round(y);
    w = Math.max(1, Math.min(Math.round(w), bitmap.width - x));
    h = Math.max(1, Math.min(Math.round(h), bitmap.height - y));
  }
  const width = Math.max(1, Math.round(Math.min(w, maxWidth)));
  const height = Math.max(1, Math.round(width * h / w));
  const out = canvas(width, height);
  const ctx = out.getContext('2d');
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, width, height);
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(bitmap, x, y, w, h, 0, 0, width, height);
  return out;
}

/**
 * What to hand the classifier for `frame` of `bitmap`: the bitmap itself when the frame is the classifier's own
 * centre crop and the photo is not much larger than the model's input (so the result equals the command line's),
 * otherwise a canvas of the frame, at most MAX_INPUT_FACTOR times the model's input width.
 */
export function modelInput(bitmap, frame, input) {
  const centre = defaultFrame(bitmap, input);
  if (sameBox(frame, centre) && centre.width <= MAX_INPUT_FACTOR * input.width) return bitmap;
  return drawFrame(bitmap, frame, MAX_INPUT_FACTOR * input.width);
}
