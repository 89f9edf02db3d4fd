// Draws what classifier.js's analyze() says about where the model looked. Takes a canvas; owns no other DOM.

// Low evidence stays transparent; high evidence goes from yellow to red and becomes more opaque.
function heatColour(v) {
  return [255, Math.round(220 * (1 - v)), 0, Math.round(200 * v ** 1.5)];
}

/**
 * Paints the class activation map `cam` ({width, height, values 0..1 row-major, crop fractions}) over a canvas
 * that shows (or lies exactly over) the whole image, aligned with the crop the model saw.
 * @param {HTMLCanvasElement} canvas sized like the displayed image (CSS size; drawn at device pixels)
 * @param {{width: number, height: number, values: Float32Array, crop: {x, y, width, height}}} cam
 */
export function drawActivationMap(canvas, cam) {
  const ratio = globalThis.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(canvas.clientWidth * ratio));
  const h = Math.max(1, Math.round(canvas.clientHeight * ratio));
  canvas.width = w;
  canvas.height = h;
  const small = new OffscreenCanvas(cam.width, cam.height);
  const pixels = new ImageData(cam.width, cam.height);
  cam.values.forEach((v, i) => pixels.data.set(heatColour(v), i * 4));
  small.getContext('2d').putImageData(pixels, 0, 0);
  const ctx = canvas.getContext('2d');
  ctx.clearRect(0, 0, w, h);
  ctx.imageSmoothingEnabled = true; // each map cell is the centre of a smooth field, not a hard square
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(small, cam.crop.x * w, cam.crop.y * h, cam.crop.width * w, cam.crop.height * h);
}

/** The argmax cell of the map as fractions of the whole image ({x, y}: its centre); for tests and captions. */
export function hottestPoint(cam) {
  let best = 0;
  cam.values.forEach((v, i) => { if (v > cam.values[best]) best = i; });
  const row = Math.floor(best / cam.width);
  const col = best % cam.width;
  return {
    x: cam.crop.x + ((col + 0.5) / cam.width) * cam.crop.width,
    y: cam.crop.y + ((row + 0.5) / cam.height) * cam.crop.height,
  };
}
