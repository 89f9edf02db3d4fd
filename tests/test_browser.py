"""The shipped model in a real Chromium: same answers as Keras, no request leaves the origin, memory stays flat."""

import shutil

import numpy as np
import pandas as pd
import pytest

from conftest import SHIPPED_MODEL, open_ready

pytestmark = pytest.mark.browser

CLASSIFY_URLS = """async (urls) => {
  const model = await globalThis.skinlesionApp.modelReady;
  const out = [];
  for (const url of urls) {
    const bitmap = await createImageBitmap(await (await fetch(url)).blob());
    out.push((await model.classify(bitmap)).map((r) => r.probability));
    bitmap.close();
  }
  return out;
}"""

CLASSIFY_PIXELS = """async (images) => {
  const model = await globalThis.skinlesionApp.modelReady;
  const out = [];
  for (const {width, height, rgba} of images) {
    const data = new ImageData(new Uint8ClampedArray(rgba), width, height);
    out.push((await model.classify(data)).map((r) => r.probability));
  }
  return out;
}"""


@pytest.fixture(scope="module")
def test_images(ham_dir, site_dir):
    """20 images of the shipped model's test split (every class present), copied into the served site."""
    split = pd.read_csv(SHIPPED_MODEL / "split.csv")
    test = split[split["split"] == "test"]
    chosen = pd.concat([test.groupby("dx").head(2), test[test["dx"] == "nv"].iloc[2:8]]).drop_duplicates("image_id")
    folder = site_dir / "test-images"
    folder.mkdir(exist_ok=True)
    for image_id in chosen["image_id"]:
        shutil.copy(ham_dir / "images" / f"{image_id}.jpg", folder / f"{image_id}.jpg")
    assert len(chosen) >= 20
    return [ham_dir / "images" / f"{i}.jpg" for i in chosen["image_id"]]


@pytest.fixture(scope="module")
def keras_probabilities(test_images):
    from skinlesion.model import load_inputs, load_network, predict

    network = load_network(SHIPPED_MODEL)
    return predict(network, load_inputs(test_images, network.config))


@pytest.mark.parametrize("backend", ["wasm", "webgl"])
def test_tfjs_reproduces_keras_on_the_same_pixels(page, site_url, test_images, keras_probabilities, backend):
    from skinlesion.model import read_image

    open_ready(page, f"{site_url}?backend={backend}")
    assert backend in page.text_content("#backend").lower()
    images = []
    for path in test_images:
        pixels = read_image(path)
        rgba = np.concatenate([pixels, np.full((*pixels.shape[:2], 1), 255, np.uint8)], -1)
        images.append({"width": pixels.shape[1], "height": pixels.shape[0], "rgba": rgba.ravel().tolist()})
    browser = np.array(page.evaluate(CLASSIFY_PIXELS, images))
    difference = np.abs(browser - keras_probabilities).max()
    assert (browser.argmax(1) == keras_probabilities.argmax(1)).all(), (browser.argmax(1), difference)
    print(f"{backend}: max |TF.js - Keras| = {difference:.2e} over {len(images)} images")
    assert difference < 1e-3, f"max |TF.js - Keras| = {difference}"
    assert np.allclose(browser.sum(1), 1, atol=1e-5)


def test_browser_decoding_gives_the_same_answers(page, site_url, test_images, keras_probabilities):
    """End to end from the JPEG files: the browser decodes them itself."""
    open_ready(page, site_url)
    urls = [f"{site_url}test-images/{p.name}" for p in test_images]
    browser = np.array(page.evaluate(CLASSIFY_URLS, urls))
    difference = np.abs(browser - keras_probabilities).max()
    assert (browser.argmax(1) == keras_probabilities.argmax(1)).all(), difference
    print(f"browser-decoded JPEGs: max |TF.js - Keras| = {difference:.2e} over {len(urls)} images")
    assert difference < 1e-2, f"max |TF.js - Keras| = {difference}"


def test_a_visit_stays_on_the_origin(page, site_url, test_images):
    open_ready(page, site_url)
    page.set_input_files("#file-input", [str(p) for p in test_images[:3]])  # several files: batch mode
    page.wait_for_selector("#batch:not([hidden])")
    page.evaluate("() => globalThis.skinlesionApp.idle()")
    page.goto(f"{site_url}model-card.html")
    page.wait_for_load_state("networkidle")
    outside = [u for u in page.watch.requests if not u.startswith(site_url) and not u.startswith(("blob:", "data:"))]
    assert page.watch.requests and not outside, outside


def test_the_model_is_preloaded_and_downloaded_once(page, site_url, site_dir):
    open_ready(page, site_url)
    preloads = page.evaluate("[...document.querySelectorAll('link[rel=preload]')].map((l) => l.href)")
    weights = sorted(p.name for p in (site_dir / "model").glob("*.bin"))
    assert sorted(u.rsplit("/", 1)[1] for u in preloads) == sorted(["metadata.json", "model.json", *weights])
    for url in preloads:  # the page's own fetches reused the preloaded responses
        assert page.watch.requests.count(url) == 1, (url, page.watch.requests)
    assert page.watch.errors == [], page.watch


def test_the_csp_blocks_other_origins(page, site_url):
    open_ready(page, site_url)
    violations = page.evaluate("""async () => {
      const seen = [];
      document.addEventListener('securitypolicyviolation', (e) => seen.push(e.violatedDirective));
      try { await fetch('https://example.org/upload', {method: 'POST', body: 'x'}); } catch (e) { /* refused */ }
      await new Promise((resolve) => setTimeout(resolve, 100));
      return seen;
    }""")
    assert violations == ["connect-src"], violations


def test_results_show_all_classes_top3_and_disclaimer(page, site_url, test_images):
    import json
    metadata = json.loads((SHIPPED_MODEL / "tfjs" / "metadata.json").read_text())
    open_ready(page, site_url)
    assert "not a diagnosis" in page.text_content("body").lower()
    page.uncheck("#crop-first")  # classify the centre crop without the crop step
    page.set_input_files("#file-input", str(test_images[0]))
    page.wait_for_selector(".result .bars:not([hidden])")
    bars = page.locator(".result .bars li")
    assert bars.count() == 7
    text = page.text_content(".result .bars")
    for c in metadata["classes"]:
        assert c["name"] in text
    assert page.locator(".result .bars li.top").count() == 3, page.inner_html(".result .bars")


def test_tensor_count_is_flat_over_many_predictions(page, site_url, test_images):
    open_ready(page, site_url)
    counts = page.evaluate("""async (url) => {
      const model = await globalThis.skinlesionApp.modelReady;
      const bitmap = await createImageBitmap(await (await fetch(url)).blob());
      await model.classify(bitmap);
      const before = globalThis.skinlesionApp.numTensors();
      for (let i = 0; i < 100; i++) await model.classify(bitmap);
      return [before, globalThis.skinlesionApp.numTensors()];
    }""", f"{site_url}test-images/{test_images[0].name}")
    assert counts[0] == counts[1], counts


def test_non_image_gets_a_message_and_the_page_keeps_working(page, site_url, test_images, tmp_path):
    bad = tmp_path / "report.pdf"
    bad.write_bytes(b"%PDF-1.4 this is not a photo")
    open_ready(page, site_url)
    page.uncheck("#crop-first")
    page.set_input_files("#file-input", str(bad))
    page.wait_for_selector(".message-error, .result-status")
    assert "report.pdf is not an image (application/pdf)" in page.text_content("body")
    page.set_input_files("#file-input", str(test_images[0]))
    page.wait_for_selector(".result .bars:not([hidden])")
    assert not [e for e in page.watch.errors if "pageerror" in e], page.watch


def test_warnings_fire_on_the_right_images(page, site_url, site_dir, test_images, keras_probabilities):
    """The shipped model in the browser: a brick wall is out of distribution; a clear lesion is neither out of
    distribution nor uncertain (thresholds from the metadata, chosen on validation)."""
    import json

    from conftest import SHARED
    metadata = json.loads((SHIPPED_MODEL / "tfjs" / "metadata.json").read_text())
    clear = [p for p, probs in zip(test_images, keras_probabilities) if probs.max() > metadata["uncertain_below"]]
    assert clear, "no confidently classified image among the test images"
    shutil.copy(SHARED / "data" / "out_of_distribution" / "non_skin" / "brick.jpg", site_dir / "test-images")
    open_ready(page, site_url)
    analyses = page.evaluate("""async (urls) => {
      const model = await globalThis.skinlesionApp.modelReady;
      const out = [];
      for (const url of urls) {
        const bitmap = await createImageBitmap(await (await fetch(url)).blob());
        const a = await model.analyze(bitmap);
        out.push({ood: a.outOfDistribution, uncertain: a.uncertain, score: a.oodScore});
      }
      return out;
    }""", [f"{site_url}test-images/brick.jpg", f"{site_url}test-images/{clear[0].name}"])
    brick, lesion = analyses
    assert brick["ood"] and brick["score"] > metadata["ood_threshold"], brick
    assert not lesion["ood"] and not lesion["uncertain"], lesion
