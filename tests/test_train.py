import json

import numpy as np
import pytest

from skinlesion import SkinLesionError
from skinlesion.model import keras
from skinlesion.train import LinearWarmUp, TrainConfig


class RecordLearningRate(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.rates = []

    def on_train_batch_begin(self, batch, logs=None):
        self.rates.append(float(self.model.optimizer.learning_rate.numpy()))


def test_warmup_rises_linearly_then_hands_over():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    record = RecordLearningRate()  # after the warm-up in the list, so it sees the rate each batch trains with
    x, y = np.zeros((40, 3), np.float32), np.zeros((40, 1), np.float32)
    model.fit(x, y, batch_size=10, epochs=3, verbose=0, callbacks=[LinearWarmUp(0.01, 2, 4), record])
    np.testing.assert_allclose(record.rates[:8], 0.01 * np.arange(1, 9) / 8, rtol=1e-5)
    np.testing.assert_allclose(record.rates[8:], 0.01, rtol=1e-5)


def test_config_file_errors_are_clear(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"fine_tune_optimizer": "rmsprop"}))
    with pytest.raises(SkinLesionError, match="fine_tune_optimizer must be one of adam, sgd"):
        TrainConfig.load(path)
    path.write_text(json.dumps({"fine_tune_optimizer": "sgd", "fine_tune_learning_rate": 0.003}))
    assert TrainConfig.load(path).fine_tune_optimizer == "sgd"
    path.write_text("{not json")
    with pytest.raises(SkinLesionError, match="cannot read training config"):
        TrainConfig.load(path)
