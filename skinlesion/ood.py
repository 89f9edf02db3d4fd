"""The out-of-distribution score: how unlike the training images a photo's features are.

The score is a squared Mahalanobis distance of pooled MobileNet features (those `ModelConfig.ood_features` names:
by default the frozen ImageNet ones at the cut) to the training images' features,
in their first k principal axes (the network computes it: `ood_score`, a fixed Dense layer and a sum of squares).
The threshold is a percentile of the validation lesions' scores, so a known share of real lesions is flagged.
"""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA

FLAGGED_SHARE = 0.02  # of the validation lesions, flagged as unlike the training images


def fit_projection(features: np.ndarray, components: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean, projection) with projection (features, k): PCA axes divided by the square root of their variance."""
    pca = PCA(n_components=min(components, *features.shape), random_state=0).fit(features.astype(np.float64))
    # Axes with (almost) no variance (tiny data sets) would get huge weights, beyond float16: floor the variance.
    variance = np.maximum(pca.explained_variance_, pca.explained_variance_[0] * 1e-4)
    projection = pca.components_.T / np.sqrt(variance)
    if projection.shape[1] < components:  # fewer images than axes (tiny data sets): pad with zero axes
        projection = np.pad(projection, ((0, 0), (0, components - projection.shape[1])))
    return pca.mean_, projection


def threshold(validation_scores: np.ndarray, flagged_share: float = FLAGGED_SHARE) -> float:
    """The score above which `flagged_share` of the validation lesions lie."""
    return float(np.quantile(validation_scores, 1 - flagged_share))
