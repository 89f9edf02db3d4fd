"""Explore recipes that are too slow to try on 2 CPU cores, on a GPU lent for a few minutes.

This is an exploration harness, not the pipeline: it answers "which larger step is worth a CPU retrain?" by
validation balanced accuracy alone. By default it fine-tunes with fresh augmentations every step; with `--views N`
it trains on N views per photo fixed up front, the way the pipeline trains on a CPU (a few cached views of the
frozen lower blocks), which is what a recipe must be trained like to fit the 60-minute CPU retrain. What it finds
goes into `docs/experiments.md`; a recipe is adopted only by implementing it in `skinlesion/train.py` and
retraining with `build.py --retrain`.

It runs on any Keras 3 backend (the lent machine has JAX and PyTorch, no TensorFlow), so it imports nothing from
the pipeline that needs TensorFlow. The steps:

    # here, next to ../shared: .gpu/ with the split (train + validation only: the test images never leave this
    # machine), those images, the ImageNet weights as float16 arrays, and the Keras wheels the device lacks
    KERAS_HOME=../shared/weights/keras .venv/bin/python experiments/gpu_sweep.py stage --data ../shared/data/ham10000
    # there, through the device tool: run(command="bash experiments/gpu_sweep.sh", carry=[".gpu"], timeout_s=540)
    # (four processes share the GPU; each writes one JSON of per-epoch validation figures per recipe to $OUT), or one
    KERAS_BACKEND=jax python3 experiments/gpu_sweep.py run --recipes v1-150-cut4 --views 5 --out "$OUT"
    # here: what an epoch of each recipe would cost on this machine's CPUs (the 60-minute retrain budget)
    .venv/bin/python experiments/gpu_sweep.py cost
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from skinlesion.classes import CODES  # noqa: E402  (these modules need no TensorFlow)
from skinlesion.data import class_weights  # noqa: E402
from skinlesion.recipe import TrainConfig, augmentation, training_loss  # noqa: E402
from skinlesion.views import CachedViews  # noqa: E402

STAGE = Path(__file__).resolve().parents[1] / ".gpu"
# name -> (backbone, height, width, last frozen layer or None for "all blocks learn")
RECIPES = {
    "v1-150-cut4": ("v1", 150, 200, "conv_pw_4_relu"),  # the pipeline's network (e8), fresh augmentations
    "v1-192-cut6": ("v1", 192, 256, "conv_pw_6_relu"),  # the pipeline's network up to e2s
    "v1-192-cut3": ("v1", 192, 256, "conv_pw_3_relu"),
    "v1-192-all": ("v1", 192, 256, None),
    "v1-240-all": ("v1", 240, 320, None),
    "v1-288-all": ("v1", 288, 384, None),
    "v2-192-all": ("v2", 192, 256, None),
    "v2-240-all": ("v2", 240, 320, None),
}
# The pipeline's settings (TrainConfig's defaults), so that the recipes differ from it in one thing each; only the
# epochs are the harness's own (a short head phase, room for slower learners).
PIPELINE = TrainConfig()
BATCH, SEED = PIPELINE.batch_size, PIPELINE.seed
HEAD_EPOCHS, TUNE_EPOCHS = 5, 30
DROPOUT = 0.25  # ModelConfig.dropout (skinlesion/model.py, which needs TensorFlow)


def stage(data_dir: Path) -> None:
    """Write .gpu/: split.csv (train + val), images.npz (their JPEG files), weights_v1/_v2.npz (float16)."""
    import keras

    from skinlesion.data import load_metadata, split_by_lesion  # TensorFlow-free too, but needs the whole dataset

    split = split_by_lesion(load_metadata(data_dir), seed=SEED)
    STAGE.mkdir(exist_ok=True)
    frame = pd.concat([split.train.assign(part="train"), split.val.assign(part="val")])
    frame[["image_id", "label", "part"]].to_csv(STAGE / "split.csv", index=False)
    # One file of the JPEG bytes end to end: thousands of small files cost more to ship than their bytes.
    encoded = [Path(path).read_bytes() for path in frame["path"]]
    np.savez(STAGE / "images.npz", blob=np.frombuffer(b"".join(encoded), np.uint8),
             ends=np.cumsum([len(e) for e in encoded]))
    for name, builder in (("v1", keras.applications.MobileNet), ("v2", keras.applications.MobileNetV2)):
        base = builder(input_shape=(224, 224, 3), include_top=False, weights="imagenet")
        np.savez(STAGE / f"weights_{name}.npz", *[w.astype(np.float16) for w in base.get_weights()])
    wheels = ["keras==3.15.1", "namex==0.1.0", "optree==0.20.0"]  # Keras 3 and what the device image lacks of its needs
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64",
                    "--platform", "manylinux_2_17_x86_64", "-d", str(STAGE / "whl"), *wheels], check=True)
    print(f"staged {len(frame)} images (the test split left out), the weights and {len(wheels)} wheels in {STAGE}")


def _decode(encoded: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(encoded)) as image:
        return np.asarray(image.convert("RGB").resize((200, 150), Image.BILINEAR)
                          if image.size != (200, 150) else image.convert("RGB"))


def _network(recipe: str, augment: bool = True):
    """(model, its MobileNet, index of the first layer fine-tuning trains); the model takes 200x150 photos and,
    with `augment`, augments them afresh at every training step."""
    import keras

    backbone, height, width, cut = RECIPES[recipe]
    builder = keras.applications.MobileNet if backbone == "v1" else keras.applications.MobileNetV2
    base = builder(input_shape=(height, width, 3), include_top=False, weights=None)
    with np.load(STAGE / f"weights_{backbone}.npz") as arrays:
        base.set_weights([arrays[f"arr_{i}"].astype(np.float32) for i in range(len(arrays.files))])
    images = keras.Input((150, 200, 3))
    x = keras.layers.Resizing(height, width, interpolation="bilinear")(images)
    if augment:
        x = augmentation(PIPELINE)(x)  # active in training only
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(x)
    x = keras.layers.GlobalAveragePooling2D()(base(x))
    x = keras.layers.Dropout(DROPOUT)(x)
    model = keras.Model(images, keras.layers.Dense(len(CODES), activation="softmax")(x))
    names = [layer.name for layer in base.layers]
    first_tuned = names.index(cut) + 1 if cut else 0
    return model, base, first_tuned


def _set_trainable(base, first_tuned: int | None) -> None:
    """Layers from `first_tuned` on learn (None: none do); BatchNorm never does, so it stays in inference mode
    (the shared v1/v2 weights hold folded BN: see ../shared/weights/README.md)."""
    import keras

    base.trainable = True
    for i, layer in enumerate(base.layers):
        layer.trainable = (first_tuned is not None and i >= first_tuned
                           and not isinstance(layer, keras.layers.BatchNormalization))


def _fixed_views(images: np.ndarray, views: int) -> np.ndarray:
    """(views, n, 150, 200, 3) uint8: the photos, then views - 1 augmented copies drawn once, as the pipeline caches
    them (it augments after resizing to the model's input and keeps float16 features; close enough to compare)."""
    import keras

    augment = augmentation(PIPELINE)
    copies = [images]
    for _ in range(views - 1):
        copies.append(np.concatenate([
            np.clip(np.round(keras.ops.convert_to_numpy(augment(images[i:i + 256].astype(np.float32), training=True))),
                    0, 255).astype(np.uint8) for i in range(0, len(images), 256)]))
    return np.stack(copies)


def run_recipe(recipe: str, out: Path, deadline: float, limit: int = 0, views: int = 0) -> dict:
    """Train `recipe` with fresh augmentations every step, or (views > 0) on that many views fixed up front, like the
    pipeline's cache; writes out/NAME.json after every epoch."""
    import keras
    from sklearn.metrics import balanced_accuracy_score

    keras.utils.set_random_seed(SEED)
    split = pd.read_csv(STAGE / "split.csv")
    with np.load(STAGE / "images.npz") as packed:
        blob, ends = packed["blob"].tobytes(), packed["ends"]
    with ThreadPoolExecutor(8) as pool:
        images = np.stack(list(pool.map(_decode, [blob[a:b] for a, b in zip([0, *ends[:-1]], ends)])))
    if limit:  # a smoke test: every limit-th image
        split, images = split[::limit], images[::limit]
    labels = split["label"].to_numpy()
    train, val = (split["part"] == "train").to_numpy(), (split["part"] == "val").to_numpy()
    x_train, y_train = images[train], labels[train]
    weights = class_weights(y_train, PIPELINE.class_weight_power, PIPELINE.class_weight_boost)
    x_val, y_val = images[val], labels[val]

    model, base, first_tuned = _network(recipe, augment=not views)
    # one view per photo when fresh (the model augments it at every step), else the views fixed up front
    batches = CachedViews(_fixed_views(x_train, views) if views else x_train[None], y_train, weights, BATCH, SEED)
    name = f"{recipe}-views{views}" if views else recipe
    history: list[dict] = []
    result = {"recipe": recipe, "views": views or "fresh", "backend": keras.backend.backend(),
              "train": int(train.sum()), "val": int(val.sum()), "epochs": history}

    class Validate(keras.callbacks.Callback):
        def __init__(self, phase: str):
            super().__init__()
            self.phase, self.started = phase, time.time()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            predicted = self.model.predict(x_val, batch_size=128, verbose=0).argmax(1)
            score = float(balanced_accuracy_score(y_val, predicted))
            logs["val_balanced_accuracy"] = score
            history.append({"phase": self.phase, "epoch": epoch + 1, "val_ba": round(score, 4),
                            "val_acc": round(float((predicted == y_val).mean()), 4),
                            "lr": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
                            "s": round(time.time() - self.started, 1)})
            print(name, history[-1], flush=True)
            (out / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
            if time.time() > deadline:
                self.model.stop_training = True
                result["stopped_by_deadline"] = True

    monitor = dict(monitor="val_balanced_accuracy", mode="max")
    for phase, tuned, epochs, rate in (("head", None, HEAD_EPOCHS, PIPELINE.head_learning_rate),
                                       ("fine_tune", first_tuned, TUNE_EPOCHS, PIPELINE.fine_tune_learning_rate)):
        _set_trainable(base, tuned)
        model.compile(optimizer=keras.optimizers.Adam(rate), loss=training_loss(PIPELINE, y_train))
        callbacks = [Validate(phase),  # first: the others read its value
                     keras.callbacks.ReduceLROnPlateau(factor=0.5, patience=2, min_lr=1e-5, **monitor),
                     keras.callbacks.EarlyStopping(patience=PIPELINE.early_stopping_patience,
                                                   restore_best_weights=True, **monitor)]
        model.fit(batches, epochs=epochs, callbacks=callbacks, verbose=0)
        if result.get("stopped_by_deadline"):
            break
    tuned = [h for h in history if h["phase"] == "fine_tune"] or history
    best = max(tuned, key=lambda h: h["val_ba"])
    result["best"] = best
    (out / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def epoch_cost(recipe: str, steps: int = 8) -> float:
    """Seconds one fine-tuning epoch of `recipe` takes on this machine, timed over `steps` batches of noise."""
    import keras

    model, base, first_tuned = _network(recipe)
    _set_trainable(base, first_tuned)
    rng = np.random.default_rng(SEED)
    images = rng.integers(0, 256, (BATCH * steps, 150, 200, 3)).astype(np.float32)
    labels = rng.integers(0, len(CODES), BATCH * steps)
    targets = np.eye(len(CODES), dtype=np.float32)[labels]
    model.compile(optimizer=keras.optimizers.Adam(PIPELINE.fine_tune_learning_rate),
                  loss=training_loss(PIPELINE, labels))
    model.fit(images[:BATCH], targets[:BATCH], batch_size=BATCH, verbose=0)  # compiles
    started = time.perf_counter()
    model.fit(images, targets, batch_size=BATCH, verbose=0)
    train_images = (pd.read_csv(STAGE / "split.csv")["part"] == "train").sum()
    return (time.perf_counter() - started) / steps * -(-train_images // BATCH)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    staging = commands.add_parser("stage", help="prepare .gpu/ here (split, train + val images, weights)")
    staging.add_argument("--data", type=Path, required=True)
    running = commands.add_parser("run", help="train the named recipes one after another in this process")
    running.add_argument("--recipes", required=True, help=f"comma-separated, of: {', '.join(RECIPES)}")
    running.add_argument("--out", type=Path, required=True)
    running.add_argument("--until", type=float, default=0.0,
                         help="stop training at this Unix time (default: 8 minutes from now), whatever remains")
    running.add_argument("--limit", type=int, default=0, help="smoke test: train on every LIMIT-th image only")
    running.add_argument("--views", type=int, default=0,
                         help="train on this many views per photo fixed up front, as the pipeline does on a CPU "
                              "(the photo + VIEWS-1 augmented copies); 0: fresh augmentations every step")
    costing = commands.add_parser("cost", help="time a fine-tuning epoch of each named recipe on this machine")
    costing.add_argument("--recipes", default=",".join(RECIPES))
    args = parser.parse_args()
    if args.command == "stage":
        stage(args.data)
        return
    if args.command == "cost":
        import keras

        print(f"seconds per fine-tuning epoch (fresh augmentations, batch {BATCH}), {keras.backend.backend()}:")
        for recipe in args.recipes.split(","):
            print(f"  {recipe}: {epoch_cost(recipe):.0f} s", flush=True)
        return
    deadline = args.until or time.time() + 8 * 60
    args.out.mkdir(parents=True, exist_ok=True)
    for recipe in args.recipes.split(","):
        if recipe not in RECIPES:
            sys.exit(f"unknown recipe {recipe!r}; valid: {', '.join(RECIPES)}")
    for recipe in args.recipes.split(","):
        if time.time() > deadline:
            print("SKIPPED", recipe, "(out of time)", flush=True)
            continue
        result = run_recipe(recipe, args.out, deadline, args.limit, args.views)
        print("BEST", recipe, result["best"], flush=True)


if __name__ == "__main__":
    main()
