#!/usr/bin/env bash
# The test suite: unit and parity tests, then the notebooks on the quick profile under nbval.
# Sets up the environment first if needed (see scripts/env.sh). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/env.sh
repro_ensure_env

echo "[tests] unit and parity tests"
python -m pytest tests -q "$@"

echo "[tests] notebooks on the quick profile (papermill, then nbval)"
bash run_all.sh --profile quick --no-setup
# nbval re-executes each notebook: give it the environment papermill's kernels had (run_all.sh)
PYTHONHASHSEED=0 REPRO_PROGRESS=0 MPLBACKEND=Agg \
    python -m pytest --nbval-lax -q -p no:cacheprovider runs/quick/notebooks/*.ipynb
