"""The exported graph: the inference copy of the network computes what the network computes, with fewer ops."""

import base64
import json

import numpy as np
import pytest

from conftest import ALPHA_025_WEIGHTS
from skinlesion.export import _layers, export_tfjs, inference_model
from skinlesion.model import ModelConfig, build_network, keras, load_inputs, load_network

pytestmark = pytest.mark.slow


def _count(model, kind) -> int:
    return sum(isinstance(layer, kind) for layer in _layers(model))


def _outputs_match(network, model, images, eagerly: bool = False) -> None:
    expected = network.full.predict(images, verbose=0)
    got = {k: np.asarray(v) for k, v in model(images, training=False).items()} if eagerly else \
        model.predict(images, verbose=0)
    for key in expected:
        # float32 rounding grows with the values and with the network (up to ~2e-5 relative seen on tiny models);
        # a wrong fold is off by whole units. 1e-4 relative to the output's scale, as the export's own check.
        scale = max(1.0, float(np.abs(expected[key]).max()))
        np.testing.assert_allclose(got[key], expected[key], rtol=0, atol=1e-4 * scale, err_msg=key)


def test_batchnorm_and_padding_are_folded_away(tiny_model, ham_dir):
    network = load_network(tiny_model)
    model = inference_model(network)
    assert _count(network.full, keras.layers.BatchNormalization) == 27
    assert _count(model, keras.layers.BatchNormalization) == 0
    assert _count(model, keras.layers.ZeroPadding2D) == 0  # 96x128: every padded side is even
    paths = sorted((ham_dir / "images").glob("*.jpg"))[:4]
    _outputs_match(network, model, load_inputs(paths, network.config))


def test_odd_sides_get_explicit_padding_in_the_convolution():
    """At 90x120 the stride-2 blocks see odd sides, where "same" would pad (1, 1) and not MobileNet's (0, 1): the
    depthwise convolution pads the even side itself. Native TensorFlow cannot run that in a tf.function (its graph
    optimizer aborts), so it is compared eagerly; explicit_padding=False keeps the ZeroPadding2D for native use."""
    network = build_network(ModelConfig(alpha=0.25, height=90, width=120), weights=str(ALPHA_025_WEIGHTS))
    images = np.random.default_rng(1).uniform(0, 255, (2, 90, 120, 3)).astype(np.float32)
    model = inference_model(network)
    assert _count(model, keras.layers.BatchNormalization) == 0
    assert _count(model, keras.layers.ZeroPadding2D) == 0
    _outputs_match(network, model, images, eagerly=True)
    native = inference_model(network, explicit_padding=False)
    # 90x120 -> 45x60 (one side odd: padding kept) -> 22x30 (even: "same") -> 11x15 and 5x7 (both odd: no padding)
    assert _count(native, keras.layers.ZeroPadding2D) == 1
    _outputs_match(network, native, images)


def test_odd_sides_export_to_tfjs_without_a_pad(tmp_path):
    """The explicit padding survives the TF.js converter inside the fused depthwise kernel: no Pad op is left, and
    no pooling is a Mean (TF.js's WASM Mean transposes its input first)."""
    network = build_network(ModelConfig(alpha=0.25, height=90, width=120), weights=str(ALPHA_025_WEIGHTS))
    graph = json.loads((export_tfjs(network, tmp_path) / "model.json").read_text())["modelTopology"]["node"]
    ops = {node["op"] for node in graph}
    assert not ops & {"Pad", "PadV2", "Mean", "DepthwiseConv2dNative", "BatchMatMulV2"}, ops
    paddings = [base64.b64decode(node["attr"]["padding"]["s"]).decode() for node in graph
                if node["op"] == "FusedDepthwiseConv2dNative"]
    assert paddings.count("EXPLICIT") == 1, paddings  # the 45x60 block; the both-odd ones pad nothing ("VALID")


@pytest.mark.parametrize("ood_features", ["frozen", "pooled"])
def test_the_ood_score_reads_the_features_the_config_names(ood_features):
    """By default the frozen ImageNet features at the cut, which fine-tuning leaves alone: a change to the upper
    blocks changes the probabilities but not the out-of-distribution score ("pooled": both change)."""
    network = build_network(ModelConfig(alpha=0.25, height=96, width=128, ood_features=ood_features),
                            weights=str(ALPHA_025_WEIGHTS))
    images = np.random.default_rng(0).uniform(0, 255, (3, 96, 128, 3)).astype(np.float32)
    features = network.embed.predict(images, verbose=0)
    k = network.config.ood_components
    network.set_ood_projection(features.mean(0), np.eye(features.shape[1], k, dtype=np.float32))
    before = network.full.predict(images, verbose=0)
    np.testing.assert_allclose(before["ood_score"][:, 0], np.sum((features - features.mean(0))[:, :k] ** 2, axis=1),
                               rtol=1e-4)
    kernel = network.upper.get_layer("conv_pw_13").kernel  # a fine-tuned layer, above the cut
    kernel.assign(np.random.default_rng(1).normal(0, 0.1, kernel.shape).astype(np.float32))
    after = network.full.predict(images, verbose=0)
    assert not np.allclose(after["probabilities"], before["probabilities"])
    assert np.allclose(after["ood_score"], before["ood_score"]) == (ood_features == "frozen")


def test_mobilenet_v2_is_folded_and_fine_tunes_above_its_cut():
    """MobileNetV2 (residual blocks, "_BN"/"bn_" names, (1, 1) paddings at odd sides): every BatchNorm folds, the
    outputs stay, and only the layers above the cut train (random weights: the graph is what is checked)."""
    network = build_network(ModelConfig(backbone="mobilenet_v2", alpha=0.35, height=90, width=120,
                                        cut_layer="block_5_add"), weights=None)
    network.set_top_trainable(backbone=True)
    trained = {w.path.split("/")[0] for w in network.top.trainable_weights}
    assert "block_6_expand" in trained and "Conv_1" in trained and "logits" in trained
    assert not any(name.startswith(("block_5_", "Conv1", "bn_")) or name.endswith("_BN") for name in trained)
    model = inference_model(network)
    assert _count(network.full, keras.layers.BatchNormalization) == 52
    assert _count(model, keras.layers.BatchNormalization) == 0
    images = np.random.default_rng(2).uniform(0, 255, (2, 90, 120, 3)).astype(np.float32)
    _outputs_match(network, model, images, eagerly=True)


def test_color_constancy_is_part_of_the_exported_graph(tmp_path):
    """With `color_constancy` the model's first layer balances the colours: the inference copy computes the same,
    and the TF.js graph holds it (the browser needs no code of its own for it)."""
    network = build_network(ModelConfig(alpha=0.25, height=96, width=128, color_constancy=6),
                            weights=str(ALPHA_025_WEIGHTS))
    images = np.random.default_rng(2).uniform(0, 200, (2, 96, 128, 3)).astype(np.float32)
    _outputs_match(network, inference_model(network), images)
    warmer = images * np.float32([1.1, 1.0, 0.9])
    np.testing.assert_allclose(network.full.predict(warmer, verbose=0)["probabilities"],
                               network.full.predict(images, verbose=0)["probabilities"], atol=1e-3)
    graph = json.loads((export_tfjs(network, tmp_path) / "model.json").read_text())["modelTopology"]["node"]
    assert "Pow" in {node["op"] for node in graph}
