"""Train the classifier on a lesion-grouped split, fast on a CPU.

The frozen lower MobileNet blocks never change, so their output is computed once per image and view
(`cache_features`: the original plus `views - 1` augmented copies of each training image), and both phases train the
upper blocks and the head on that cache:
- `train_head`: only Dropout + Dense learn (the backbone is frozen);
- `fine_tune`: the upper MobileNet blocks learn too, with BatchNorm kept in inference mode.
Checkpoints (best validation balanced accuracy) go to the run folder, never to git.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.metrics import log_loss

from . import SkinLesionError, log
from .classes import CODES
from .data import BOX_COLUMNS, Split, class_weights
from .evaluate import balanced_accuracy
from .model import ModelConfig, Network, center_crop_box, keras, load_inputs, tf
from .recipe import (OPTIMIZERS, SCHEDULE_MONITORS, TrainConfig, augmentation, draw_hairs, lesion_crop_boxes,
                     training_loss)
from .views import CachedViews

STRATEGIES = ("default", "mirrored", "multi-worker")


def distribution_strategy(name: str, cpu_devices: int = 0) -> tf.distribute.Strategy:
    """The tf.distribute strategy to build and train under.

    default: one device; mirrored: every local GPU (or CPU device) holds a replica, gradients are all-reduced;
    multi-worker: mirrored across the hosts named in the TF_CONFIG environment variable. `cpu_devices` > 1 splits
    the CPU into that many logical devices first (to exercise mirrored training without GPUs); it must be called
    before TensorFlow has run anything.
    """
    if name not in STRATEGIES:
        raise SkinLesionError(f"unknown strategy {name!r}; valid: {', '.join(STRATEGIES)}")
    if cpu_devices > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_devices)
        except RuntimeError as err:
            raise SkinLesionError(f"cannot split the CPU into {cpu_devices} devices: {err}") from None
    if name == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")] or \
            [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi-worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def lesion_boxes_in_inputs(frame: pd.DataFrame, config: ModelConfig) -> np.ndarray:
    """The lesion boxes of `frame` (pixels of each image file) as (y1, x1, y2, x2) shares of the network's input, which
    is the file's centred crop at the model's aspect (`center_crop_box`); NaN rows where a box is missing."""
    boxes = np.full((len(frame), 4), np.nan, np.float32)
    if not all(c in frame.columns for c in BOX_COLUMNS):
        return boxes
    for i, (path, top, bottom, left, right) in enumerate(frame[["path", *BOX_COLUMNS]].itertuples(index=False)):
        if pd.notna(top):
            with Image.open(path) as image:  # reads the header only
                x0, y0, crop_w, crop_h = center_crop_box(*image.size, config.width, config.height)
            boxes[i] = np.clip([(top - y0) / crop_h, (left - x0) / crop_w, (bottom - y0) / crop_h,
                                (right - x0) / crop_w], 0, 1)
    return boxes


def cache_features(network: Network, frame: pd.DataFrame, views: int, config: TrainConfig, path: Path,
                   chunk: int = 128) -> None:
    """Writes frozen-backbone features, float16 (views, n, h, w, c), to the .npy file `path`: view 0 of the images
    as they are, the rest augmented (with `config.lesion_crop`, a share of them first cropped around the lesion box
    of `frame`'s columns top, bottom, left, right; with `config.hair_occluders`, a share with hairs drawn over them
    next). Filled through a memory map: 8 views of the training split at 150 x 200 are 13 GB, more than fits in
    memory beside the training.
    """
    augmentation_layers = augmentation(config)
    augment = tf.function(lambda images: augmentation_layers(images, training=True))  # graph mode: ~3x faster
    paths = list(frame["path"])
    lesions = lesion_boxes_in_inputs(frame, network.config) if config.lesion_crop else None
    crop_rng = np.random.default_rng(config.seed + 6)  # the same seed as saturation's layer, another generator
    hair_rng = np.random.default_rng([config.seed, 8])  # a stream of its own: views without hairs stay as they were
    out = np.lib.format.open_memmap(path, "w+", np.float16, (views, len(paths), *network.frozen.output.shape[1:]))
    for start in range(0, len(paths), chunk):
        images = load_inputs(paths[start:start + chunk], network.config)
        for view in range(views):
            batch = images
            if view:
                if lesions is not None:
                    crops = lesion_crop_boxes(lesions[start:start + len(images)], config.lesion_crop, crop_rng)
                    batch = tf.image.crop_and_resize(batch, crops, tf.range(len(images)), images.shape[1:3])
                if config.hair_occluders:
                    batch = draw_hairs(np.asarray(batch), config.hair_occluders, hair_rng)
                batch = augment(batch)
            out[view, start:start + len(images)] = network.frozen.predict(network.prepare(batch), batch_size=64,
                                                                          verbose=0)
        log.info("  cached %d/%d images x %d view(s)", min(start + chunk, len(paths)), len(paths), views)
    out.flush()


class LinearWarmUp(keras.callbacks.Callback):
    """Raises the learning rate linearly from ~0 to `target` over the first `epochs` epochs, batch by batch.

    Softens the first steps on freshly unfrozen blocks. On its own it did not stop the ~20-point drop of validation
    balanced accuracy after the first fine-tuning epoch (docs/experiments.md, e3). After the warm-up
    ReduceLROnPlateau owns the learning rate.
    """

    def __init__(self, target: float, epochs: int, steps_per_epoch: int):
        super().__init__()
        self.target, self.total_steps, self.epoch = target, epochs * steps_per_epoch, 0
        self.steps_per_epoch = steps_per_epoch

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        step = self.epoch * self.steps_per_epoch + batch + 1
        if step <= self.total_steps:
            self.model.optimizer.learning_rate.assign(self.target * step / self.total_steps)


class ValidationScores(keras.callbacks.Callback):
    """Adds val_balanced_accuracy and val_loss (plain log loss) to the epoch logs, for the checkpoint, LR plateau
    and early stopping, and the learning rate, for the record."""

    def __init__(self, features: np.ndarray, labels: np.ndarray):
        super().__init__()
        self.features, self.labels = features, labels

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        probabilities = self.model.predict(self.features, batch_size=64, verbose=0)
        score = balanced_accuracy(self.labels, probabilities.argmax(1))
        loss = log_loss(self.labels, probabilities, labels=range(probabilities.shape[1]))
        if logs is not None:  # and the rate at the epoch's end, before a plateau may lower it
            logs.update(val_balanced_accuracy=score, val_loss=loss,
                        learning_rate=float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))
        log.info("  epoch %d: val balanced accuracy %.4f, val loss %.4f", epoch + 1, score, loss)


def _fit_phase(name: str, model: keras.Model, train: CachedViews, val_features: np.ndarray, val_labels: np.ndarray,
               epochs: int, learning_rate: float, config: TrainConfig, run_dir: Path, warmup_epochs: int = 0,
               optimizer: str = "adam", ema: float = 0.0, schedule_monitor: str = "val_balanced_accuracy",
               rate_schedule: str = "plateau", layer_decay: float = 1.0, anchor_decay: float = 0.0) -> dict:
    """One training phase; leaves the best-on-validation weights (or their moving average, `ema` > 0) in `model`.
    `layer_decay` < 1 slows the lower backbone blocks (recipe.LayerRateDecay); `anchor_decay` > 0 pulls the backbone
    back towards the weights it starts the phase with (recipe.AnchorDecay).

    The checkpoint keeps the best val balanced accuracy; EarlyStopping watches `schedule_monitor` (val_balanced_accuracy
    or val_loss), and so does ReduceLROnPlateau with `rate_schedule` "plateau"; with "cosine" the rate falls from
    `learning_rate` to 0 over the phase's `epochs` (after the warm-up), whatever validation does.

    A finished phase is recorded in run_dir and skipped when the run is resumed; an interrupted one resumes from its
    last finished epoch (BackupAndRestore).
    """
    checkpoint, done = run_dir / f"{name}.weights.h5", run_dir / f"{name}.done.json"
    if done.is_file() and checkpoint.is_file():
        model.load_weights(checkpoint)
        log.info("%s: already done in this run folder, skipped", name)
        return json.loads(done.read_text())
    best = dict(monitor="val_balanced_accuracy", mode="max")
    schedule = dict(monitor=schedule_monitor, mode=SCHEDULE_MONITORS[schedule_monitor])
    rate = learning_rate
    if rate_schedule == "cosine":  # the warm-up, if any, rises linearly from 0 to the rate
        rate = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup_epochs else learning_rate, (epochs - warmup_epochs) * len(train), alpha=0.0,
            warmup_target=learning_rate if warmup_epochs else None, warmup_steps=warmup_epochs * len(train))
    model.compile(
        optimizer=OPTIMIZERS[optimizer](rate, layer_decay=layer_decay, anchor_decay=anchor_decay,
                                        **({"use_ema": True, "ema_momentum": ema} if ema else {})),
        loss=training_loss(config, train.labels),
        metrics=["accuracy"],
    )
    callbacks = [
        ValidationScores(val_features, val_labels),  # first: the others read its values
        *([keras.callbacks.ReduceLROnPlateau(factor=0.5, patience=2, min_lr=1e-5, **schedule)]
          if rate_schedule == "plateau" else []),
        keras.callbacks.ModelCheckpoint(checkpoint, save_best_only=True, save_weights_only=True, **best),
        keras.callbacks.EarlyStopping(patience=config.early_stopping_patience, **schedule),
        keras.callbacks.CSVLogger(run_dir / f"{name}.log.csv", append=True),
        keras.callbacks.BackupAndRestore(run_dir / f"{name}.backup"),
    ]
    if ema:  # first of all: the averaged weights are in the model while the others look at it at an epoch's end
        callbacks.insert(0, keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
    if warmup_epochs and rate_schedule == "plateau":  # a cosine schedule warms up by itself
        callbacks.append(LinearWarmUp(learning_rate, warmup_epochs, len(train)))
    started = time.perf_counter()
    history = model.fit(train, epochs=epochs, callbacks=callbacks, verbose=0)
    model.load_weights(checkpoint)
    scores = list(pd.read_csv(run_dir / f"{name}.log.csv")["val_balanced_accuracy"])
    result = {"epochs": len(scores), "best_epoch": int(np.argmax(scores)) + 1,
              "best_val_balanced_accuracy": float(max(scores)), "wall_time_s": round(time.perf_counter() - started, 1)}
    del history
    done.write_text(json.dumps(result) + "\n")
    log.info("%s: %s", name, result)
    return result


def _cached(path: Path, write) -> np.ndarray:
    """The array file `path` in the run folder, memory-mapped; `write(partial_path)` makes it first if an earlier
    (interrupted) run did not. Written under another name and renamed when complete, so that an interrupted run
    never reuses half of one."""
    if path.is_file():
        log.info("  reusing %s", path.name)
    else:
        partial = path.with_name(path.stem + ".partial.npy")
        write(partial)
        partial.rename(path)
    return np.load(path, mmap_mode="r")


def _pooled(network: Network, features: np.ndarray, batch_size: int = 64, chunk: int = 1024) -> np.ndarray:
    """Pooled features (views, n, channels) of cached cut-layer features (views, n, h, w, c), frozen upper blocks.

    Read `chunk` images at a time (a multiple of `batch_size`, so the batches are the same as without chunks): one
    whole view in float32 is 3.5 GB at 150 x 200 and 8 GB at 225 x 300, which predict() copies once more; that
    ran a 24 GB machine out of memory (u1, docs/experiments.md)."""
    return np.stack([np.concatenate([network.pool.predict(view[start:start + chunk].astype(np.float32),
                                                          batch_size=batch_size, verbose=0)
                                     for start in range(0, len(view), chunk)])
                     for view in features])


def _check_run_folder(run_dir: Path, split: Split) -> None:
    """Refuse a run folder whose feature caches were made from other data (another --data or --extra-data): their
    rows would be read as this split's images. Only the image counts can be compared."""
    for name, part in (("train", split.train), ("val", split.val)):
        path = run_dir / f"cache_{name}.npy"
        if path.is_file() and (cached := np.load(path, mmap_mode="r").shape[1]) != len(part):
            raise SkinLesionError(f"{path} holds {cached} images, the {name} split {len(part)}: this run folder's "
                                  f"cache was made from other data; pass the --data and --extra-data it was made "
                                  f"from, or another --run-dir")


def lesion_subset(groups: np.ndarray, share: float, seed: int) -> np.ndarray:
    """Sorted row indices of a random `share` of the lesion groups (all photos of a drawn lesion together)."""
    unique = np.unique(groups)
    rng = np.random.default_rng([seed, 2])  # a stream of its own ([seed, 1] is CachedViews' Cutout)
    drawn = rng.choice(unique, max(1, round(share * len(unique))), replace=False)
    return np.flatnonzero(np.isin(groups, drawn))


def train(network: Network, split: Split, config: TrainConfig, run_dir: Path) -> dict:
    """Cache features, train the head, fine-tune the upper blocks; returns per-stage facts (times, best epochs).

    Everything is kept in `run_dir`; calling it again with the same run_dir resumes an interrupted run.
    """
    keras.utils.set_random_seed(config.seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    _check_run_folder(run_dir, split)  # before the folder's config is overwritten
    config.save(run_dir)  # a resumed run (--resume) continues with the config it started with
    stages: dict[str, dict] = {}

    started = time.perf_counter()
    # Recorded, so that the report's wall time is not read as a from-scratch retrain when this stage was skipped
    reused_cache = (run_dir / "cache_train.npy").is_file()
    log.info("caching frozen features: train x %d views, validation", config.views)
    train_features = _cached(run_dir / "cache_train.npy",
                             lambda path: cache_features(network, split.train, config.views, config, path))
    val_features = _cached(run_dir / "cache_val.npy",
                           lambda path: cache_features(network, split.val, 1, config, path))[0]
    val_features = val_features.astype(np.float32)
    stages["cache_features"] = {"wall_time_s": round(time.perf_counter() - started, 1),
                                "train_views": config.views, "bytes": int(train_features.nbytes),
                                "reused": reused_cache}

    train_labels, val_labels = split.train["label"].to_numpy(), split.val["label"].to_numpy()

    started = time.perf_counter()
    network.set_top_trainable(backbone=False)
    # Saved too: a resumed run (or one that reuses this run's cache) skips the 5-7 minutes this takes.
    pooled_train = _cached(run_dir / "pooled_train.npy", lambda path: np.save(path, _pooled(network, train_features)))
    pooled_val = _cached(run_dir / "pooled_val.npy",
                         lambda path: np.save(path, _pooled(network, val_features[None])[0]))
    stages["pool_features"] = {"wall_time_s": round(time.perf_counter() - started, 1)}

    if config.train_share < 1:  # after the caches, which hold every training image; copied into memory
        started = time.perf_counter()
        kept = lesion_subset(split.train["group"].to_numpy(), config.train_share, config.seed)
        train_features, pooled_train, train_labels = (np.take(train_features, kept, axis=1), pooled_train[:, kept],
                                                      train_labels[kept])
        stages["train_subset"] = {"share": config.train_share, "images": len(kept),
                                  "lesions": int(split.train["group"].iloc[kept].nunique()),
                                  "wall_time_s": round(time.perf_counter() - started, 1)}
        log.info("training on %d of %d training images (train_share %s)", len(kept), len(split.train),
                 config.train_share)
    weights = class_weights(train_labels, config.class_weight_power, config.class_weight_boost)
    log.info("class weights: %s", {CODES[k]: round(v, 2) for k, v in weights.items()})

    def batches(views: np.ndarray, cutout: float = 0.0) -> CachedViews:
        return CachedViews(views, train_labels, weights, config.batch_size, config.training_seed, config.mixup, cutout,
                           config.class_weighting)

    stages["train_head"] = _fit_phase("train_head", network.head, batches(pooled_train), pooled_val, val_labels,
                                      config.head_epochs, config.head_learning_rate, config, run_dir)
    network.set_top_trainable(backbone=True)
    stages["fine_tune"] = _fit_phase("fine_tune", network.top, batches(train_features, config.feature_cutout),
                                     val_features, val_labels, config.fine_tune_epochs,
                                     config.fine_tune_learning_rate, config, run_dir,
                                     config.fine_tune_warmup_epochs, config.fine_tune_optimizer, config.fine_tune_ema,
                                     config.fine_tune_monitor, config.fine_tune_schedule,
                                     config.fine_tune_layer_decay, config.fine_tune_anchor_decay)
    return stages
