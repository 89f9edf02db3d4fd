import io

import numpy as np
import pytest
from PIL import Image

from skinlesion import SkinLesionError
from skinlesion.model import ModelConfig, ShadesOfGrey, build_network, center_crop_box, keras, preprocess, read_image

CONFIG = ModelConfig(height=192, width=256)


@pytest.mark.parametrize("size, box", [
    ((200, 150), (0, 0, 200, 150)),      # HAM10000's 4:3: nothing cropped
    ((400, 150), (100, 0, 200, 150)),    # wide: the middle columns
    ((150, 400), (0, 143, 150, 113)),    # portrait: the middle rows; 112.5 rounds up, as Math.round does
    ((1000, 1000), (0, 125, 1000, 750)),
])
def test_center_crop_box(size, box):
    assert center_crop_box(*size, CONFIG.width, CONFIG.height) == box


def test_preprocess_is_crop_then_bilinear_resize():
    pixels = np.random.default_rng(0).integers(0, 256, (150, 200, 3), dtype=np.uint8)
    out = preprocess(pixels, CONFIG)
    assert out.shape == (192, 256, 3) and out.dtype == np.float32
    assert 0 <= out.min() and out.max() <= 255
    flat = np.full((300, 300, 3), 77, np.uint8)
    assert np.allclose(preprocess(flat, CONFIG), 77)


def test_preprocess_halves_large_images_by_averaging():
    # a 1-pixel checkerboard, 4x the model size: 2x2 averaging gives flat grey, plain bilinear would alias
    board = (np.indices((768, 1024)).sum(0) % 2 * 255).astype(np.uint8)
    out = preprocess(np.stack([board] * 3, -1), CONFIG)
    assert np.allclose(out, 127.5, atol=1e-3)


def _save(image: Image.Image, path, **kw):
    image.save(path, **kw)
    return path


def test_read_image_handles_modes_and_orientation(tmp_path):
    grey = read_image(_save(Image.new("L", (40, 30), 100), tmp_path / "g.png"))
    assert grey.shape == (30, 40, 3) and (grey == 100).all()
    clear = read_image(_save(Image.new("RGBA", (40, 30), (255, 0, 0, 0)), tmp_path / "a.png"))
    assert (clear == 255).all(), "transparent pixels are composited on white"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    rotated = read_image(_save(Image.new("RGB", (40, 30), (0, 200, 0)), tmp_path / "r.jpg", exif=exif))
    assert rotated.shape == (40, 30, 3)


def test_read_image_animated_gif_takes_first_frame(tmp_path):
    frames = [Image.new("RGB", (20, 20), c) for c in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    first = read_image(path)
    assert first[0, 0, 0] > 200 and first[0, 0, 2] < 50


@pytest.mark.parametrize("content, message", [
    (b"", "not a readable image"),
    (b"%PDF-1.4 not an image", "not a readable image"),
])
def test_read_image_refuses_non_images(tmp_path, content, message):
    path = tmp_path / "x.jpg"
    path.write_bytes(content)
    with pytest.raises(SkinLesionError, match=f"x.jpg: {message}"):
        read_image(path)


def test_read_image_refuses_truncated_jpeg(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(buffer, "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[:2000])
    with pytest.raises(SkinLesionError, match="cut.jpg: corrupt or truncated"):
        read_image(path)


def test_missing_model_folder_is_explained(tmp_path):
    from skinlesion.model import load_network
    with pytest.raises(SkinLesionError, match="no trained model in .*--retrain"):
        load_network(tmp_path)


def test_offline_imagenet_weights_are_explained(monkeypatch):
    """Keras cannot download the ImageNet weights offline and raises a bare Exception: the user gets what to do."""
    from keras.src.applications import mobilenet

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -2] Name or "
                        "service not known")

    monkeypatch.setattr(mobilenet.file_utils, "get_file", offline)
    with pytest.raises(SkinLesionError, match="point KERAS_HOME at a Keras home"):
        build_network(ModelConfig(alpha=0.25, height=64, width=64), weights="imagenet")


@pytest.mark.parametrize("settings, message", [
    ({"backbone": "resnet"}, "backbone must be one of mobilenet, mobilenet_v2"),
    ({"cut_layer": "block_5_add"}, "not a layer of mobilenet; e.g. conv_pw_4_relu"),
    ({"backbone": "mobilenet_v2", "cut_layer": "block_5_expand"}, "inside a residual block of mobilenet_v2"),
])
def test_wrong_backbone_settings_are_explained(settings, message):
    with pytest.raises(SkinLesionError, match=message):
        build_network(ModelConfig.from_settings({"alpha": 0.35, "height": 64, "width": 64} | settings), weights=None)


@pytest.mark.parametrize("backbone, description", [("mobilenet", "MobileNet v1 alpha 0.5"),
                                                    ("mobilenet_v2", "MobileNetV2 alpha 0.5")])
def test_the_report_names_the_backbone_the_config_builds(backbone, description):
    assert ModelConfig(backbone=backbone, alpha=0.5).backbone_description() == description


def test_shades_of_grey_cancels_a_gain_per_channel():
    layer = ShadesOfGrey(6)
    photo = np.random.default_rng(0).uniform(20, 150, (2, 12, 16, 3)).astype(np.float32)
    balanced = keras.ops.convert_to_numpy(layer(photo))
    assert balanced.max() < 255  # nothing clipped, so the cancelling below is exact
    for gain in ([1.1, 1.0, 0.9], [0.9, 1.0, 1.1], [0.8, 0.8, 0.8]):  # warmer, cooler, darker
        changed = keras.ops.convert_to_numpy(layer(photo * np.float32(gain)))
        np.testing.assert_allclose(changed, balanced, rtol=1e-4, atol=1e-3)
    tinted = keras.ops.convert_to_numpy(layer(np.full((1, 4, 4, 3), 90.0, np.float32) * np.float32([1.2, 1, 0.8])))
    np.testing.assert_allclose(tinted, 0.7 * 255, rtol=1e-5)  # a grey card under tinted light comes out grey


def test_color_constancy_must_be_a_whole_power():
    with pytest.raises(SkinLesionError, match="color_constancy must be a whole number"):
        ModelConfig.from_settings({"color_constancy": 2.5})
