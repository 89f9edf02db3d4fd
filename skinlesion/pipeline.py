"""The stages put together: retrain (data -> split -> train -> calibrate -> evaluate -> export) and evaluate a folder.

A retrain writes the new model into the run folder first and replaces the model folder only when everything
succeeded, so a failed or interrupted retrain leaves the shipped model as it was.
"""

from __future__ import annotations

import datetime
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from . import SkinLesionError, log
from .data import load_metadata, split_by_lesion
from .evaluate import (
    bootstrap_intervals,
    fit_temperature,
    melanoma_threshold,
    metrics,
    plot_confusion_matrices,
    plot_reliability,
    write_report,
)
from .export import TFJS_DIR, export_tfjs, model_bytes, read_metadata
from .model import ModelConfig, Network, build_network, load_inputs, load_network, predict
from .train import TrainConfig, train

SPLIT_NAME = "split.csv"


def _predict_frame(network: Network, frame: pd.DataFrame, chunk: int = 256) -> np.ndarray:
    """Probabilities for every image of a frame, read from disk in chunks (bounded memory)."""
    paths = list(frame["path"])
    parts = [predict(network, load_inputs(paths[i:i + chunk], network.config)) for i in range(0, len(paths), chunk)]
    return np.concatenate(parts) if parts else np.empty((0, 7), np.float32)


def retrain(data_dir: Path, model_dir: Path, run_dir: Path, train_config: TrainConfig = TrainConfig(),
            model_config: ModelConfig = ModelConfig(), weights: str = "imagenet",
            quantization: str = "float16") -> dict:
    """Train, calibrate on validation, evaluate on test, export; returns the report written into `model_dir`."""
    started = time.perf_counter()
    frame = load_metadata(Path(data_dir))
    split = split_by_lesion(frame, seed=train_config.seed)
    network = build_network(model_config, weights=weights)
    stages = train(network, split, train_config, run_dir)

    # From here on work with what ships: float16 weights, saved and read back.
    staged = run_dir / "model"
    if staged.exists():
        shutil.rmtree(staged)
    network.save(staged)
    network = load_network(staged)

    t = time.perf_counter()
    val_labels, test_labels = split.val["label"].to_numpy(), split.test["label"].to_numpy()
    temperature = fit_temperature(_predict_frame(network, split.val), val_labels)
    log.info("calibration temperature (fit on validation): %.3f", temperature)
    uncalibrated_test = _predict_frame(network, split.test)
    replace(network.config, temperature=temperature).save(staged)
    network = load_network(staged)
    val_probabilities = _predict_frame(network, split.val)
    mel_threshold = melanoma_threshold(val_probabilities, val_labels, sensitivity=0.85)
    test_probabilities = _predict_frame(network, split.test)
    stages["calibrate_and_evaluate"] = {"wall_time_s": round(time.perf_counter() - t, 1)}

    t = time.perf_counter()
    tfjs_dir = export_tfjs(network, staged, quantization, extra_metadata={"thresholds": {"mel": mel_threshold}})
    stages["export"] = {"wall_time_s": round(time.perf_counter() - t, 1)}

    train_config.save(staged)
    pd.concat([part.assign(split=name)[["image_id", "dx", "group", "split"]]
               for name, part in split.parts().items()]).to_csv(staged / SPLIT_NAME, index=False)
    test = metrics(test_probabilities, test_labels, mel_threshold)
    test["bootstrap_95"] = bootstrap_intervals(test_probabilities, test_labels, seed=train_config.seed)
    report = {
        "model": {"backbone": f"MobileNet v1 alpha {network.config.alpha}", "input": [network.config.height,
                  network.config.width], "fine_tuned_from": network.config.cut_layer,
                  "quantization": quantization, "tfjs_bytes": model_bytes(tfjs_dir),
                  "temperature": temperature},
        "data": {"folder": str(data_dir), "images": int(len(frame))},
        "split": split.summary(),
        "test": test,
        "calibration": {"temperature": temperature, "fit_on": "validation",
                        "test_ece_before": metrics(uncalibrated_test, test_labels)["expected_calibration_error"],
                        "test_ece_after": test["expected_calibration_error"]},
        "plots": {**plot_confusion_matrices(test["confusion_matrix"], staged),
                  **plot_reliability(uncalibrated_test, test_probabilities, test_labels, staged)},
        "training": {"stages": stages, "wall_time_s": round(time.perf_counter() - started, 1),
                     "seed": train_config.seed, "date": datetime.date.today().isoformat()},
    }
    write_report(report, staged)
    if model_dir.exists():
        shutil.rmtree(model_dir)
    shutil.copytree(staged, model_dir)
    log.info("retrain done in %.0f s; model written to %s", report["training"]["wall_time_s"], model_dir)
    return report


def evaluate_folder(model_dir: Path, data_dir: Path, only_test_split: bool = False) -> tuple[dict, int]:
    """Metrics of the model in `model_dir` on the HAM10000-layout folder `data_dir`.

    Returns (metrics, how many of the images the model was trained or tuned on); `only_test_split` keeps just the
    images of the model's own test split (by image_id, from split.csv).
    """
    frame = load_metadata(Path(data_dir))
    network = load_network(model_dir)
    split_csv = Path(model_dir) / SPLIT_NAME
    seen = 0
    if split_csv.is_file():
        assigned = pd.read_csv(split_csv).set_index("image_id")["split"]
        where = frame["image_id"].map(assigned)
        if only_test_split:
            frame = frame[where == "test"]
            if frame.empty:
                raise SkinLesionError(f"none of the images in {data_dir} is in the model's test split")
        seen = int(where.isin(["train", "val"]).sum()) if not only_test_split else 0
    elif only_test_split:
        raise SkinLesionError(f"{split_csv} is missing: cannot tell which images are the test split")
    probabilities = _predict_frame(network, frame)
    mel_threshold = read_metadata(Path(model_dir) / TFJS_DIR).get("thresholds", {}).get("mel")
    return metrics(probabilities, frame["label"].to_numpy(), mel_threshold), seen
