"""Training batches from a few cached views of each image, the way training stays fast on a CPU.

Needs only Keras and NumPy (no TensorFlow), so that `experiments/gpu_sweep.py` can train the same way on another
Keras backend.
"""

from __future__ import annotations

import keras
import numpy as np

from .classes import CODES


class CachedViews(keras.utils.PyDataset):
    """Batches of cached views (views, n, ...), one randomly chosen view per image per epoch, with class-weighted
    samples; with `mixup` > 0 each batch is mixed with itself in another order (mixup, Zhang et al. 2018)."""

    def __init__(self, features: np.ndarray, labels: np.ndarray, weights: dict[int, float], batch_size: int,
                 seed: int, mixup: float = 0.0):
        super().__init__()
        self.features, self.labels = features, labels
        self.one_hot = keras.utils.to_categorical(labels, len(CODES))
        self.sample_weights = np.array([weights[int(y)] for y in labels], np.float32)
        self.batch_size, self.mixup = batch_size, mixup
        self.rng = np.random.default_rng(seed)
        self.on_epoch_end()

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def on_epoch_end(self) -> None:
        self.order = self.rng.permutation(len(self.labels))
        self.view = self.rng.integers(0, self.features.shape[0], len(self.labels))

    def __getitem__(self, index: int):
        rows = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        x = self.features[self.view[rows], rows].astype(np.float32)
        y, w = self.one_hot[rows], self.sample_weights[rows]
        if self.mixup:
            share = self.rng.beta(self.mixup, self.mixup, len(rows)).astype(np.float32)
            other = self.rng.permutation(len(rows))
            x = _mix(x, x[other], share)
            y, w = _mix(y, y[other], share), _mix(w, w[other], share)
        return x, y, w


def _mix(a: np.ndarray, b: np.ndarray, share: np.ndarray) -> np.ndarray:
    """share * a + (1 - share) * b, one share per row."""
    share = share.reshape(-1, *([1] * (a.ndim - 1)))
    return share * a + (1 - share) * b
