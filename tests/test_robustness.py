"""The photo changes and framings of skinlesion/robustness.py do what their names say."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from skinlesion.model import ModelConfig
from skinlesion.robustness import FRAMINGS, PHOTO_CHANGES, lesion_size


@pytest.fixture
def photo() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(60, 190, (30, 40, 3), dtype=np.uint8))


def _hsv(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("HSV"), np.float32)


@pytest.mark.parametrize("name", PHOTO_CHANGES)
def test_every_change_keeps_the_size_and_changes_the_photo(photo, name):
    changed = PHOTO_CHANGES[name](photo)
    assert changed.mode == "RGB" and changed.size == photo.size
    assert np.abs(np.asarray(changed, np.int16) - np.asarray(photo, np.int16)).mean() > 1


def test_white_balance_scales_red_and_blue_and_keeps_green(photo):
    before = np.asarray(photo, np.float32)
    after = np.asarray(PHOTO_CHANGES["warmer (red x1.1, blue x0.9)"](photo), np.float32)
    np.testing.assert_allclose(after[..., 0], np.minimum(np.rint(before[..., 0] * 1.1), 255))
    np.testing.assert_array_equal(after[..., 1], before[..., 1])
    np.testing.assert_allclose(after[..., 2], np.rint(before[..., 2] * 0.9))


def test_hue_turns_by_ten_degrees_either_way(photo):
    for name, sign in (("hue +10 degrees", 1), ("hue -10 degrees", -1)):
        turn = (_hsv(PHOTO_CHANGES[name](photo))[..., 0] - _hsv(photo)[..., 0] + 128) % 256 - 128
        assert np.median(turn) * 360 / 256 == pytest.approx(sign * 10, abs=1.5)


def test_saturation_and_brightness_move_the_right_way(photo):
    saturation, value = _hsv(photo)[..., 1].mean(), _hsv(photo)[..., 2].mean()
    assert _hsv(PHOTO_CHANGES["saturation x0.7"](photo))[..., 1].mean() < saturation
    assert _hsv(PHOTO_CHANGES["saturation x1.3"](photo))[..., 1].mean() > saturation
    assert _hsv(PHOTO_CHANGES["darker (brightness x0.8)"](photo))[..., 2].mean() == pytest.approx(0.8 * value, rel=0.02)
    assert _hsv(PHOTO_CHANGES["brighter (brightness x1.2)"](photo))[..., 2].mean() > value


def test_framings_zoom_in_on_the_centre_and_keep_the_aspect():
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (150, 200, 3), dtype=np.uint8)
    photo = Image.fromarray(pixels)
    assert list(FRAMINGS) == ["zoomed in x1.25 on the centre", "zoomed in x1.5 on the centre",
                              "zoomed in x2 on the centre"]
    closer = FRAMINGS["zoomed in x2 on the centre"](photo)
    assert closer.size == (100, 75)  # 4:3 kept, so the page's centre crop takes all of it
    np.testing.assert_array_equal(np.asarray(closer), pixels[37:112, 50:150])
    assert FRAMINGS["zoomed in x1.5 on the centre"](photo).size == (133, 100)


def test_lesion_size_is_the_longer_side_of_the_box_as_a_share_of_the_input(tmp_path):
    path = tmp_path / "photo.png"
    Image.new("RGB", (200, 150)).save(path)
    frame = pd.DataFrame({"path": [path] * 4, "top": [0, 0, 0, np.nan], "bottom": [75, 30, 150, np.nan],
                          "left": [0, 0, 0, np.nan], "right": [50, 150, 100, np.nan]})
    size = lesion_size(frame, ModelConfig(height=150, width=200))
    # shares 0.5 (the height's), 0.75 (the width's), 1.0; the photo without a box is left out
    assert size["images"] == 3 and size["median"] == pytest.approx(0.75)
    assert size["quartiles"] == pytest.approx([0.625, 0.875])
    assert lesion_size(frame.drop(columns=["top", "bottom", "left", "right"]), ModelConfig()) is None
