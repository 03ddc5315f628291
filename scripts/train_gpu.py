"""Train every generative model of a profile at once on one GPU, in milestones, within a deadline.

At 32 px a StylEx training step is many small kernels: one process keeps a large GPU
mostly idle, so this runs every model the report needs (each task's modes; the ``stylex`` mode
once per seed of ``profile.seeds``) as its own process side by side. Training goes in
synchronous milestones (e.g. 1500, 3000, 4500): every model is trained to a milestone
(``python -m repro train-stylex --iterations M``, which records M in the model's configuration),
its finished files are copied to ``<out>/it<M>/<task>/<component>/``, its ``model.pt`` is set
aside, and the next milestone resumes from the checkpoint at M (runs resume bit for bit: the EMA
ramp-up depends on the iteration reached, not on the total). A milestone is started only if the
previous one's wall time fits before ``--deadline-s``; at the deadline the running milestone is
stopped (SIGINT: each trainer checkpoints and exits) and ``<out>/it<M>`` of the last milestone
every model reached is what was trained. Set the profile's ``StylExConfig.iterations`` to that M
to ship or use the models (``python -m repro ship-weights``).

The task's classifier must already be trained (``runs/<profile>/<task>/classifier``).

    python scripts/train_gpu.py --profile default --milestones 1500,3000,4500 --deadline-s 400 --out /tmp/models
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RECORDS = ("model.pt", "config.json", "metadata.json", "log.jsonl")


def models(profile) -> list[tuple[str, str, int | None, Path]]:
    """(task, mode, seed, run dir) of every generative model the profile's report trains."""
    out = []
    for task in profile.tasks:
        for mode in task.modes:
            for seed in (profile.seeds if mode == "stylex" else [None]):
                out.append((task.name, mode, seed, profile.model_dir(task.name, mode, seed)))
    return out


def run_milestone(profile_name: str, jobs, iterations: int, device: str, deadline: float, logs: Path) -> bool:
    """Train every job to ``iterations`` side by side; False if the deadline stopped any of them."""
    procs = []
    for task, mode, seed, run_dir in jobs:
        cmd = [sys.executable, "-m", "repro", "train-stylex", "--profile", profile_name, "--task", task,
               "--mode", mode, "--iterations", str(iterations), "--device", device, "--no-progress"]
        if seed is not None:
            cmd += ["--seed", str(seed)]
        log = open(logs / f"{run_dir.parent.name}_{run_dir.name}_it{iterations}.log", "w")
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        procs.append((subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env), log, run_dir))
    stopped = False
    while any(p.poll() is None for p, _, _ in procs):
        if time.time() > deadline and not stopped:
            print(f"deadline reached during milestone {iterations}: stopping (each trainer checkpoints)", flush=True)
            for p, _, _ in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGINT)
            stopped = True
        time.sleep(2)
    failed = [(rd, p.returncode) for p, _, rd in procs if p.returncode != 0]
    for _, log, _ in procs:
        log.close()
    for rd, rc in failed:
        print(f"  {rd}: exit {rc} (log in {logs})", flush=True)
    return not stopped and not failed


def collect(profile, jobs, iterations: int, out: Path) -> None:
    """Copy each finished model's files to ``out/it<M>/<task>/<component>/`` and set model.pt aside."""
    root = profile.run_dir(profile.tasks[0].name, "x").parent.parent
    for _, _, _, run_dir in jobs:
        dest = out / f"it{iterations}" / run_dir.relative_to(root)
        dest.mkdir(parents=True, exist_ok=True)
        for name in RECORDS:
            shutil.copy2(run_dir / name, dest / name)
        samples = sorted((run_dir / "samples").glob("iter-*.png"))
        if samples:
            (dest / "samples").mkdir(exist_ok=True)
            shutil.copy2(samples[-1], dest / "samples" / samples[-1].name)
        (run_dir / "model.pt").unlink()  # the next milestone resumes from the checkpoint at M


def main() -> None:
    from repro.config import get_profile
    from repro.data import load_split

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--milestones", default="1500,3000,4500,6000", help="comma-separated iteration counts")
    parser.add_argument("--deadline-s", type=float, default=400, help="seconds from start for all training")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    start = time.time()
    deadline = start + args.deadline_s
    profile = get_profile(args.profile)
    jobs = models(profile)
    for task in profile.tasks:  # render / decode each split once, before the processes share the cache
        for split in ("train", "val", "test"):
            load_split(task.stylex_data, split)
    logs = args.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    milestones = [int(m) for m in args.milestones.split(",")]
    summary = {"profile": args.profile, "models": [str(j[3]) for j in jobs], "milestones": []}
    reached, sec_per_iter = 0, 0.0  # wall seconds per milestone iteration, from the last milestone
    for m in milestones:
        left = deadline - time.time()
        if reached and sec_per_iter * (m - reached) > left:
            print(f"milestone {m} would not fit in the {left:.0f} s left: stopping at {reached}", flush=True)
            break
        t0 = time.time()
        print(f"milestone {m}: {len(jobs)} models side by side ({left:.0f} s left)", flush=True)
        ok = run_milestone(args.profile, jobs, m, args.device, deadline, logs)
        wall = time.time() - t0
        if not ok:
            print(f"milestone {m} not reached by every model ({wall:.0f} s)", flush=True)
            break
        collect(profile, jobs, m, args.out)
        reached, sec_per_iter = m, wall / (m - reached)
        summary["milestones"].append({"iterations": m, "wall_s": round(wall, 1)})
        print(f"milestone {m} reached by every model in {wall:.0f} s", flush=True)
    summary["reached"] = reached or None
    summary["total_s"] = round(time.time() - start, 1)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
