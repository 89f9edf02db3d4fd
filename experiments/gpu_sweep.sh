#!/bin/bash
# The device side of experiments/gpu_sweep.py (stage .gpu/ first, here; see its docstring). Four processes share
# the GPU, each trains its recipes in turn until MINUTES (default 6.5) are up; one JSON per recipe lands in $OUT.
until=$(python3 -c "import time; print(time.time() + 60 * ${MINUTES:-6.5})")
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl \
  && export PYTHONPATH=/tmp/site || exit 1
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
nvidia-smi -L
backend=jax  # PyTorch if this Keras does not run on the image's JAX
KERAS_BACKEND=jax python3 -c "import keras, jax; print(keras.__version__, jax.__version__, jax.devices()); \
keras.ops.convert_to_numpy(keras.ops.ones((2, 2)) @ keras.ops.ones((2, 2)))" || backend=torch
echo "backend $backend"
sweep() { KERAS_BACKEND=$backend python3 experiments/gpu_sweep.py run --out "$OUT" --until "$until" "$@"; }
# the pipeline's way (5 fixed views) next to fresh augmentations, on the pipeline's network: the bridge
(sweep --recipes v1-150-cut4 --views 5; sweep --recipes v1-150-cut4) > /tmp/log-bridge.txt 2>&1 &
(sweep --recipes v2-192-all,v1-192-all) > /tmp/log-backbones.txt 2>&1 &
(sweep --recipes v1-240-all,v1-288-all) > /tmp/log-inputs.txt 2>&1 &
(sweep --recipes v2-240-all,v1-192-cut3,v1-192-cut6) > /tmp/log-more.txt 2>&1 &
sleep 90; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv
wait
for f in /tmp/log-*.txt; do echo "== $f"; grep -v "^v[12]-" "$f" | tail -n 8; done
