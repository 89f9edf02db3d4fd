// The framing step: a modal dialog that shows the part of the photo the model will see, at the model's aspect
// ratio, and lets the person move and zoom it with a mouse, a finger, or the keyboard before classifying.
//
// open() resolves to {action: 'crop', frame} (a box in bitmap pixels), {action: 'skip'} (use the default centre
// crop), or null (cancelled). The frame always lies inside the photo and has the model's aspect.

const ZOOM_STEP = 1.25;
const MOVE_STEP = 0.05; // of the frame's size per arrow key press; Shift moves 5x further
const MIN_FRAME = 32; // pixels: zooming in further shows nothing the model could use

function clamp(value, low, high) {
  return Math.min(Math.max(value, low), high);
}

export class CropStep {
  /** @param {HTMLDialogElement} dialog the #crop-dialog element of the page */
  constructor(dialog) {
    this.dialog = dialog;
    const $ = (id) => dialog.querySelector(`#${id}`);
    this.els = {
      file: $('crop-file'),
      viewport: $('crop-viewport'),
      canvas: $('crop-canvas'),
      info: $('crop-info'),
      zoom: $('crop-zoom'),
      zoomIn: $('crop-zoom-in'),
      zoomOut: $('crop-zoom-out'),
      reset: $('crop-reset'),
      confirm: $('crop-confirm'),
      skip: $('crop-skip'),
      cancel: $('crop-cancel'),
    };
    // The guide circle's size, rendered into the page from the model's report (CSS reads it as --lesion-share)
    const share = Number(this.els.viewport.dataset.lesionShare);
    if (share > 0) this.els.viewport.style.setProperty('--lesion-share', String(share));
    this.pointers = new Map();
    this.resolve = null;
    this.bind();
  }

  /** Shows the dialog for `bitmap`; `input` is the model's {width, height}. */
  open(bitmap, input, name) {
    if (this.resolve) this.finish(null);
    this.bitmap = bitmap;
    this.aspect = input.width / input.height;
    // The largest frame of the model's aspect that fits: the classifier's own centre crop.
    const fitWidth = Math.min(bitmap.width, bitmap.height * this.aspect);
    this.full = { width: fitWidth, height: fitWidth / this.aspect };
    this.maxZoom = Math.max(1, Math.min(8, Math.min(this.full.width, this.full.height) / MIN_FRAME));
    this.els.zoom.max = String(this.maxZoom);
    // CSSOM writes are allowed by the CSP's style-src 'self'; style="" attributes would not be.
    this.els.viewport.style.aspectRatio = `${input.width} / ${input.height}`;
    this.els.viewport.style.setProperty('--aspect', String(this.aspect));
    this.els.file.textContent = `${name}: ${bitmap.width} x ${bitmap.height} px`;
    this.reset();
    const done = new Promise((resolve) => { this.resolve = resolve; });
    this.dialog.showModal();
    this.fitCanvas();
    this.els.viewport.focus();
    return done;
  }

  /** The current frame in bitmap pixels, {x, y, width, height}. */
  frame() {
    const width = this.full.width / this.zoom;
    const height = this.full.height / this.zoom;
    return { x: this.cx - width / 2, y: this.cy - height / 2, width, height };
  }

  reset() {
    this.zoom = 1;
    this.cx = this.bitmap.width / 2;
    this.cy = this.bitmap.height / 2;
    this.update();
  }

  setZoom(zoom, fx = 0.5, fy = 0.5) {
    // Keep the photo point under (fx, fy) of the viewport where it is (the pointer, or the centre).
    const before = this.frame();
    const px = before.x + fx * before.width;
    const py = before.y + fy * before.height;
    this.zoom = clamp(zoom, 1, this.maxZoom);
    const after = this.frame();
    this.cx = px - fx * after.width + after.width / 2;
    this.cy = py - fy * after.height + after.height / 2;
    this.update();
  }

  move(dx, dy) {
    this.cx += dx;
    this.cy += dy;
    this.update();
  }

  update() {
    const { width, height } = this.frame();
    this.cx = clamp(this.cx, width / 2, this.bitmap.width - width / 2);
    this.cy = clamp(this.cy, height / 2, this.bitmap.height - height / 2);
    const f = this.frame();
    this.els.zoom.value = String(this.zoom);
    const percent = `${Math.round(this.zoom * 100)}%`;
    this.els.zoom.setAttribute('aria-valuetext', percent);
    this.els.zoomIn.disabled = this.zoom >= this.maxZoom - 1e-6;
    this.els.zoomOut.disabled = this.zoom <= 1 + 1e-6;
    this.els.info.textContent = `Frame ${Math.round(f.width)} x ${Math.round(f.height)} px at `
      + `(${Math.round(f.x)}, ${Math.round(f.y)}); zoom ${percent}.`;
    this.dialog.dataset.frame = [f.x, f.y, f.width, f.height].map((v) => v.toFixed(1)).join(',');
    this.draw();
  }

  fitCanvas() {
    const rect = this.els.viewport.getBoundingClientRect();
    const ratio = globalThis.devicePixelRatio || 1;
    this.els.canvas.width = Math.max(1, Math.round(rect.width * ratio));
    this.els.canvas.height = Math.max(1, Math.round(rect.height * ratio));
    this.draw();
  }

  draw() {
    if (!this.bitmap || !this.dialog.open) return;
    const { canvas } = this.els;
    const ctx = canvas.getContext('2d');
    const f = this.frame();
    ctx.fillStyle = '#fff'; // transparent pixels are classified as white
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.imageSmoothingQuality = 'high';
    ctx.drawImage(this.bitmap, f.x, f.y, f.width, f.height, 0, 0, canvas.width, canvas.height);
  }

  finish(result) {
    const resolve = this.resolve;
    this.resolve = null;
    this.pointers.clear();
    if (this.dialog.open) this.dialog.close();
    this.bitmap = null;
    resolve?.(result);
  }

  // Photo pixels per CSS pixel of the viewport.
  scale() {
    return this.frame().width / this.els.viewport.clientWidth;
  }

  bind() {
    const { els } = this;
    els.confirm.addEventListener('click', () => this.finish({ action: 'crop', frame: this.frame() }));
    els.skip.addEventListener('click', () => this.finish({ action: 'skip' }));
    els.cancel.addEventListener('click', () => this.finish(null));
    // Escape closes a modal dialog by itself; say "cancelled" rather than leave the promise pending.
    this.dialog.addEventListener('cancel', (event) => {
      event.preventDefault();
      this.finish(null);
    });
    els.zoomIn.addEventListener('click', () => this.setZoom(this.zoom * ZOOM_STEP));
    els.zoomOut.addEventListener('click', () => this.setZoom(this.zoom / ZOOM_STEP));
    els.reset.addEventListener('click', () => this.reset());
    els.zoom.addEventListener('input', () => this.setZoom(Number(els.zoom.value)));

    els.viewport.addEventListener('keydown', (event) => this.onKey(event));
    els.viewport.addEventListener('wheel', (event) => {
      event.preventDefault();
      const rect = els.viewport.getBoundingClientRect();
      this.setZoom(this.zoom * Math.exp(-event.deltaY / 400),
        (event.clientX - rect.left) / rect.width, (event.clientY - rect.top) / rect.height);
    }, { passive: false });
    els.viewport.addEventListener('pointerdown', (event) => {
      this.pointers.set(event.pointerId, { x: event.clientX, y: event.clientY });
      try {
        els.viewport.setPointerCapture(event.pointerId); // keep dragging when the pointer leaves the frame
      } catch {
        // a pointer the browser no longer tracks (already lifted): moves still arrive while it is over the frame
      }
    });
    els.viewport.addEventListener('pointermove', (event) => this.onPointerMove(event));
    for (const type of ['pointerup', 'pointercancel', 'lostpointercapture']) {
      els.viewport.addEventListener(type, (event) => this.pointers.delete(event.pointerId));
    }
    new ResizeObserver(() => this.fitCanvas()).observe(els.viewport);
  }

  onKey(event) {
    const f = this.frame();
    const step = MOVE_STEP * (event.shiftKey ? 5 : 1);
    const moves = {
      ArrowLeft: [-f.width * step, 0],
      ArrowRight: [f.width * step, 0],
      ArrowUp: [0, -f.height * step],
      ArrowDown: [0, f.height * step],
    };
    if (moves[event.key]) {
      this.move(...moves[event.key]);
    } else if (['+', '=', 'Add'].includes(event.key)) {
      this.setZoom(this.zoom * ZOOM_STEP);
    } else if (['-', '_', 'Subtract'].includes(event.key)) {
      this.setZoom(this.zoom / ZOOM_STEP);
    } else if (event.key === '0' || event.key === 'Home') {
      this.reset();
    } else if (event.key === 'Enter') {
      this.finish({ action: 'crop', frame: this.frame() });
    } else {
      return;
    }
    event.preventDefault();
  }

  onPointerMove(event) {
    const last = this.pointers.get(event.pointerId);
    if (!last) return;
    const now = { x: event.clientX, y: event.clientY };
    if (this.pointers.size === 1) {
      // Dragging the photo right shows more of its left: the frame moves the other way.
      const s = this.scale();
      this.pointers.set(event.pointerId, now);
      this.move(-(now.x - last.x) * s, -(now.y - last.y) * s);
      return;
    }
    // Two fingers: zoom by the change in their distance, about their midpoint.
    const [a, b] = [...this.pointers.entries()].slice(0, 2).map(([id, p]) => (id === event.pointerId ? now : p));
    const [a0, b0] = [...this.pointers.values()].slice(0, 2);
    const before = Math.hypot(a0.x - b0.x, a0.y - b0.y);
    const after = Math.hypot(a.x - b.x, a.y - b.y);
    this.pointers.set(event.pointerId, now);
    if (before > 0 && after > 0) {
      const rect = this.els.viewport.getBoundingClientRect();
      this.setZoom(this.zoom * (after / before), ((a.x + b.x) / 2 - rect.left) / rect.width,
        ((a.y + b.y) / 2 - rect.top) / rect.height);
    }
  }
}
