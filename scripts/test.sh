#!/usr/bin/env bash
# README command 2: set up and run the test suite. pytest's exit code 5
# ("no tests collected") is a failure here, never a success.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/setup_env.sh test
set +e
workers="${GDL_TEST_WORKERS:-2}"
# One intra-op thread pool per worker sharing the cores: with torch's default
# (every core for each worker, and for the DDP tests' processes) the workers
# oversubscribe the CPU, and tests/lightning took 4:42 instead of 2:14 on the
# 2-core machine. An OMP_NUM_THREADS already set wins.
if [ -z "${OMP_NUM_THREADS:-}" ] && [[ "$workers" =~ ^[1-9][0-9]*$ ]]; then
  threads=$(( $(nproc) / workers ))
  export OMP_NUM_THREADS=$(( threads > 0 ? threads : 1 ))
fi
python -m pytest -q -n "$workers" --durations=15 "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$rc"
