import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from skinlesion import SkinLesionError
from skinlesion.model import ModelConfig, keras
from skinlesion.recipe import (LESION_CROP_SMALLEST, OPTIMIZERS, SCHEDULE_MONITORS, LogitAdjustedCrossentropy,
                               TrainConfig, augmentation, lesion_crop_boxes, training_loss)
from skinlesion.train import LinearWarmUp, _fit_phase, lesion_subset
from skinlesion.views import CachedViews


class RecordLearningRate(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.rates = []

    def on_train_batch_begin(self, batch, logs=None):
        self.rates.append(float(self.model.optimizer.learning_rate.numpy()))


def test_warmup_rises_linearly_then_hands_over():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    record = RecordLearningRate()  # after the warm-up in the list, so it sees the rate each batch trains with
    x, y = np.zeros((40, 3), np.float32), np.zeros((40, 1), np.float32)
    model.fit(x, y, batch_size=10, epochs=3, verbose=0, callbacks=[LinearWarmUp(0.01, 2, 4), record])
    np.testing.assert_allclose(record.rates[:8], 0.01 * np.arange(1, 9) / 8, rtol=1e-5)
    np.testing.assert_allclose(record.rates[8:], 0.01, rtol=1e-5)


def test_config_file_errors_are_clear(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"fine_tune_optimizer": "rmsprop"}))
    with pytest.raises(SkinLesionError, match="fine_tune_optimizer must be one of adam, sgd"):
        TrainConfig.load(path)
    path.write_text(json.dumps({"fine_tune_optimizer": "sgd", "fine_tune_learning_rate": 0.003}))
    assert TrainConfig.load(path).fine_tune_optimizer == "sgd"
    path.write_text(json.dumps({"fine_tune_monitor": "val_accuracy"}))
    with pytest.raises(SkinLesionError, match="fine_tune_monitor must be one of val_balanced_accuracy, val_loss"):
        TrainConfig.load(path)
    path.write_text(json.dumps({"fine_tune_schedule": "step"}))
    with pytest.raises(SkinLesionError, match="fine_tune_schedule must be one of plateau, cosine"):
        TrainConfig.load(path)
    path.write_text(json.dumps({"class_weighting": "oversample"}))
    with pytest.raises(SkinLesionError, match="class_weighting must be one of loss, sampling"):
        TrainConfig.load(path)
    path.write_text(json.dumps({"fine_tune_ema": 1.0}))
    with pytest.raises(SkinLesionError, match="fine_tune_ema must be at least 0"):
        TrainConfig.load(path)
    path.write_text(json.dumps({"start_seed": "7"}))
    with pytest.raises(SkinLesionError, match="start_seed must be a whole number, or null"):
        TrainConfig.load(path)
    path.write_text(json.dumps({"start_seed": 7}))
    assert TrainConfig.load(path).training_seed == 7 and TrainConfig().training_seed == TrainConfig().seed
    for boost in ({"melanoma": 2}, {"mel": 0}, {"mel": "2"}, ["mel"]):
        path.write_text(json.dumps({"class_weight_boost": boost}))
        with pytest.raises(SkinLesionError, match="class_weight_boost must map class codes"):
            TrainConfig.load(path)
    path.write_text(json.dumps({"class_weight_boost": {"mel": 2}}))
    assert TrainConfig.load(path).class_weight_boost == {"mel": 2}
    path.write_text("{not json")
    with pytest.raises(SkinLesionError, match="cannot read training config"):
        TrainConfig.load(path)


def _fit_one_direction(run_dir: Path, epochs: int, rate: float, **options) -> tuple[np.ndarray, np.ndarray]:
    """(start, kept) kernel of a Dense layer after `epochs` epochs of 20 Adam steps each in one direction (every
    label 0, positive features), with the same seed each time, so that every run follows the same raw weights."""
    rng = np.random.default_rng(0)
    features, labels = np.abs(rng.normal(size=(1, 200, 8))).astype(np.float16), np.zeros(200, int)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(7, activation="softmax")])
    start = model.get_weights()[0].copy()
    config = TrainConfig(batch_size=10)
    run_dir.mkdir()
    batches = CachedViews(features, labels, {0: 1.0}, config.batch_size, config.seed)
    _fit_phase("phase", model, batches, features[0].astype(np.float32), labels, epochs, rate, config, run_dir,
               **options)
    return start, model.get_weights()[0]


def test_fit_phase_keeps_the_moving_average_when_asked(tmp_path):
    start, raw = _fit_one_direction(tmp_path / "raw", 1, 1.0)
    _, averaged = _fit_one_direction(tmp_path / "averaged", 1, 1.0, ema=0.99)
    _, almost_raw = _fit_one_direction(tmp_path / "almost-raw", 1, 1.0, ema=1e-6)
    np.testing.assert_allclose(almost_raw, raw, atol=1e-4)  # momentum ~0: the average is the last step
    # momentum 0.99 over 20 steps: mostly the first steps' weights, well short of where training went
    assert np.abs(averaged - start).mean() < 0.75 * np.abs(raw - start).mean()


def test_learning_rate_plateau_watches_the_chosen_validation_score(tmp_path):
    # One class only: val BA is 1.0 from the first epoch and cannot improve, while the val loss still falls
    assert set(SCHEDULE_MONITORS) == {"val_balanced_accuracy", "val_loss"}
    logs = {}
    for monitor in SCHEDULE_MONITORS:
        _fit_one_direction(tmp_path / monitor, 4, 0.01, schedule_monitor=monitor)
        logs[monitor] = pd.read_csv(tmp_path / monitor / "phase.log.csv")
    by_ba, by_loss = logs["val_balanced_accuracy"], logs["val_loss"]
    assert (by_ba["val_balanced_accuracy"] == 1.0).all() and by_loss["val_loss"].is_monotonic_decreasing
    np.testing.assert_allclose(by_ba["learning_rate"], [0.01, 0.01, 0.01, 0.005])  # halved after 2 flat epochs
    np.testing.assert_allclose(by_loss["learning_rate"], 0.01)  # never halved: the loss still improves


def _one_step(optimizer: keras.optimizers.Optimizer, names: list[str]) -> dict[str, float]:
    """How far one step with the same gradient moves a weight of each named layer."""
    layers = [keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros", name=name) for name in names]
    for layer in layers:
        layer.build((None, 1))
    variables = [layer.kernel for layer in layers]
    optimizer.apply_gradients([(np.ones((1, 1), np.float32), v) for v in variables])
    return {name: -float(np.asarray(v.numpy()).item()) for name, v in zip(names, variables)}


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_layer_decay_slows_each_block_below_the_top_block_by_its_factor(name):
    names = ["conv_dw_5", "conv_pw_5", "block_6_expand", "conv_pw_7", "logits"]
    steps = _one_step(OPTIMIZERS[name](0.1, layer_decay=0.5), names)
    np.testing.assert_allclose([steps[n] for n in names], [0.1 / 4, 0.1 / 4, 0.1 / 2, 0.1, 0.1], rtol=1e-4)
    steps = _one_step(OPTIMIZERS[name](0.1, layer_decay=1.5), names)  # the reverse: lower blocks faster
    np.testing.assert_allclose([steps[n] for n in names], [0.225, 0.225, 0.15, 0.1, 0.1], rtol=1e-4)
    # 1, the default, is off: the same steps as Keras's own optimizer
    plain = keras.optimizers.Adam(0.1) if name == "adam" else keras.optimizers.SGD(0.1, momentum=0.9)
    assert _one_step(OPTIMIZERS[name](0.1), names) == _one_step(plain, names)


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_anchor_decay_pulls_backbone_weights_back_towards_where_they_started(name):
    names = ["conv_pw_5", "block_6_expand", "logits"]
    layers = [keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros", name=n) for n in names]
    for layer in layers:
        layer.build((None, 1))
    variables = [layer.kernel for layer in layers]
    optimizer = OPTIMIZERS[name](0.1, anchor_decay=2.0)
    optimizer.build(variables)  # the anchors: the weights now, 0
    for v in variables:
        v.assign(np.ones((1, 1), np.float32))
    optimizer.apply_gradients([(np.zeros((1, 1), np.float32), v) for v in variables])  # no gradient: the pull only
    moved = [float(np.asarray(v.numpy()).item()) for v in variables]
    # the blocks 1 - 0.1 * 2 of the way back to 0; the classifier, not pretrained, is left where it is
    np.testing.assert_allclose(moved, [0.8, 0.8, 1.0], rtol=1e-6)


def test_anchor_decay_anchors_at_the_start_in_fit_and_when_a_run_resumes(tmp_path):
    """Inside fit() Keras builds the optimizer while tracing the first step (an anchor assigned there read 0);
    BackupAndRestore builds the optimizer from the weights as they stand and then loads the checkpoint: the anchors
    must be the start, not 0 nor the weights at the interruption."""
    rng = np.random.default_rng(0)
    features, labels = rng.normal(size=(40, 4)).astype(np.float32), rng.integers(0, 3, 40)

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    def fit(backup: Path, callbacks: list) -> np.ndarray:
        keras.utils.set_random_seed(0)
        inputs = keras.Input((4,))  # functional: the variable paths then start with the block's name, as MobileNet's
        model = keras.Model(inputs, keras.layers.Dense(3, name="conv_pw_13", activation="softmax")(inputs))
        start = model.get_weights()
        model.compile(OPTIMIZERS["sgd"](0.05, anchor_decay=5.0), "sparse_categorical_crossentropy")
        try:
            model.fit(features, labels, epochs=4, batch_size=10, shuffle=False, verbose=0,
                      callbacks=[keras.callbacks.BackupAndRestore(backup), *callbacks])
        finally:  # inside fit() too, and after a resume: the anchors are the weights the run started from
            for anchor, weights in zip(model.optimizer.anchors, start, strict=True):
                np.testing.assert_array_equal(anchor.numpy(), weights)
        return model.get_weights()[0]

    whole = fit(tmp_path / "whole", [])
    with pytest.raises(KeyboardInterrupt):
        fit(tmp_path / "resumed", [Interrupt()])
    np.testing.assert_allclose(fit(tmp_path / "resumed", []), whole, rtol=1e-5)


@pytest.mark.parametrize("setting, bad, message, good", [
    *[("fine_tune_layer_decay", bad, "must be a factor above 0 and at most 2", 1.1) for bad in (0, -0.5, 2.5)],
    *[("fine_tune_anchor_decay", bad, "must be a number from 0", 10) for bad in (-1, 1001)],
    *[("logit_adjustment", bad, "must be a number from 0", 0.5) for bad in (-0.5, 3)],
    *[("train_share", bad, "must be a share above 0 and at most 1", 0.5) for bad in (0, 1.5)],
    # any number where the default is one: a clear message, not a TypeError from a comparison
    *[(setting, bad, "must be a number, not", 0.5)
      for setting in ("fine_tune_ema", "train_share", "fine_tune_layer_decay") for bad in ("0.5", True, None, [1])],
    *[("views", bad, "must be a whole number, not", 4) for bad in (2.5, "8", False)]])
def test_numeric_settings_are_checked(tmp_path, setting, bad, message, good):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({setting: bad}))
    with pytest.raises(SkinLesionError, match=f"{setting} {message}"):
        TrainConfig.load(path)
    path.write_text(json.dumps({setting: good}))
    assert getattr(TrainConfig.load(path), setting) == good


def test_logit_adjustment_is_cross_entropy_of_the_logits_shifted_by_the_log_class_shares():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 7)).astype(np.float32)
    labels = keras.utils.to_categorical(rng.integers(0, 7, 5), 7)
    shares = np.array([0.03, 0.05, 0.11, 0.01, 0.11, 0.67, 0.02])
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    shifted = logits + 0.5 * np.log(shares)
    expected = -(labels * (shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True)))).sum(axis=1).mean()
    loss = LogitAdjustedCrossentropy(shares, 0.5)
    np.testing.assert_allclose(float(loss(labels, probabilities)), expected, rtol=1e-5)
    # from a flat answer a rare class costs more than without the shift, a common one less: fitting a rare class
    # takes a larger logit, which inference (without the shift) then reads
    plain = keras.losses.CategoricalCrossentropy()
    nv, df = np.eye(7, dtype=np.float32)[[5]], np.eye(7, dtype=np.float32)[[3]]
    flat = np.full((1, 7), 1 / 7, np.float32)
    assert float(loss(df, flat)) > float(plain(df, flat)) > float(loss(nv, flat))


def test_training_loss_is_keras_own_without_logit_adjustment():
    labels = np.array([0, 1, 1, 5, 5, 5, 5])
    assert type(training_loss(TrainConfig(), labels)) is keras.losses.CategoricalCrossentropy
    adjusted = training_loss(TrainConfig(logit_adjustment=1.0, label_smoothing=0.1), labels)
    assert isinstance(adjusted, LogitAdjustedCrossentropy) and adjusted.label_smoothing == 0.1
    # the shares of the labels given, a class without any counted as one image, so that its log stays finite
    np.testing.assert_allclose(adjusted.factors, np.array([1, 2, 1, 1, 1, 4, 1]) / 7, rtol=1e-6)


def test_lesion_subset_keeps_whole_lesions_a_seeded_share_of_them():
    groups = np.repeat(np.arange(200), np.arange(200) % 3 + 1)  # 200 lesions of 1-3 photos
    kept = lesion_subset(groups, 0.5, seed=42)
    assert len(np.unique(groups[kept])) == 100
    # every photo of a drawn lesion, none of the others
    assert set(kept) == set(np.flatnonzero(np.isin(groups, groups[kept])))
    assert np.all(np.diff(kept) > 0)
    np.testing.assert_array_equal(lesion_subset(groups, 0.5, seed=42), kept)
    assert not np.array_equal(lesion_subset(groups, 0.5, seed=1), kept)


def test_mixup_mixes_features_labels_and_weights_alike():
    n = 16
    features = np.stack([np.eye(n)] * 2).astype(np.float16)  # image r's features: e_r, so a mix shows its parts
    labels, weights = np.arange(n) % 7, {k: 1.0 + k for k in range(7)}
    one_hot = np.eye(7)[labels]
    x, y, w = CachedViews(features, labels, weights, batch_size=8, seed=0, mixup=0.4)[0]
    assert ((x > 0).sum(1) <= 2).all() and ((x > 0) & (x < 1)).any()  # blends of at most two images, some real
    for row in range(len(x)):
        parts = np.nonzero(x[row])[0]
        expected_y = (x[row, parts, None] * one_hot[parts]).sum(0)
        expected_w = (x[row, parts] * np.array([weights[k] for k in labels[parts]])).sum()
        np.testing.assert_allclose(y[row], expected_y, atol=1e-6)
        np.testing.assert_allclose(w[row], expected_w, rtol=1e-6)


def test_feature_cutout_zeroes_a_new_block_of_each_map_every_time_it_is_drawn(tmp_path):
    features, labels = np.ones((1, 8, 10, 20, 3), np.float16), np.zeros(8, int)
    plain = CachedViews(features, labels, {0: 1.0}, batch_size=8, seed=0)[0][0]
    assert (plain == 1).all()  # off by default
    batches = CachedViews(features, labels, {0: 1.0}, batch_size=8, seed=0, cutout=0.5)
    first, second = batches[0][0], batches[0][0]
    for maps in (first, second):
        zeroed = maps[..., 0] == 0
        assert (zeroed == (maps == 0).all(-1)).all()  # every channel of a cell, or none
        for cells in zeroed:  # one block of 5 x 10 cells, smaller only where a border clips it
            rows, columns = np.nonzero(cells.any(1))[0], np.nonzero(cells.any(0))[0]
            assert cells.sum() == len(rows) * len(columns) > 0  # a filled rectangle
            for kept, side, block in ((rows, 10, 5), (columns, 20, 10)):
                assert (kept == np.arange(kept[0], kept[-1] + 1)).all()
                assert len(kept) == block or (len(kept) < block and (kept[0] == 0 or kept[-1] == side - 1))
    assert (first != second).any()
    assert (features == 1).all()  # the cache itself is never touched
    path = tmp_path / "config.json"
    path.write_text('{"feature_cutout": 1.0}')
    with pytest.raises(SkinLesionError, match="feature_cutout must be a share"):
        TrainConfig.load(path)


def test_network_settings_must_be_known(tmp_path):
    from skinlesion.model import ModelConfig

    assert ModelConfig.from_settings({"height": 150, "width": 200}).height == 150
    with pytest.raises(SkinLesionError, match="unknown network setting.*heigth.*valid: alpha"):
        ModelConfig.from_settings({"heigth": 150})
    with pytest.raises(SkinLesionError, match="unknown network setting.*temperature"):
        ModelConfig.from_settings({"temperature": 0.5})  # fit on validation, never set
    path = tmp_path / "config.json"
    path.write_text('{"network": [150, 200]}')
    with pytest.raises(SkinLesionError, match="network must be an object"):
        TrainConfig.load(path)


def test_feature_cache_is_written_to_a_file_and_a_half_written_one_is_not_reused(ham_dir, tmp_path):
    from types import SimpleNamespace

    import pandas as pd

    from skinlesion.model import ModelConfig, load_inputs
    from skinlesion.train import _cached, cache_features

    config = ModelConfig(height=16, width=20)
    inputs = keras.Input((16, 20, 3))
    frozen = keras.Model(inputs, keras.layers.Conv2D(2, 3, strides=4)(inputs))
    prepare = keras.layers.Rescaling(1 / 127.5, offset=-1)
    network = SimpleNamespace(frozen=frozen, prepare=prepare, config=config)
    frame = pd.DataFrame({"path": sorted((ham_dir / "images").glob("*.jpg"))[:3]})
    path = tmp_path / "cache_train.npy"
    np.save(path.with_name("cache_train.partial.npy"), np.zeros(1))  # what an interrupted run leaves behind
    cached = _cached(path, lambda partial: cache_features(network, frame, 2, TrainConfig(views=2), partial))
    assert isinstance(cached, np.memmap) and cached.shape == (2, 3, 4, 5, 2) and cached.dtype == np.float16
    assert not path.with_name("cache_train.partial.npy").exists()
    scaled = prepare(load_inputs(list(frame["path"]), config))
    np.testing.assert_array_equal(cached[0], frozen.predict(scaled, verbose=0).astype(np.float16))
    assert not np.array_equal(cached[1], cached[0])  # the second view is augmented
    assert np.array_equal(_cached(path, lambda partial: pytest.fail("recomputed")), cached)


def test_pooling_reads_the_cache_a_chunk_at_a_time_and_gives_what_one_pass_gives():
    from types import SimpleNamespace

    from skinlesion.train import _pooled

    inputs = keras.Input((4, 5, 2))
    pool = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(keras.layers.Dense(3)(inputs)))
    read = []

    class Cache(np.ndarray):  # the cache is a float16 memory map: the test sees which image rows are read from it
        def __getitem__(self, index):
            if isinstance(index, slice):
                read.append((index.start, index.stop))
            return super().__getitem__(index)

    features = np.random.default_rng(0).normal(size=(2, 10, 4, 5, 2)).astype(np.float16)
    pooled = _pooled(SimpleNamespace(pool=pool), features.view(Cache), batch_size=2, chunk=4)
    assert read == [(0, 4), (4, 8), (8, 12)] * 2  # each view in chunks of 4 images, never whole
    whole = np.stack([pool.predict(view.astype(np.float32), batch_size=2, verbose=0) for view in features])
    np.testing.assert_array_equal(pooled, whole)


def test_the_defaults_are_the_shipped_recipe():
    """A plain `build.py --retrain` trains the recipe of model/ (README), at another start: the shipped model was
    chosen among its recipe's starts, so only start_seed may differ."""
    shipped = TrainConfig.load(Path(__file__).resolve().parents[1] / "model" / "train_config.json")
    defaults = TrainConfig()
    differing = {key for key, value in asdict(defaults).items() if key != "network" and getattr(shipped, key) != value}
    assert differing <= {"start_seed"}, differing
    assert ModelConfig.from_settings(defaults.network) == ModelConfig.from_settings(shipped.network)


def test_lesion_crops_hold_the_lesion_keep_the_aspect_and_stay_in_the_frame():
    rng = np.random.default_rng(0)
    corner = rng.uniform(0, 0.7, (500, 2))
    lesions = np.column_stack([corner, corner + rng.uniform(0.02, 0.3, (500, 2))]).astype(np.float32)
    lesions[:50] = np.nan  # photos without a box
    crops = lesion_crop_boxes(lesions, 0.5, np.random.default_rng(1))
    whole = (crops == [0, 0, 1, 1]).all(axis=1)
    assert whole[:50].all() and 0.35 < (~whole[50:]).mean() < 0.65
    cropped, boxes = crops[~whole], lesions[~whole]
    sides = cropped[:, 2:] - cropped[:, :2]
    np.testing.assert_allclose(sides[:, 0], sides[:, 1], atol=1e-6)  # equal shares of the frame: its aspect kept
    assert (sides[:, 0] >= LESION_CROP_SMALLEST - 1e-6).all() and (cropped >= 0).all() and (cropped <= 1).all()
    assert (cropped[:, :2] <= boxes[:, :2] + 1e-6).all() and (cropped[:, 2:] >= boxes[:, 2:] - 1e-6).all()
    assert (lesion_crop_boxes(lesions, 0.0, np.random.default_rng(1)) == [0, 0, 1, 1]).all()


def test_zoom_takes_a_share_or_keras_bounds_and_zooms_in_as_asked(tmp_path):
    path = tmp_path / "config.json"
    for zoom in (1.0, -0.1, [0.1, -0.1], [-1.0, 0.1], [-0.4], "0.1", [-0.4, True]):
        path.write_text(json.dumps({"zoom": zoom}))
        with pytest.raises(SkinLesionError, match="zoom must be a share"):
            TrainConfig.load(path)
    path.write_text(json.dumps({"zoom": [-0.5, -0.5]}))
    recipe = replace(TrainConfig.load(path), rotation=0.0, shift=0.0, color_jitter=0.0)
    assert recipe.zoom == [-0.5, -0.5]
    # a 2x zoom in: a bright centred square of a quarter of the image fills it (flips leave a centred square as it is;
    # the outermost pixels blend with the dark around the square)
    image = np.zeros((1, 32, 32, 3), np.float32)
    image[:, 8:24, 8:24] = 255
    zoomed = keras.ops.convert_to_numpy(augmentation(recipe)(image, training=True))
    assert zoomed[0, 1:-1, 1:-1].min() > 250 and zoomed.mean() > 240, zoomed[0, ..., 0]


def test_lesion_crop_must_be_a_share(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"lesion_crop": 1.5}))
    with pytest.raises(SkinLesionError, match="lesion_crop must be a share"):
        TrainConfig.load(path)


def _hsv_of_augmented(**jitter) -> tuple[np.ndarray, np.ndarray]:
    """HSV of 64 flat-coloured images before and after the augmentation with only `jitter` on."""
    colours = np.random.default_rng(0).uniform(40, 200, (64, 1, 1, 3)).astype(np.float32)
    images = np.tile(colours, (1, 4, 4, 1))
    recipe = TrainConfig(rotation=0.0, shift=0.0, zoom=0.0, color_jitter=0.0, **jitter)
    augmented = np.clip(keras.ops.convert_to_numpy(augmentation(recipe)(images, training=True)), 0, 255)
    to_hsv = keras.ops.image.rgb_to_hsv
    return (keras.ops.convert_to_numpy(to_hsv(images / 255))[:, 0, 0],
            keras.ops.convert_to_numpy(to_hsv(augmented / 255))[:, 0, 0])


def test_saturation_jitter_scales_saturation_within_its_bounds_and_keeps_hue():
    before, after = _hsv_of_augmented(saturation_jitter=0.3)
    ratio = after[:, 1] / before[:, 1]
    assert ratio.min() >= 1 / 1.3 - 1e-3 and ratio.max() <= 1.3 + 1e-3
    assert ratio.min() < 0.85 and ratio.max() > 1.15  # both ways, most of the range
    np.testing.assert_allclose(after[:, 0], before[:, 0], atol=1e-4)


def test_hue_jitter_turns_hue_within_its_bounds_and_keeps_saturation():
    before, after = _hsv_of_augmented(hue_jitter=0.02)
    turn = (after[:, 0] - before[:, 0] + 0.5) % 1 - 0.5
    assert np.abs(turn).max() <= 0.02 + 1e-4 and turn.min() < -0.01 and turn.max() > 0.01
    np.testing.assert_allclose(after[:, 1], before[:, 1], atol=1e-4)


@pytest.mark.parametrize("setting, message", [({"saturation_jitter": -0.1}, "saturation_jitter must be at least 0"),
                                              ({"hue_jitter": 0.6}, "hue_jitter must be a share")])
def test_colour_jitter_settings_are_checked(tmp_path, setting, message):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(setting))
    with pytest.raises(SkinLesionError, match=message):
        TrainConfig.load(path)


def test_lesion_boxes_are_mapped_through_the_centred_crop(tmp_path):
    from PIL import Image

    from skinlesion.train import lesion_boxes_in_inputs

    path = tmp_path / "wide.png"
    Image.new("RGB", (400, 150)).save(path)  # twice the model's width: its middle 200 columns are the input
    frame = pd.DataFrame({"path": [path, path], "top": [30, np.nan], "bottom": [120, np.nan],
                          "left": [150, np.nan], "right": [250, np.nan]})
    boxes = lesion_boxes_in_inputs(frame, ModelConfig(height=150, width=200))
    np.testing.assert_allclose(boxes[0], [0.2, 0.25, 0.8, 0.75])
    assert np.isnan(boxes[1]).all()
    assert np.isnan(lesion_boxes_in_inputs(frame[["path"]], ModelConfig())).all()


def test_cached_views_are_cropped_around_the_lesion_before_the_augmentation(ham_dir, tmp_path):
    from types import SimpleNamespace

    from skinlesion.model import load_inputs, tf
    from skinlesion.train import cache_features

    config = ModelConfig(height=16, width=20)
    inputs = keras.Input((16, 20, 3))
    network = SimpleNamespace(frozen=keras.Model(inputs, inputs), prepare=keras.layers.Rescaling(1 / 127.5, offset=-1),
                              config=config)  # caches the scaled pixels
    # a lesion of 0.1 x 0.1 of the frame around (0.45, 0.45): the crop is the smallest one, 0.4, whatever the margin
    frame = pd.DataFrame({"path": sorted((ham_dir / "images").glob("*.jpg"))[:3],
                          "top": 60, "bottom": 75, "left": 80, "right": 100})
    recipe = TrainConfig(views=2, lesion_crop=1.0, rotation=0.0, shift=0.0, zoom=0.0, color_jitter=0.0)
    cache_features(network, frame, 2, recipe, tmp_path / "cache.npy")
    cached = np.load(tmp_path / "cache.npy")
    images = load_inputs(list(frame["path"]), config)
    crops = tf.image.crop_and_resize(images, [[0.25, 0.25, 0.65, 0.65]] * 3, tf.range(3), (16, 20)).numpy()
    np.testing.assert_allclose(cached[0], images / 127.5 - 1, atol=1e-2)  # view 0: the photo as it is
    for cached_view, crop in zip(cached[1], crops):  # the only augmentation left is a random flip
        flips = [np.flip(crop, axes) if axes else crop for axes in ((), (0,), (1,), (0, 1))]
        # the zero-angle rotation and zero shift resample a little (max 0.02 seen); a wrong flip or crop is off by 0.4+
        assert min(np.abs(cached_view - (flip / 127.5 - 1)).max() for flip in flips) < 0.05


def test_cached_views_get_hairs_when_asked_and_the_photo_as_it_is_never_does(ham_dir, tmp_path):
    from types import SimpleNamespace

    from skinlesion.train import cache_features

    inputs = keras.Input((16, 20, 3))
    network = SimpleNamespace(frozen=keras.Model(inputs, inputs), prepare=keras.layers.Rescaling(1 / 127.5, offset=-1),
                              config=ModelConfig(height=16, width=20))  # caches the scaled pixels
    frame = pd.DataFrame({"path": sorted((ham_dir / "images").glob("*.jpg"))[:3]})
    cached = {}
    for share in (0.0, 1.0):
        cache_features(network, frame, 2, TrainConfig(views=2, hair_occluders=share), tmp_path / f"{share}.npy")
        cached[share] = np.load(tmp_path / f"{share}.npy").astype(np.float32)
    plain, hairy = cached[0.0], cached[1.0]
    np.testing.assert_array_equal(hairy[0], plain[0])  # view 0: the photo as it is
    for with_hairs, without in zip(hairy[1], plain[1]):  # the same augmentation, hairs drawn before it
        assert (with_hairs < without - 0.1).any()


def test_cosine_schedule_falls_to_zero_over_the_phase_whatever_validation_does(tmp_path):
    # Val BA is flat (one class), which would halve a plateau's rate; the cosine ignores it. 20 steps an epoch
    _fit_one_direction(tmp_path / "cosine", 4, 0.01, schedule_monitor="val_balanced_accuracy", rate_schedule="cosine")
    rates = pd.read_csv(tmp_path / "cosine" / "phase.log.csv")["learning_rate"]  # at each epoch's end
    np.testing.assert_allclose(rates, 0.005 * (1 + np.cos(np.pi * np.arange(1, 5) / 4)), atol=1e-7)
    _fit_one_direction(tmp_path / "warm", 4, 0.01, warmup_epochs=1, rate_schedule="cosine")
    rates = pd.read_csv(tmp_path / "warm" / "phase.log.csv")["learning_rate"]  # up in epoch 1, then down over 3
    np.testing.assert_allclose(rates, [0.01, 0.0075, 0.0025, 0.0], atol=1e-7)


def test_sampling_draws_each_class_as_often_as_its_weight_asks_and_leaves_the_loss_unweighted():
    labels = np.repeat([0, 1], [900, 100])  # weights 1 and 9: each class should make up half of the draws
    features = np.zeros((2, len(labels), 3), np.float16)
    weights = {0: 1.0, 1: 9.0}
    drawn, epochs = [], 20
    batches = CachedViews(features, labels, weights, batch_size=100, seed=0, weighting="sampling")
    for _ in range(epochs):
        for index in range(len(batches)):
            _, y, w = batches[index]
            assert (w == 1).all()
            drawn.append(y.argmax(1))
        batches.on_epoch_end()
    drawn = np.concatenate(drawn)
    assert len(drawn) == epochs * len(labels)  # an epoch is still n draws
    assert abs((drawn == 1).mean() - 0.5) < 0.02
    _, _, w = CachedViews(features, labels, weights, batch_size=1000, seed=0)[0]  # by default: weighted loss
    assert sorted(set(w.tolist())) == [1.0, 9.0]
    with pytest.raises(ValueError, match="weighting must be one of loss, sampling"):
        CachedViews(features, labels, weights, batch_size=100, seed=0, weighting="oversample")


def test_sampling_shows_an_image_drawn_several_times_in_an_epoch_in_views_drawn_anew():
    labels = np.repeat([0, 1], [99, 1])  # image 99 is drawn about 50 times an epoch
    features = np.broadcast_to(np.arange(8, dtype=np.float16)[:, None, None], (8, 100, 1)).copy()  # value = view
    batches = CachedViews(features, labels, {0: 1.0, 1: 99.0}, batch_size=100, seed=0, weighting="sampling")
    x, y, _ = batches[0]
    shown = x[y.argmax(1) == 1, 0]
    assert len(shown) > 20 and len(set(shown.tolist())) == 8


def test_hairs_are_thin_dark_curves_drawn_over_the_chosen_share_of_photos_only():
    from skinlesion.recipe import draw_hairs

    images = np.full((200, 30, 40, 3), 200.0, np.float32)  # light skin, flat
    hairy = draw_hairs(images, 0.5, np.random.default_rng(0))
    assert hairy.shape == images.shape and (images == 200).all()  # a copy; the input is left alone
    changed = (hairy != images).any(axis=(1, 2, 3))
    assert 0.4 < changed.mean() < 0.6
    darkened = (hairy[changed] < 200).any(-1)
    assert (hairy <= 200 + 1e-3).all()  # hairs only darken
    assert 0.005 < darkened.mean() < 0.35  # thin lines, not blots
    assert (hairy[changed].min(axis=(1, 2, 3)) < 120).all()  # every hairy photo has clearly dark pixels
    assert (draw_hairs(images, 0.0, np.random.default_rng(0)) == images).all()


def test_hair_occluders_must_be_a_share(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"hair_occluders": 1.5}))
    with pytest.raises(SkinLesionError, match="hair_occluders must be a share"):
        TrainConfig.load(path)
