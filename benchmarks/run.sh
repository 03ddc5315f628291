#!/usr/bin/env bash
# Every benchmark in benchmarks/ on the device present, then the README's Speed section refreshed.
#
#   bash benchmarks/run.sh            (from anywhere; uses $PYTHON, default: python)
#
# CUDA (torch.cuda.is_available()): paper-size settings. Training of every mode at the default
# and paper-afhq profiles in fp32, and paper-afhq again in tf32 and in bf16 + channels-last,
# 66 iterations each (64 timed: lazy R1 / path-length iterations at their real frequency);
# AttFind at 64 px / 512 channels (16 images x 512 coordinates; screened AttFind on 64 images,
# all 4,608 coordinates); flip rate at 64 px / 512 channels on 1,000 images, k = 10.
# (benchmarks/gpu_check.sh is the short version for a lent GPU: at most 8 minutes.)
# CPU: default sizes (training 18 iterations, 16 timed; AttFind 32 px / 64 channels, 8 images,
# all coordinates, and screened against exact AttFind on 32 images; flip rate 32 px / 64
# channels, 256 images, k = 10) and paper-size training with 3 iterations per mode (one timed:
# read it as a lower bound).
#
# How long it takes: the CPU path took 28.8 minutes on the 2-core AMD EPYC (2026-11-23, RC 0),
# nearly all of it the paper-size training (397-610 s per mode: building the 512-channel networks,
# 3 iterations, and writing the final checkpoint and model.pt). The CUDA path has not been run.
#
# Each script appends its JSON lines to benchmarks/results/; the README table shows the newest.
# Run it on an idle machine: load from other processes moves every number. A benchmark that fails
# is reported and the others still run; the script then exits 1.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python}"
failed=()
step() {
    if ! "$PYTHON" "$@"; then
        failed+=("$*")
    fi
}

if "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "== CUDA: $("$PYTHON" -c 'import torch; print(torch.cuda.get_device_name())')"
    step benchmarks/train_speed.py --device cuda --profiles default paper-afhq --iterations 66
    step benchmarks/train_speed.py --device cuda --profiles paper-afhq --iterations 66 --precision tf32
    step benchmarks/train_speed.py --device cuda --profiles paper-afhq --iterations 66 \
        --precision bf16 --channels-last
    step benchmarks/attfind_speed.py --device cuda --resolution 64 --channels 512 --images 16 --coords 512
    step benchmarks/attfind_screened.py --device cuda --resolution 64 --channels 512 --images 64 \
        --exact-images 4 --reference-images 1 --reference-coords 128 --flip-repeats 0
    step benchmarks/fliprate_speed.py --device cuda --resolution 64 --channels 512 --images 1000 --k 10
else
    echo "== CPU (no CUDA device)"
    step benchmarks/train_speed.py --device cpu --profiles default --iterations 18
    step benchmarks/train_speed.py --device cpu --profiles paper-afhq --iterations 3
    step benchmarks/attfind_speed.py --device cpu
    step benchmarks/attfind_screened.py --device cpu --reference-images 1
    step benchmarks/fliprate_speed.py --device cpu
fi

"$PYTHON" -m repro readme
if ((${#failed[@]})); then
    printf 'failed: %s\n' "${failed[@]}" >&2
    exit 1
fi
