#!/usr/bin/env bash
# README command 2: set up and run the test suite. pytest's exit code 5
# ("no tests collected") is a failure here, never a success.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/setup_env.sh test
set +e
python -m pytest -q -n "${GDL_TEST_WORKERS:-2}" --durations=15 "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$rc"
