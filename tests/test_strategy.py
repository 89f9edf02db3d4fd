"""Training under tf.distribute: mirrored over two logical CPU devices (the way several GPUs would be used)."""

import json
import subprocess
import sys

import pytest

from conftest import ALPHA_025_WEIGHTS, ROOT

pytestmark = pytest.mark.slow

SCRIPT = """
import json, sys
from pathlib import Path
from skinlesion.pipeline import retrain
from skinlesion.recipe import TrainConfig
from skinlesion.train import distribution_strategy
strategy = distribution_strategy("mirrored", cpu_devices=2)
report = retrain(Path(sys.argv[1]), Path(sys.argv[2]) / "model", Path(sys.argv[2]) / "run",
                 TrainConfig(views=1, head_epochs=1, fine_tune_epochs=1, batch_size=16,
                             network={"alpha": 0.25, "height": 64, "width": 96}),
                 weights=sys.argv[3], strategy=strategy)
print(json.dumps(report["training"]))
"""


def test_mirrored_training_on_two_cpu_devices(tiny_ham, tmp_path):
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tiny_ham), str(tmp_path), str(ALPHA_025_WEIGHTS)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    training = json.loads(done.stdout.strip().splitlines()[-1])
    assert training["replicas"] == 2
    assert training["stages"]["fine_tune"]["epochs"] == 1
    assert (tmp_path / "model" / "tfjs" / "model.json").is_file()


def test_unknown_strategy_is_refused():
    from skinlesion import SkinLesionError
    from skinlesion.train import distribution_strategy

    with pytest.raises(SkinLesionError, match="unknown strategy 'tpu'; valid: default, mirrored, multi-worker"):
        distribution_strategy("tpu")
