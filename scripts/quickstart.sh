#!/usr/bin/env bash
# README command 1: set up, train the default model (p4 G-CNN on rotated
# digits, data shipped with scikit-learn) and a plain CNN, print both results.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup_env.sh
python scripts/quickstart.py --compare "$@"
