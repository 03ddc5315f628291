"""Seconds per iteration and peak memory of each training mode, at the default and paper model sizes.

Each (profile, mode) runs in its own subprocess (so its peak memory is its own): a few training
iterations of the profile's network and batch on synthetic images at the profile's resolution
(the paper profiles' real data is not needed to time the networks), with an untrained classifier
(its weights do not change the cost). Seconds per iteration are the median and the mean over the
iterations after the first two (warm-up); images/s is batch / mean s per iteration. Lazy R1
(every 16 iterations) and path-length (every 4) iterations are in the mean at their real
frequency when the timed iterations are a multiple of 16 (``--iterations 18``, ``34``, ``66``);
the median leaves them out, so read it (and short runs) as a lower bound on the cost. Peak memory
is the subprocess's peak RSS, and on CUDA also ``torch.cuda.max_memory_allocated``.
``--precision`` and ``--channels-last`` set the ``precision`` / ``channels_last`` fields of the
profile's ``StylExConfig`` (``repro.training`` reads them) and are recorded.
Appends one JSON line per configuration to ``benchmarks/results/train_speed.jsonl``.
A measurement, not a test.

    python benchmarks/train_speed.py                                  # default + paper sizes, every mode, CPU
    python benchmarks/train_speed.py --profiles default --iterations 20
    python benchmarks/train_speed.py --device cuda --profiles paper-afhq --iterations 66 --precision bf16 --channels-last
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results" / "train_speed.jsonl"


def run_one(profile_name: str, mode: str, iterations: int, device: str, precision: str = "fp32",
            channels_last: bool = False) -> dict:
    import torch

    from benchmarks.attfind_speed import device_name
    from repro.config import DataConfig, get_profile
    from repro.networks import build_classifier
    from repro.training import train_stylex
    from repro.utils import pick_device

    profile = get_profile(profile_name)
    res = profile.tasks[0].stylex_data.resolution
    data = DataConfig(dataset="synthetic", task="synth-age", resolution=res, n_train=256, n_val=64, n_test=64)
    config = dataclasses.replace(profile.stylex, iterations=iterations, log_every=1,
                                 sample_every=10**9, checkpoint_every=10**9,
                                 precision=precision, channels_last=channels_last)
    dev = pick_device(device)
    classifier = build_classifier().to(dev).eval()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        train_stylex(mode, data, config, classifier, Path(tmp) / mode, device=device, progress=False)
        wall = time.perf_counter() - t0
        log = [json.loads(line) for line in (Path(tmp) / mode / "log.jsonl").read_text().splitlines()]
        lpips = json.loads((Path(tmp) / mode / "metadata.json").read_text()).get("lpips")
    secs = [rec["sec_per_iter"] for rec in log][2:] or [rec["sec_per_iter"] for rec in log]
    mean = statistics.fmean(secs)
    out = {
        "profile": profile_name, "mode": mode, "resolution": res, "channels": config.channels,
        "batch_size": config.batch_size, "iterations": iterations, "timed_iterations": len(secs),
        "precision": precision, "channels_last": channels_last,
        "device": device_name(dev), "device_type": dev.type, "torch": torch.__version__,
        "sec_per_iter_median": round(statistics.median(secs), 4), "sec_per_iter_mean": round(mean, 4),
        "images_per_s": round(config.batch_size / mean, 2), "wall_seconds": round(wall, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "torch_threads": torch.get_num_threads(),
        "lpips": lpips,  # e.g. "unavailable (...)": the LPIPS term was left out of these iterations
    }
    if dev.type == "cuda":
        out["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profiles", nargs="+", default=["default", "paper-afhq"])
    parser.add_argument("--modes", nargs="+", default=["stylex", "stylex-alt", "stylegan2"])
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=("fp32", "tf32", "bf16"), default="fp32",
                        help="StylExConfig.precision of the timed runs")
    parser.add_argument("--channels-last", action="store_true", help="StylExConfig.channels_last = True")
    parser.add_argument("--out", default=str(RESULTS), help="JSON lines file to append to")
    parser.add_argument("--one", nargs=2, metavar=("PROFILE", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one[0], args.one[1], args.iterations, args.device, args.precision,
                                 args.channels_last)))
        return
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    failed = []
    stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    for profile in args.profiles:
        for mode in args.modes:
            cmd = [sys.executable, __file__, "--one", profile, mode, "--iterations", str(args.iterations),
                   "--device", args.device, "--precision", args.precision]
            cmd += ["--channels-last"] if args.channels_last else []
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            if proc.returncode != 0:
                print(f"{profile}/{mode} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
                failed.append(f"{profile}/{mode}")
                continue
            row = {"date": stamp, **json.loads(proc.stdout.strip().splitlines()[-1])}
            with open(out, "a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"{profile:11s} {mode:10s} {row['resolution']:3d}px x{row['channels']:3d} batch {row['batch_size']} "
                  f"{row['precision']}{' channels-last' if row['channels_last'] else ''}: "
                  f"{row['sec_per_iter_median']:.3f} s/iter (median), {row['images_per_s']:.1f} images/s (mean), "
                  f"peak RSS {row['peak_rss_mb']:.0f} MB"
                  + (f", peak CUDA {row['peak_cuda_mb']:.0f} MB" if "peak_cuda_mb" in row else ""), flush=True)
    if failed:
        sys.exit(f"failed: {', '.join(failed)} (the others were appended to {out})")


if __name__ == "__main__":
    main()
