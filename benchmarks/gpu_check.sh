#!/usr/bin/env bash
# A ready GPU check (issue 17, item 4): on a machine with CUDA, in at most 8 minutes, time
#   1. paper-size StylEx training (paper-afhq: 64 px, 512 channels, batch 16, mode stylex) in
#      bf16 + channels_last (benchmarks/train_speed.py, 34 iterations, 32 timed: 2 lazy-R1 and 8
#      path-length iterations among them);
#   2. AttFind at paper size (64 px, 512 channels: S = 4,608 coordinates): the reference path,
#      the exact batched path and screened AttFind (benchmarks/attfind_screened.py, a freshly
#      initialised model: the cost does not depend on the weights);
#   3. the same training in fp32, the baseline of step 1, if the budget still allows;
# and append the records to benchmarks/results/ (train_speed.jsonl, attfind_screened.jsonl).
#
#   bash benchmarks/gpu_check.sh             # on the GPU machine
#   bash benchmarks/gpu_check.sh --dry-run   # anywhere, no GPU: the same steps and flags on the CPU
#                                            # at toy sizes (quick profile, 32 px x 8 channels):
#                                            # about half a CPU minute; records go to a temporary folder
#
# Settings (environment): PYTHON (default python3), RESULTS (records folder, default
# benchmarks/results), BUDGET_S (default 480, 1200 for --dry-run: a step that would start with
# less than a minute left is skipped, and each runs under `timeout` for what is left; the
# install and the checks before the steps count too), ATTFIND_IMAGES (N of the
# screened run, default 64; the paper's 250 renders about 4x as much, which may not fit the
# budget), EXACT_IMAGES (images the exact batched path is timed on, default 4: 36,864 renders;
# exact AttFind on 250 would be 2.3 M). Effective renders/s count N x 2S entries per second.
#
# The lent GPU machine (../shared/spec/ENVIRONMENT.md): Python 3.12 with torch 2.11 and no package
# index. The package is installed with `pip install --no-deps --no-index --no-build-isolation -e .`
# against the torch found there (and read from this checkout through PYTHONPATH either way); lpips
# and papermill are not needed: without lpips the LPIPS term is left out of the training
# iterations, and each training record says so in its "lpips" field. Where the variable OUT names
# a folder (the device tool's), the records are copied there too.
#
# Exit status: 0 when every step ran, 1 when one failed or was skipped, 2 without CUDA.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
PYTHON="${PYTHON:-python3}"
DRY_RUN=0
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY_RUN=1 ;;
        -h|--help) sed -n '2,33p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "gpu_check: unknown argument $arg (use --dry-run or nothing)" >&2; exit 2 ;;
    esac
done
# 8 minutes on the GPU; the CPU rehearsal gets 20 (a busy shared CPU can take several)
BUDGET_S="${BUDGET_S:-$( ((DRY_RUN)) && echo 1200 || echo 480)}"
START=$(date +%s)
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

echo "== gpu_check $( ((DRY_RUN)) && echo '(dry run: CPU, toy sizes)') $(date -u +%FT%TZ) in $ROOT"
if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
    echo "gpu_check: $PYTHON cannot import torch; set PYTHON to the interpreter that has it" >&2
    exit 2
fi
"$PYTHON" - <<'EOF'
import platform, torch
print(f"python {platform.python_version()}, torch {torch.__version__}, CUDA build {torch.version.cuda}, "
      f"cuda available: {torch.cuda.is_available()}")
EOF

if ((DRY_RUN)); then
    DEVICE=cpu
    RESULTS="${RESULTS:-$(mktemp -d)}"
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
    TRAIN=(--profiles quick --modes stylex --iterations 3)
    ATTFIND=(--resolution 32 --channels 8 --images "${ATTFIND_IMAGES:-4}" --exact-images "${EXACT_IMAGES:-4}"
             --reference-images 1 --reference-coords 16 --flip-repeats 1 --flip-images 4 --threads 1)
    # the install, rehearsed without touching this environment (pip >= 22.2 has --dry-run)
    if "$PYTHON" -m pip install --dry-run -q --no-deps --no-index --no-build-isolation -e . >/dev/null 2>&1; then
        echo "pip install --no-deps --no-index --no-build-isolation -e . would succeed here (not run: dry run)"
    else
        echo "pip install --no-deps --no-index --no-build-isolation -e . would fail here; the checkout is used via PYTHONPATH"
    fi
else
    if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
        echo "gpu_check: no CUDA device visible to $PYTHON (torch.cuda.is_available() is False). This check times" >&2
        echo "the GPU and needs one; run it on the GPU machine, or 'bash benchmarks/gpu_check.sh --dry-run' to" >&2
        echo "rehearse the same steps on the CPU." >&2
        exit 2
    fi
    DEVICE=cuda
    RESULTS="${RESULTS:-$ROOT/benchmarks/results}"
    "$PYTHON" -c 'import torch; p = torch.cuda.get_device_properties(0); print(f"GPU: {p.name}, {p.total_memory / 2**30:.0f} GiB")'
    if "$PYTHON" -m pip install -q --no-deps --no-index --no-build-isolation -e . >/dev/null 2>&1; then
        echo "installed repro (pip --no-deps -e .) against torch $("$PYTHON" -c 'import torch; print(torch.__version__)')"
    else
        echo "pip could not install repro here; using the checkout through PYTHONPATH"
    fi
    TRAIN=(--profiles paper-afhq --modes stylex --iterations 34)
    ATTFIND=(--resolution 64 --channels 512 --images "${ATTFIND_IMAGES:-64}" --exact-images "${EXACT_IMAGES:-4}"
             --reference-images 1 --reference-coords 128 --flip-repeats 0)
fi
mkdir -p "$RESULTS"
"$PYTHON" -c 'import repro.attfind, repro.training, repro.precision' \
    || { echo "gpu_check: the repro package does not import with this torch (see above)" >&2; exit 1; }
echo "records: $RESULTS"

failed=()
step() {  # step NAME SECONDS_NEEDED command...: run it under what is left of the budget
    local name="$1" need="$2"
    shift 2
    local left=$((BUDGET_S - ($(date +%s) - START)))
    if ((left < need)); then
        echo "== $name: skipped, ${left}s of the ${BUDGET_S}s budget left (it needs about ${need}s)" >&2
        failed+=("$name (skipped)")
        return
    fi
    echo "== $name (${left}s left)"
    local t0 rc=0
    t0=$(date +%s)
    timeout --signal=INT --kill-after=10 "$left" "$@" || rc=$?
    echo "== $name: exit $rc after $(($(date +%s) - t0))s"
    if ((rc != 0)); then
        failed+=("$name (exit $rc$( ((rc == 124)) && echo ', out of time'))")
    fi
}

step "train bf16 + channels_last" 60 "$PYTHON" benchmarks/train_speed.py --device "$DEVICE" "${TRAIN[@]}" \
    --precision bf16 --channels-last --out "$RESULTS/train_speed.jsonl"
step "attfind exact + screened" 60 "$PYTHON" benchmarks/attfind_screened.py --device "$DEVICE" "${ATTFIND[@]}" \
    --out "$RESULTS/attfind_screened.jsonl"
step "train fp32" 60 "$PYTHON" benchmarks/train_speed.py --device "$DEVICE" "${TRAIN[@]}" \
    --precision fp32 --out "$RESULTS/train_speed.jsonl"

if [[ -n "${OUT:-}" && -d "${OUT:-}" ]]; then
    cp "$RESULTS"/train_speed.jsonl "$RESULTS"/attfind_screened.jsonl "$OUT"/ 2>/dev/null || true
fi
echo "== gpu_check done in $(($(date +%s) - START))s; records in $RESULTS"
if ((${#failed[@]})); then
    printf 'gpu_check: not done: %s\n' "${failed[@]}" >&2
    exit 1
fi
