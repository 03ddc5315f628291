"""Same-run A/B of training throughput between two versions of the code (two git revisions).

Each round times a few training iterations of one model (the profile's network and batch, 256
synthetic images, as ``benchmarks/train_speed.py`` does) once with revision A and once with
revision B, alternating which goes first, each in its own subprocess with the same bounded thread
count. Throughput is images per **CPU second** of the training process (process time, all its
threads), which another process sharing the cores disturbs far less than wall time, and images
per wall second beside it. The rounds interleave, so slow drift of a shared machine falls on both
sides alike; the record holds every round and the ratio B/A (mean and std over rounds). Revision A (``--before``) is checked out into a temporary git
worktree; B is this checkout as it is (uncommitted changes included) unless ``--after`` names a
revision. Appends one JSON line to ``benchmarks/results/train_ab.jsonl``. A measurement, not a test.

    python benchmarks/train_ab.py --before HEAD~1                      # default profile, stylex, 1 thread
    python benchmarks/train_ab.py --before 8e2115f --modes stylex stylegan2 --rounds 5 --threads 2
    python benchmarks/train_ab.py --before HEAD --set-b '{"channels_last": true}'   # a setting, same code
    python benchmarks/train_ab.py --before HEAD --set-a '{"precision": "bf16"}' \
        --set-b '{"precision": "bf16", "channels_last": true}'                     # a setting on top of another
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "train_ab.jsonl"


def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


# Run with PYTHONPATH=<tree>: times the iterations after the first two (warm-up) of one training
# run of that tree's code, as process CPU time (all threads) and wall time per iteration. CPU time
# per iteration is what a busy shared machine disturbs least; both are recorded.
HARNESS = """
import dataclasses, json, sys, tempfile, time
from pathlib import Path
import torch
from repro.config import DataConfig, get_profile
from repro.networks import build_classifier
from repro.training import train_stylex
profile_name, mode, iterations, overrides = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
profile = get_profile(profile_name)
profile.stylex = dataclasses.replace(profile.stylex, **overrides)
res = profile.tasks[0].stylex_data.resolution
data = DataConfig(dataset="synthetic", task="synth-age", resolution=res, n_train=256, n_val=64, n_test=64)
config = dataclasses.replace(profile.stylex, iterations=iterations, log_every=1, sample_every=10**9,
                             checkpoint_every=10**9)
marks = []
with tempfile.TemporaryDirectory() as tmp:
    train_stylex(mode, data, config, build_classifier().eval(), Path(tmp) / mode, device="cpu", progress=False,
                 callbacks=[lambda it, rec: marks.append((time.process_time(), time.perf_counter()))])
cpu = (marks[-1][0] - marks[1][0]) / (len(marks) - 2)
wall = (marks[-1][1] - marks[1][1]) / (len(marks) - 2)
print(json.dumps({"cpu_sec_per_iter": cpu, "wall_sec_per_iter": wall, "batch": config.batch_size,
                  "torch_threads": torch.get_num_threads()}))
"""


def time_once(tree: Path, profile: str, mode: str, iterations: int, threads: int,
              overrides: dict | None = None) -> dict[str, float]:
    """Seconds per iteration (CPU and wall) of one training run of ``tree``'s code, its own subprocess."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONPATH": str(tree), "REPRO_PROGRESS": "0"}
    proc = subprocess.run([sys.executable, "-c", HARNESS, profile, mode, str(iterations), json.dumps(overrides or {})],
                          cwd=tree, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"the timing run failed in {tree}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="revision A (e.g. HEAD~1)")
    parser.add_argument("--after", default=None, help="revision B (default: this checkout as it is)")
    parser.add_argument("--profile", default="default")
    parser.add_argument("--modes", nargs="+", default=["stylex"])
    parser.add_argument("--iterations", type=int, default=34,
                        help="per run; the iterations after the first two are timed (34: two R1 steps)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set-b", type=json.loads, default={},
                        help='StylExConfig fields set on side B only, as JSON, e.g. \'{"channels_last": true}\' '
                             '(with --before HEAD and no changes: a same-code A/B of a setting)')
    parser.add_argument("--set-a", type=json.loads, default={},
                        help="StylExConfig fields set on side A only, as JSON (the baseline of a --set-b A/B)")
    parser.add_argument("--label", default="", help="what B changes, for the record")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    rev_a = git("rev-parse", "--short", args.before)
    with tempfile.TemporaryDirectory() as tmp:
        tree_a = Path(tmp) / "a"
        git("worktree", "add", "--detach", str(tree_a), rev_a)
        tree_b, rev_b = ROOT, (git("rev-parse", "--short", "HEAD") + ("+changes" if git("status", "--porcelain",
                                                                                         "--untracked-files=no") else ""))
        if args.after:
            tree_b, rev_b = Path(tmp) / "b", git("rev-parse", "--short", args.after)
            git("worktree", "add", "--detach", str(tree_b), rev_b)
        try:
            for mode in args.modes:
                runs: dict[str, list[dict[str, float]]] = {"a": [], "b": []}
                for r in range(args.rounds):
                    order = [("a", tree_a), ("b", tree_b)] if r % 2 == 0 else [("b", tree_b), ("a", tree_a)]
                    for side, tree in order:
                        runs[side].append(time_once(tree, args.profile, mode, args.iterations, args.threads,
                                                    args.set_b if side == "b" else args.set_a))
                    ra, rb = runs["a"][-1], runs["b"][-1]
                    print(f"{mode} round {r + 1}: CPU s/iter A {ra['cpu_sec_per_iter']:.3f}, B {rb['cpu_sec_per_iter']:.3f}"
                          f" (B faster by {ra['cpu_sec_per_iter'] / rb['cpu_sec_per_iter']:.3f}x); wall "
                          f"A {ra['wall_sec_per_iter']:.3f}, B {rb['wall_sec_per_iter']:.3f}", flush=True)
                batch = runs["a"][0]["batch"]
                record = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                          "profile": args.profile, "mode": mode, "threads": args.threads, "batch": batch,
                          "iterations": args.iterations, "rounds": args.rounds, "label": args.label,
                          "rev_a": rev_a, "rev_b": rev_b, "set_b": args.set_b,
                          **({"set_a": args.set_a} if args.set_a else {})}
                for kind in ("cpu", "wall"):
                    a = [batch / x[f"{kind}_sec_per_iter"] for x in runs["a"]]
                    b = [batch / x[f"{kind}_sec_per_iter"] for x in runs["b"]]
                    ratios = [y / x for x, y in zip(a, b)]
                    record.update({f"images_per_{kind}_s_a": [round(v, 2) for v in a],
                                   f"images_per_{kind}_s_b": [round(v, 2) for v in b],
                                   f"{kind}_ratio_mean": round(statistics.fmean(ratios), 3),
                                   f"{kind}_ratio_std": round(statistics.pstdev(ratios), 3)})
                print(json.dumps(record), flush=True)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                with open(args.out, "a") as f:
                    f.write(json.dumps(record) + "\n")
        finally:
            for tree in (Path(tmp) / "a", Path(tmp) / "b"):
                if tree.exists():
                    git("worktree", "remove", "--force", str(tree))


if __name__ == "__main__":
    main()
