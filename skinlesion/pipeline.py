"""The stages put together: retrain (data -> split -> train -> calibrate -> evaluate -> export) and evaluate a folder.

A retrain writes the new model into the run folder first and replaces the model folder only when everything
succeeded, so a failed or interrupted retrain leaves the shipped model as it was.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import platform
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd

from . import SkinLesionError, log, ood
from .classes import index_of
from .data import (
    Split,
    add_training_images,
    has_lesion_boxes,
    load_metadata,
    split_by_lesion,
    with_lesion_boxes,
)
from .evaluate import (
    ALERT_CLASSES,
    ALERT_SENSITIVITY,
    CONFIDENT_ACCURACY,
    alert_rates,
    confidence_threshold,
    fit_temperature,
    load_report,
    sensitivity_threshold,
    metrics,
    plot_confusion_matrices,
    plot_reliability,
    report_intervals,
    write_report,
)
from .export import TFJS_DIR, export_tfjs, model_bytes, read_metadata
from .model import ModelConfig, Network, build_network, keras, load_inputs, load_network, predict_all, tf
from .recipe import TRAIN_CONFIG_NAME, TrainConfig
from .robustness import change_tables, lesion_size, report_sections
from .subgroups import subgroup_tables
from .train import train

SPLIT_NAME = "split.csv"


def predict_frame(network: Network, frame: pd.DataFrame, chunk: int = 256) -> dict[str, np.ndarray]:
    """Probabilities and out-of-distribution scores of every image of a frame, read from disk in chunks."""
    paths = list(frame["path"])
    parts = [predict_all(network, load_inputs(paths[i:i + chunk], network.config)) for i in range(0, len(paths), chunk)]
    return {key: np.concatenate([p[key] for p in parts]) for key in ("probabilities", "ood_score")}


def _embed_frame(network: Network, frame: pd.DataFrame, chunk: int = 256) -> np.ndarray:
    paths = list(frame["path"])
    return np.concatenate([network.embed.predict(load_inputs(paths[i:i + chunk], network.config), verbose=0)
                           for i in range(0, len(paths), chunk)])


def retrain(data_dir: Path, model_dir: Path, run_dir: Path, train_config: TrainConfig = TrainConfig(),
            weights: str = "imagenet", quantization: str = "float16",
            strategy: tf.distribute.Strategy | None = None, extra_data: Path | None = None) -> dict:
    """Train the network `train_config.network` describes (under `strategy`, default: one device), then
    `finalize`: returns the report written into model_dir.

    `extra_data`: a second folder of labelled images (e.g. ISIC 2019's training images) added to the training split
    only (`add_training_images`), so that validation and test stay `data_dir`'s split."""
    started = time.perf_counter()
    model_config = ModelConfig.from_settings(train_config.network)
    # Every network setting written out, so that the saved config repeats this retrain even if the defaults change
    train_config = replace(train_config, network={k: v for k, v in asdict(model_config).items() if k != "temperature"})
    # the recipe's lesion crops need the boxes; the report's framing section uses them where the data has them
    split = split_by_lesion(_images(Path(data_dir), boxes_required=train_config.lesion_crop), seed=train_config.seed)
    extra_facts = None
    if extra_data is not None:
        try:
            extra = _images(Path(extra_data))
        except SkinLesionError as err:
            raise SkinLesionError(f"--extra-data {extra_data}: {err}") from None
        split, extra_facts = add_training_images(split, extra)
    # Seeded before the network is built: the classifier's initial weights come from the same random stream, and a
    # retrain with the same seed and config then repeats (unseeded, each run started from another random head).
    keras.utils.set_random_seed(train_config.training_seed)
    with (strategy or tf.distribute.get_strategy()).scope():
        network = build_network(model_config, weights=weights)
        stages = train(network, split, train_config, run_dir)
    if extra_facts is not None:
        stages = {"extra_training_images": {"folder": Path(extra_data).resolve().name, **extra_facts}, **stages}
    replicas = (strategy or tf.distribute.get_strategy()).num_replicas_in_sync
    return finalize(network, split, model_dir, run_dir, train_config, quantization, stages, started, replicas)


def _images(folder: Path, boxes_required: bool = False) -> pd.DataFrame:
    """`load_metadata(folder)`, with the lesion boxes as numbers where the folder has them (or must have them)."""
    frame = load_metadata(folder)
    return with_lesion_boxes(frame, folder) if boxes_required or has_lesion_boxes(folder) else frame


def finalize(network: Network, split: Split, model_dir: Path, run_dir: Path, train_config: TrainConfig,
             quantization: str = "float16", stages: dict | None = None, started: float | None = None,
             replicas: int = 1) -> dict:
    """Everything after training: fit the input warnings and calibration on train/validation, evaluate on test,
    export to TF.js, write the report; then replace `model_dir` with the result."""
    stages = dict(stages or {})
    started = time.perf_counter() if started is None else started
    staged = run_dir / "model"
    if staged.exists():
        shutil.rmtree(staged)

    t = time.perf_counter()
    network.set_ood_projection(*ood.fit_projection(_embed_frame(network, split.train), network.config.ood_components))
    # From here on work with what ships: float16 weights, saved and read back.
    network.save(staged)
    network = load_network(staged)
    val_labels, test_labels = split.val["label"].to_numpy(), split.test["label"].to_numpy()
    temperature = fit_temperature(predict_frame(network, split.val)["probabilities"], val_labels)
    log.info("calibration temperature (fit on validation): %.3f", temperature)
    uncalibrated_test = predict_frame(network, split.test)["probabilities"]
    replace(network.config, temperature=temperature).save(staged)
    network = load_network(staged)
    val, test_out = predict_frame(network, split.val), predict_frame(network, split.test)
    test_probabilities = test_out["probabilities"]
    thresholds = {code: sensitivity_threshold(val["probabilities"], val_labels, index_of(code), ALERT_SENSITIVITY)
                  for code in ALERT_CLASSES}
    uncertain_below = confidence_threshold(val["probabilities"], val_labels, target_accuracy=CONFIDENT_ACCURACY)
    ood_threshold = ood.threshold(val["ood_score"][:, 0])
    stages["calibrate_and_evaluate"] = {"wall_time_s": round(time.perf_counter() - t, 1)}

    t = time.perf_counter()
    changed_photos = report_sections(change_tables(network, split.test, thresholds["mel"], seed=train_config.seed),
                                     len(split.test), lesion_size(split.train, network.config))
    stages["robustness"] = {"wall_time_s": round(time.perf_counter() - t, 1)}

    t = time.perf_counter()
    by_group = subgroup_tables(split.test, test_probabilities, seed=train_config.seed)
    stages["subgroups"] = {"wall_time_s": round(time.perf_counter() - t, 1)}

    t = time.perf_counter()
    tfjs_dir = export_tfjs(network, staged, quantization, extra_metadata={
        "thresholds": thresholds, "uncertain_below": uncertain_below, "ood_threshold": ood_threshold})
    stages["export"] = {"wall_time_s": round(time.perf_counter() - t, 1)}

    train_config.save(staged)
    pd.concat([part.assign(split=name)[["image_id", "dx", "group", "split"]]
               for name, part in split.parts().items()]).to_csv(staged / SPLIT_NAME, index=False)
    test = metrics(test_probabilities, test_labels, thresholds["mel"])
    test.update(report_intervals(test_probabilities, test_labels, split.test["group"].to_numpy(), train_config.seed,
                               thresholds["mel"]))
    confident = test_probabilities.max(1) >= uncertain_below
    report = {
        "model": {"backbone": network.config.backbone_description(), "input": [network.config.height,
                  network.config.width], "fine_tuned_from": network.config.cut_layer,
                  "quantization": quantization, "tfjs_bytes": model_bytes(tfjs_dir),
                  "temperature": temperature},
        # the --data folder's images (a retrain's extra training images are counted in its stages)
        "data": {"images": int(sum(len(p) for p in split.parts().values())
                               - stages.get("extra_training_images", {}).get("added", 0))},
        "split": split.summary(),
        "test": test,
        "calibration": {"temperature": temperature, "fit_on": "validation",
                        "test_ece_before": metrics(uncalibrated_test, test_labels)["expected_calibration_error"],
                        "test_ece_after": test["expected_calibration_error"]},
        "warnings": {  # each threshold was chosen on validation for the target next to it
            "alert_sensitivity_target": ALERT_SENSITIVITY,
            "alert_thresholds": thresholds,
            "alerts_on_test": {code: alert_rates(test_probabilities, test_labels, index_of(code), t)
                               for code, t in thresholds.items()},
            "uncertain_accuracy_target": CONFIDENT_ACCURACY,
            "uncertain_below": uncertain_below,
            "test_share_uncertain": float(1 - confident.mean()),
            "test_accuracy_when_confident": float((test_probabilities.argmax(1) == test_labels)[confident].mean())
            if confident.any() else None,
            "test_accuracy_when_uncertain": float((test_probabilities.argmax(1) == test_labels)[~confident].mean())
            if (~confident).any() else None,
            "ood_flagged_share_target": ood.FLAGGED_SHARE,
            "ood_threshold": ood_threshold,
            "test_share_out_of_distribution": float((test_out["ood_score"][:, 0] > ood_threshold).mean()),
        },
        **changed_photos,
        "subgroups": by_group,
        "plots": {**plot_confusion_matrices(test["confusion_matrix"], staged),
                  **plot_reliability(uncalibrated_test, test_probabilities, test_labels, staged)},
        "training": {"stages": stages, "wall_time_s": round(time.perf_counter() - started, 1),
                     "seed": train_config.seed, "date": datetime.date.today().isoformat(), "replicas": replicas,
                     "software": software_versions()},
    }
    write_report(report, staged)
    if model_dir.exists():
        shutil.rmtree(model_dir)
    shutil.copytree(staged, model_dir)
    log.info("model written to %s (%.0f s since the start)", model_dir, report["training"]["wall_time_s"])
    return report


# What a retrain's figures depend on beyond the code and the config: with these, a reader can rebuild its environment.
SOFTWARE = ("tensorflow", "keras", "tensorflowjs", "numpy", "scikit-learn", "pandas", "pillow")


def software_versions() -> dict[str, str]:
    """Python's version and the installed versions of the packages in SOFTWARE, for the report."""
    return {"python": platform.python_version(), **{name: importlib.metadata.version(name) for name in SOFTWARE}}


def reexport(model_dir: Path) -> Path:
    """Convert the trained network in `model_dir` to TF.js again, as the current export code does, with the same
    quantization and every metadata entry the export does not compute (the thresholds chosen on validation); no
    training, no data. For when the export changed, not the model: the weights, and so every figure in the report,
    stay as they are."""
    model_dir = Path(model_dir)
    old = read_metadata(model_dir / TFJS_DIR)
    tfjs_dir = export_tfjs(load_network(model_dir), model_dir, old["quantization"], extra_metadata=old)
    report = load_report(model_dir)
    report["model"]["tfjs_bytes"] = model_bytes(tfjs_dir)
    write_report(report, model_dir)
    return tfjs_dir


def folder_frame(model_dir: Path, data_dir: Path, only_split: str | None = None) -> tuple[pd.DataFrame, int]:
    """The images of the HAM10000-layout folder `data_dir` (metadata, label, path), for the model in `model_dir`.

    Returns (frame, how many of its images the model was trained or tuned on); `only_split` ("test"; "val" for what
    the shipping rules of docs/experiments.md read; "train") keeps just the images of that split of the model's own
    (by image_id, from split.csv).
    """
    frame = load_metadata(Path(data_dir))
    split_csv = Path(model_dir) / SPLIT_NAME
    seen = 0
    if split_csv.is_file():
        assigned = pd.read_csv(split_csv).set_index("image_id")["split"]
        if only_split:
            frame = frame[frame["image_id"].map(assigned) == only_split]
            if frame.empty:
                raise SkinLesionError(f"none of the images in {data_dir} is in the model's {only_split} split")
        seen = int(frame["image_id"].map(assigned).isin(["train", "val"]).sum())
    elif only_split:
        raise SkinLesionError(f"{split_csv} is missing: cannot tell which images are the {only_split} split")
    return frame, seen


def evaluate_folder(model_dir: Path, data_dir: Path, only_split: str | None = None,
                    intervals: bool = True) -> tuple[dict, int]:
    """Metrics of the model in `model_dir` on the images `folder_frame` selects, with (unless `intervals` is False)
    95% bootstrap intervals that resample their lesions, seeded as the model's retrain seeded its report's; returns
    (metrics, seen) as `folder_frame`."""
    frame, seen = folder_frame(model_dir, data_dir, only_split)
    network = load_network(model_dir)
    probabilities = predict_frame(network, frame)["probabilities"]
    labels = frame["label"].to_numpy()
    mel_threshold = read_metadata(Path(model_dir) / TFJS_DIR).get("thresholds", {}).get("mel")
    result = metrics(probabilities, labels, mel_threshold)
    if intervals:
        config = Path(model_dir) / TRAIN_CONFIG_NAME
        seed = TrainConfig.load(config).seed if config.is_file() else 0
        result.update(report_intervals(probabilities, labels, frame["group"].to_numpy(), seed, mel_threshold))
    return result, seen
