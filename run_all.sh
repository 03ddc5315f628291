#!/usr/bin/env bash
# Regenerate the whole report: set up if needed, then execute notebooks/NN_*.py in order with
# papermill for one profile.
#
#   bash run_all.sh                          # the embedded synthetic default (CPU)
#   bash run_all.sh --profile quick          # minutes: what CI runs
#   bash run_all.sh --profile paper-afhq --data-root /data   # real data, a GPU
#   bash run_all.sh --retrain                # train every network here instead of using weights/
#   bash run_all.sh --profile custom --name mine --data-root my_images [--classifier pkg.mod:make ...]
#                                            # your own images (and classifier): every option run_all.sh
#                                            # does not know goes to `python -m repro custom` (its --help)
#   options: --force (retrain / recompute every stage), --device cpu|cuda, --only 03 (one notebook),
#            --no-setup (use the current environment as it is), --retrain (see below)
#
# Finished stages (trained checkpoints, AttFind results) are reused on a re-run unless --force;
# a stage interrupted half-way has no completion marker and is redone.
# Shipped weights: where weights/<profile>/manifest.json exists (the networks the report needs,
# made by `python -m repro ship-weights`; weights/<profile>/MODEL_CARD.md), every stage not
# finished in runs/<profile> is first verified (sha256) and placed there
# (`python -m repro install-weights`), so it is not trained; a damaged file stops the run.
# --retrain installs nothing and removes what an earlier run installed (unchanged files only):
# every network is trained here (with --force as well, every other stage is recomputed too).
set -euo pipefail
cd "$(dirname "$0")"

profile=default data_root="" force=False device=auto only="" setup=1 retrain=0 custom_name=""
custom_args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --profile) profile="$2"; shift 2 ;;
        --data-root) data_root="$2"; shift 2 ;;
        --device) device="$2"; shift 2 ;;
        --only) only="$2"; shift 2 ;;
        --force) force=True; shift ;;
        --retrain) retrain=1; shift ;;
        --no-setup) setup=0; shift ;;
        --name) custom_name="$2"; shift 2 ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        --*) custom_args+=("$1"); shift  # an option of `python -m repro custom`, with its values
             while [[ $# -gt 0 && $1 != --* ]]; do custom_args+=("$1"); shift; done ;;
        *) echo "run_all.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [[ $profile != custom && ( ${#custom_args[@]} -gt 0 || -n $custom_name ) ]]; then
    echo "run_all.sh: ${custom_args[*]:-} ${custom_name:+--name $custom_name} are options of --profile custom (or unknown; see --help)" >&2
    exit 2
fi

setup_seconds="not run (--no-setup)"
if [[ $setup == 1 ]]; then
    t0=$SECONDS
    source scripts/env.sh
    repro_ensure_env
    setup_seconds="$((SECONDS - t0))"
    echo "[setup] ${setup_seconds} s"
fi
if [[ $profile == custom ]]; then
    # Your own folder (and classifier): check every input, then save the profile as runs/<name>/config.json.
    profile="${custom_name:-custom}"
    python -m repro custom --name "$profile" ${data_root:+--data-root "$data_root"} "${custom_args[@]}" --no-progress || exit 2
fi
python -c "from repro.config import get_profile; get_profile('$profile')" || exit 2

# The default profile's executed notebooks are the committed report; other profiles' go to runs/.
if [[ $profile == default ]]; then out_dir=notebooks fig_dir=figures; else out_dir="runs/$profile/notebooks" fig_dir="runs/$profile/figures"; fi
mkdir -p "$out_dir" "$fig_dir"
times="| notebook | seconds |"$'\n'"|---|---|"
# Figures are files under figures/; the executed notebooks link them instead of embedding every plot.
export REPRO_PROGRESS=0 PYTHONHASHSEED=0 MPLBACKEND=Agg

# What a re-run can reuse: say in run_times.md whether this profile's run folder held anything.
if [[ $force == True ]]; then reused="no (--force)"
elif [[ -n "$(ls -A "runs/$profile" 2>/dev/null)" ]]; then reused="yes, where finished (runs/$profile existed)"
else reused="nothing to reuse (runs/$profile was empty: every stage was computed)"; fi

# Shipped weights (after the note above, which is about what this run folder held before).
if [[ $retrain == 1 || $force == True ]]; then
    python -m repro install-weights --profile "$profile" ${data_root:+--data-root "$data_root"} --remove
    if [[ $retrain == 1 ]]; then shipped="not used (--retrain: every network trained here)"
    else shipped="not used (--force)"; fi
else
    install_log="$(python -m repro install-weights --profile "$profile" ${data_root:+--data-root "$data_root"})" || {
        echo "[weights] could not install the shipped weights of profile $profile (above); re-fetch weights/$profile/ or run with --retrain" >&2
        exit 1
    }
    if [[ -n $install_log ]]; then
        echo "$install_log" | sed 's/^/[weights] /'
        shipped="${install_log##*shipped weights: }"
    else shipped="none shipped for this profile"; fi
fi

total=$SECONDS
for src in notebooks/[0-9][0-9]_*.py; do
    name="$(basename "$src" .py)"
    [[ -n $only && $name != "$only"* ]] && continue
    t0=$SECONDS
    echo "[report] $name (profile $profile)"
    tmp="$out_dir/.$name.input.ipynb"
    python -m jupytext --quiet --to ipynb --output "$tmp" "$src"
    if ! python -m papermill "$tmp" "$out_dir/$name.ipynb" -k python3 --language python \
            -p profile "$profile" -p data_root "$data_root" -p device "$device" -p force "$force" \
            --log-level WARNING --no-progress-bar; then
        rm -f "$tmp"
        echo "[report] FAILED in $name: the failing cell and its traceback are in $out_dir/$name.ipynb" >&2
        exit 1
    fi
    rm -f "$tmp"
    echo "[report] $name done in $((SECONDS - t0)) s"
    times+=$'\n'"| $name | $((SECONDS - t0)) |"
done
echo "[report] all notebooks done in $((SECONDS - total)) s; executed notebooks in $out_dir/, figures in $fig_dir/"
if [[ -z $only ]]; then
    # Wall-clock times of this run (finished stages are reused, so a re-run is faster: see --force).
    {
        echo "Profile \`$profile\` on $(nproc --all) CPU cores (torch threads: ${OMP_NUM_THREADS:-default}) ($(python -c 'from repro.utils import pick_device; print(pick_device("'"$device"'"))')), $(date -u +%Y-%m-%d); git commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown); reused finished stages: $reused; shipped weights: $shipped; set-up: ${setup_seconds} s."
        echo
        echo "$times"
        echo "| **all notebooks** | **$((SECONDS - total))** |"
    } > "$fig_dir/run_times.md"
    if [[ $profile == default ]]; then python -m repro readme; fi
fi
