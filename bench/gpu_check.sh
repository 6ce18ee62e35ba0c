#!/usr/bin/env bash
# GPU checklist (issue 18): 20 steps of the `full` profile on ernie-3.0-medium-zh for each AMP mode, recompute off/on,
# 1 and N GPUs; prints tokens/s, peak GPU memory and loss equality. What it runs and checks: bench/gpu_check.py.
#   bench/gpu_check.sh --dry-run            # print the commands only (works on CPU)
#   bench/gpu_check.sh --gpus 0,1,2,3       # run them (GPU ids count within CUDA_VISIBLE_DEVICES, which is never unset)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
exec "$PY" bench/gpu_check.py "$@"
