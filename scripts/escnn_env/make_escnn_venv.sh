#!/usr/bin/env bash
# Side venv in which escnn 1.0.11 (R2Conv on C4 / D4 regular fields) and gdl_pyg
# both import, with torch 2.13.0 CPU and numpy 2 (the main venv's versions).
# Usage: bash scripts/escnn_env/make_escnn_venv.sh [VENV=.venv-escnn] [MAIN=this repository]
# then:  VENV/bin/python scripts/bench_grid.py --threads 1   (the escnn rows run)
# Not a dependency of gdl_pyg: only the peer of the p4 / p4m group-conv benchmark.
set -euo pipefail
VENV=${1:-.venv-escnn}
MAIN=${2:-$(cd "$(dirname "$0")/../.." && pwd)}
HERE=$(cd "$(dirname "$0")" && pwd)
python3.11 -m venv "$VENV"
. "$VENV/bin/activate"
pip install -q torch==2.13.0                  # the local CPU wheel first: never a CUDA one
# the main venv's versions (numpy 2.4.6, scipy 1.17.1, PyG 2.8.1, ...) as constraints
CONS=$(mktemp)
"$MAIN/.venv/bin/pip" freeze --exclude-editable | grep -v "@ file" > "$CONS"
pip install -q -c "$CONS" -e "$MAIN"          # gdl_pyg and its dependencies
pip install -q -c "$CONS" cython setuptools pytest pymanopt autograd
pip install -q --no-deps escnn==1.0.11        # not its deps: lie_learn and py3nj below
bash "$HERE/build_lie_learn_np2.sh"           # lie_learn 0.0.2 rebuilt for numpy 2
# escnn builds the D4 kernel basis with sklearn's randomized_svd on an np.matrix,
# which scikit-learn >= 1.2 rejects (TypeError; escnn issue #112); without
# scikit-learn escnn takes its own scipy.linalg.svd branch. py3nj (SO(3) only)
# has no wheel and is left out: escnn only warns.
pip uninstall -y -q scikit-learn
rm -f "$CONS"
python -c "import escnn, gdl_pyg, numpy, torch; print('escnn ok, numpy', numpy.__version__, 'torch', torch.__version__)"
