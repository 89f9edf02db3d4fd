"""Shared fixtures: the HAM10000 copy in ../shared, tiny datasets built from it, a tiny trained model."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
HAM = Path(os.environ.get("HAM10000_DIR", SHARED / "data" / "ham10000"))
SHIPPED_MODEL = ROOT / "model"

# Offline ImageNet weights (Keras honours KERAS_HOME); a user with internet needs none of this.
if "KERAS_HOME" not in os.environ and (SHARED / "weights" / "keras").is_dir():
    os.environ["KERAS_HOME"] = str(SHARED / "weights" / "keras")
ALPHA_025_WEIGHTS = Path(os.environ.get("KERAS_HOME", "~/.keras")).expanduser() / "models" / \
    "mobilenet_2_5_224_tf_no_top.h5"


@pytest.fixture(scope="session")
def ham_dir() -> Path:
    if not (HAM / "HAM10000_metadata.csv").is_file():
        pytest.fail(f"HAM10000 not found at {HAM}; put ../shared beside the repository or set HAM10000_DIR")
    return HAM


def make_subset(ham_dir: Path, folder: Path, per_class: int, layout: str = "images") -> Path:
    """A HAM10000-layout folder with `per_class` images of each class (whole lesions kept together)."""
    metadata = pd.read_csv(ham_dir / "HAM10000_metadata.csv")
    subset = metadata.groupby("dx").head(per_class)
    subset = metadata[metadata["lesion_id"].isin(subset["lesion_id"])]
    folder.mkdir(parents=True, exist_ok=True)
    subset.to_csv(folder / "HAM10000_metadata.csv", index=False)
    for n, image_id in enumerate(subset["image_id"]):
        sub = {"images": "images", "kaggle": f"HAM10000_images_part_{1 + n % 2}"}[layout]
        (folder / sub).mkdir(exist_ok=True)
        shutil.copy(ham_dir / "images" / f"{image_id}.jpg", folder / sub / f"{image_id}.jpg")
    return folder


@pytest.fixture(scope="session")
def tiny_ham(ham_dir: Path, tmp_path_factory) -> Path:
    return make_subset(ham_dir, tmp_path_factory.mktemp("tiny_ham"), per_class=10)


@pytest.fixture(scope="session")
def tiny_model(tiny_ham: Path, tmp_path_factory) -> Path:
    """A model trained end to end on the tiny subset (alpha 0.25, small input): real, fast, not accurate."""
    from skinlesion.model import ModelConfig
    from skinlesion.pipeline import retrain
    from skinlesion.train import TrainConfig

    root = tmp_path_factory.mktemp("tiny_model")
    retrain(tiny_ham, root / "model", root / "run",
            TrainConfig(views=2, head_epochs=2, fine_tune_epochs=1, batch_size=16),
            ModelConfig(alpha=0.25, height=96, width=128), weights=str(ALPHA_025_WEIGHTS))
    return root / "model"
