"""Training batches from a few cached views of each image, the way training stays fast on a CPU.

Needs only Keras and NumPy (no TensorFlow), so that `experiments/gpu_sweep.py` can train the same way on another
Keras backend.
"""

from __future__ import annotations

import keras
import numpy as np

from .classes import CODES

# How the class weights act: "loss" multiplies each sample's loss by its class's weight; "sampling" draws images
# that much more often instead (balanced sampling when the weights balance the classes fully)
CLASS_WEIGHTINGS = ("loss", "sampling")


class CachedViews(keras.utils.PyDataset):
    """Batches of cached views (views, n, ...): each epoch shows every image once, in a randomly chosen view, with
    class-weighted samples; or, with `weighting` "sampling", n unweighted draws with replacement, each image as
    likely as its weight, each draw in a randomly chosen view (a class weighs in as much on average, and a rare
    class's images come back in several views); with `mixup` > 0 each batch is mixed with itself in another order
    (mixup, Zhang et al. 2018); with
    `cutout` > 0 each feature map (views, n, h, w, c) gets a block of `cutout` times its height and width zeroed at
    a random place, clipped at the borders (Cutout, DeVries and Taylor 2017, on the cached features), so that no
    epoch shows a view exactly as the last one did."""

    def __init__(self, features: np.ndarray, labels: np.ndarray, weights: dict[int, float], batch_size: int,
                 seed: int, mixup: float = 0.0, cutout: float = 0.0, weighting: str = "loss"):
        super().__init__()
        if weighting not in CLASS_WEIGHTINGS:
            raise ValueError(f"weighting must be one of {', '.join(CLASS_WEIGHTINGS)}, not {weighting!r}")
        self.features, self.labels = features, labels
        self.one_hot = keras.utils.to_categorical(labels, len(CODES))
        self.sample_weights = np.array([weights[int(y)] for y in labels], np.float32)
        self.draw_probabilities = None
        if weighting == "sampling":  # the weights move into how often an image is drawn, out of the loss
            self.draw_probabilities = self.sample_weights / self.sample_weights.sum()
            self.sample_weights = np.ones_like(self.sample_weights)
        self.batch_size, self.mixup, self.cutout = batch_size, mixup, cutout
        self.rng = np.random.default_rng(seed)
        self.cutout_rng = np.random.default_rng([seed, 1])  # its own stream: without cutout, runs repeat as before
        self.on_epoch_end()

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def on_epoch_end(self) -> None:
        n = len(self.labels)
        self.order = (self.rng.permutation(n) if self.draw_probabilities is None
                      else self.rng.choice(n, n, p=self.draw_probabilities))
        self.view = self.rng.integers(0, self.features.shape[0], n)

    def __getitem__(self, index: int):
        draws = slice(index * self.batch_size, (index + 1) * self.batch_size)
        rows = self.order[draws]
        # A view per image, or per draw when sampling, so that an image drawn twice shows two views (likely)
        views = self.view[rows] if self.draw_probabilities is None else self.view[draws]
        x = self.features[views, rows].astype(np.float32)
        y, w = self.one_hot[rows], self.sample_weights[rows]
        if self.cutout:
            _cut_out(x, self.cutout, self.cutout_rng)
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


def _cut_out(maps: np.ndarray, size: float, rng: np.random.Generator) -> None:
    """Zeroes, in place, a block of `size` times the height and width of each map (n, h, w, c), centred at a random
    cell and clipped at the borders."""
    n, height, width = maps.shape[:3]
    block_h, block_w = max(1, round(size * height)), max(1, round(size * width))
    tops = rng.integers(0, height, n) - block_h // 2
    lefts = rng.integers(0, width, n) - block_w // 2
    for row, top, left in zip(maps, tops, lefts):
        row[max(0, top):top + block_h, max(0, left):left + block_w] = 0
