// A live camera view (getUserMedia) in a modal dialog, with a button that takes a still picture. The video never
// leaves the page; the stream is stopped as soon as the dialog closes.

/** Whether this browser can show a live camera view (needs a secure context: https or localhost). */
export const cameraSupported = Boolean(globalThis.navigator?.mediaDevices?.getUserMedia)
  && globalThis.isSecureContext !== false;

/** A sentence for the page about why the camera did not start. */
export function cameraProblem(err) {
  switch (err?.name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return 'The camera was not allowed. Allow this site to use the camera in the browser\'s site settings, '
        + 'or choose a photo instead.';
    case 'NotFoundError':
    case 'OverconstrainedError':
      return 'No camera was found on this device. Choose a photo instead.';
    case 'NotReadableError':
    case 'AbortError':
      return 'The camera is in use by another application or could not be started. Close the other app and '
        + 'try again, or choose a photo.';
    default:
      return `The camera could not be started (${err?.message || err}). Choose a photo instead.`;
  }
}

export class Camera {
  /** @param {HTMLDialogElement} dialog the #camera-dialog element of the page */
  constructor(dialog) {
    this.dialog = dialog;
    this.video = dialog.querySelector('#camera-video');
    this.info = dialog.querySelector('#camera-info');
    this.captureButton = dialog.querySelector('#camera-capture');
    this.closeButton = dialog.querySelector('#camera-close');
    this.stream = null;
    this.resolve = null;
    this.captureButton.addEventListener('click', () => this.capture());
    this.closeButton.addEventListener('click', () => this.finish(null));
    this.dialog.addEventListener('cancel', (event) => {
      event.preventDefault();
      this.finish(null);
    });
  }

  /**
   * Opens the dialog and starts the camera. Resolves to an ImageBitmap of the picture taken, or null when the
   * person closed the camera; rejects (with the getUserMedia error) when the camera cannot start.
   */
  async open() {
    if (this.resolve) this.finish(null);
    this.captureButton.disabled = true;
    this.info.textContent = 'Starting the camera...';
    const done = new Promise((resolve, reject) => { this.resolve = resolve; this.reject = reject; });
    this.dialog.showModal();
    this.closeButton.focus();
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({
        // The back camera on a phone; as sharp as the camera offers, up to 4K.
        video: { facingMode: { ideal: 'environment' }, width: { ideal: 3840 }, height: { ideal: 2160 } },
        audio: false,
      });
      if (!this.resolve) { // closed while the permission prompt was up
        this.stop();
        return done;
      }
      this.video.srcObject = this.stream;
      await this.video.play();
      this.info.textContent = `Camera on (${this.video.videoWidth} x ${this.video.videoHeight} px).`;
      this.captureButton.disabled = false;
      this.captureButton.focus();
    } catch (err) {
      const reject = this.reject;
      this.finish(undefined);
      reject?.(err);
    }
    return done;
  }

  async capture() {
    if (!this.video.videoWidth) {
      this.info.textContent = 'The camera is not ready yet; try again in a moment.';
      return;
    }
    this.captureButton.disabled = true;
    try {
      const bitmap = await createImageBitmap(this.video);
      this.finish(bitmap);
    } catch (err) {
      this.info.textContent = `The picture could not be taken (${err.message}).`;
      this.captureButton.disabled = false;
    }
  }

  stop() {
    for (const track of this.stream?.getTracks() ?? []) track.stop();
    this.stream = null;
    this.video.srcObject = null;
  }

  finish(result) {
    const resolve = this.resolve;
    this.resolve = null;
    this.reject = null;
    this.stop();
    if (this.dialog.open) this.dialog.close();
    if (result !== undefined) resolve?.(result);
  }
}
