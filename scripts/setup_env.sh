#!/usr/bin/env bash
# Shared set-up for the README commands and CI: a virtual environment with a
# pinned CPU torch (override with GDL_TORCH_VERSION) and this package.
# Source it from the repository root:  . scripts/setup_env.sh [extras]
set -euo pipefail
PY=${PYTHON:-python3}
VENV=${GDL_VENV:-.venv}
TORCH_VERSION=${GDL_TORCH_VERSION:-2.13.0}
EXTRAS=${1:-}
if [ -z "${VIRTUAL_ENV:-}" ]; then
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  # shellcheck disable=SC1091
  . "$VENV/bin/activate"
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
# torch first and pinned: an unpinned resolve would pull a CUDA build.
python -m pip install -q "torch==${TORCH_VERSION}"
python -m pip install -q setuptools wheel
if [ -n "$EXTRAS" ]; then
  python -m pip install -q -e ".[${EXTRAS}]"
else
  python -m pip install -q -e .
fi
