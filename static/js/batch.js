// Batch mode: several photos (or a folder) are classified one after another into a table with a progress bar,
// and the table can be downloaded as CSV. Owns the #batch section of the page; the class list comes from the
// model's metadata, never from this file.

/** CSV text with a header `image,<code>,<code>,...` and one line per row, like `build.py predict` writes. */
export function csvText(rows, codes) {
  const field = (value) => {
    const text = String(value);
    return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
  };
  const lines = [['image', ...codes].map(field).join(',')];
  for (const row of rows) {
    lines.push([field(row.image), ...row.probabilities.map((p) => p.toFixed(6))].join(','));
  }
  return `${lines.join('\r\n')}\r\n`;
}

function percent(p) {
  return p < 0.001 ? '<0.1%' : `${(p * 100).toFixed(1)}%`;
}

export class Batch {
  /** @param {HTMLElement} section the #batch element of the page */
  constructor(section) {
    this.section = section;
    const $ = (selector) => section.querySelector(selector);
    this.els = {
      title: $('#batch-title'),
      status: $('#batch-status'),
      progress: $('#batch-progress'),
      stop: $('#batch-stop'),
      csv: $('#batch-csv'),
      head: $('thead tr'),
      body: $('tbody'),
    };
    this.els.stop.addEventListener('click', () => this.stop());
    this.els.csv.addEventListener('click', () => this.download());
    this.clear();
  }

  clear() {
    this.rows = [];
    this.codes = null;
    this.total = 0;
    this.finished = 0;
    this.failed = 0;
    this.stopped = false;
    this.els.head.replaceChildren();
    this.els.body.replaceChildren();
    this.els.csv.disabled = true;
    this.section.hidden = true;
  }

  /** Announces `count` more photos; the first call of a batch shows the section and moves focus to it. */
  add(count) {
    const fresh = this.finished === this.total;
    if (fresh) this.stopped = false;
    this.total += count;
    this.section.hidden = false;
    this.els.stop.disabled = false;
    this.progress();
    if (fresh && this.total === count) this.els.title.focus();
  }

  /** The header row, built once from the model's class list: File, Most likely, Probability, then one per class. */
  setClasses(classes) {
    if (this.codes) return;
    this.codes = classes.map((c) => c.code);
    const th = (content, title) => {
      const cell = document.createElement('th');
      cell.scope = 'col';
      if (title) {
        const abbr = document.createElement('abbr');
        abbr.title = title;
        abbr.textContent = content;
        cell.append(abbr);
        cell.className = 'num';
      } else {
        cell.textContent = content;
      }
      return cell;
    };
    this.els.head.replaceChildren(th('File'), th('Most likely'), th('Probability'),
      ...classes.map((c) => th(c.code, c.name ?? c.code)));
  }

  /** Shows which photo is being read. */
  working(name) {
    this.els.status.textContent = `Classifying ${this.finished + 1} of ${this.total}: ${name}`;
  }

  /**
   * A classified photo; `results` are [{code, name, probability}] in the model's class order, `cautions`
   * [{kind: 'alert' | 'warning', text}] are shown under the most likely class (not in the CSV).
   */
  done(name, image, results, cautions = []) {
    this.rows.push({ image, probabilities: results.map((r) => r.probability) });
    const top = results.reduce((a, b) => (b.probability > a.probability ? b : a));
    const row = this.row(name);
    row.dataset.top = top.code;
    const cells = [[top.name, ''], [percent(top.probability), 'num'],
      ...results.map((r) => [percent(r.probability), r.code === top.code ? 'num top' : 'num'])];
    for (const [text, className] of cells) {
      const td = document.createElement('td');
      td.textContent = text;
      if (className) td.className = className;
      row.append(td);
    }
    const topCell = row.querySelector('td');
    for (const { kind, text } of cautions) {
      const note = document.createElement('span');
      note.className = `batch-note batch-note-${kind}`;
      note.textContent = text;
      topCell.append(note);
    }
    if (cautions.some((c) => c.kind === 'alert')) row.classList.add('batch-alert');
    this.els.csv.disabled = false;
    this.step();
  }

  /** A photo that could not be classified, with the reason. */
  fail(name, message) {
    const row = this.row(name);
    row.classList.add('batch-failed');
    const td = document.createElement('td');
    td.colSpan = 2 + (this.codes?.length ?? 0);
    td.textContent = message;
    row.append(td);
    this.failed += 1;
    this.step();
  }

  /** Whether the person pressed Stop: the rest of this batch is skipped. */
  get cancelled() {
    return this.stopped;
  }

  skip() {
    this.step();
  }

  stop() {
    this.stopped = true;
    this.els.stop.disabled = true;
    this.els.status.textContent = 'Stopping after this photo...';
  }

  row(name) {
    const tr = document.createElement('tr');
    const th = document.createElement('th');
    th.scope = 'row';
    th.textContent = name;
    tr.append(th);
    this.els.body.append(tr);
    return tr;
  }

  step() {
    this.finished += 1;
    this.progress();
  }

  progress() {
    const { progress, status, stop } = this.els;
    progress.max = Math.max(1, this.total);
    progress.value = this.finished;
    if (this.finished < this.total) {
      if (!this.stopped) status.textContent = `Classified ${this.finished} of ${this.total}`;
      return;
    }
    stop.disabled = true;
    const classified = this.rows.length;
    const skipped = this.total - classified - this.failed;
    status.textContent = `Done: ${classified} of ${this.total} photos classified`
      + (this.failed ? `, ${this.failed} could not be read` : '')
      + (skipped ? `, ${skipped} skipped (stopped)` : '') + '.';
  }

  /** Saves the table as CSV through a Blob URL that is revoked once the download has started. */
  download() {
    if (!this.codes || this.rows.length === 0) return;
    const blob = new Blob([csvText(this.rows, this.codes)], { type: 'text/csv;charset=utf-8' });
    const url = URL.createObjectURL(blob);
    const a = document.createElement('a');
    a.href = url;
    a.download = 'skin-lesion-results.csv';
    a.hidden = true;
    document.body.append(a);
    a.click();
    a.remove();
    // Revoking in the same task can cancel the download in some browsers (Firefox); a second later it has started.
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }
}
