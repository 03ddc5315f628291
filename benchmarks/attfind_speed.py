"""Speed of the AttFind effect tensor: the batched fast path against the plain one-render-per-edit loop.

Both paths run in one process on the same random generator, classifier, styles and fixed noise;
the script reports edit renders per second of each (wall clock; the process's CPU seconds are
recorded too), their ratio and the largest difference between the two effect tensors, and
appends one JSON line to ``benchmarks/results/attfind_speed.jsonl``. A measurement, not a test.
On a shared CPU the load average (recorded before and after) moves the numbers a lot, the
reference path's many small ops most: compare runs under similar load, or pin ``--threads 1``.

    python benchmarks/attfind_speed.py --resolution 32 --channels 64 --images 8
    python benchmarks/attfind_speed.py --threads 1
    python benchmarks/attfind_speed.py --device cuda --resolution 64 --channels 512 --images 16 --coords 512
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from repro.attfind import compute_effects, compute_effects_reference  # noqa: E402
from repro.networks import Generator, build_classifier  # noqa: E402
from repro.stylespace import style_range  # noqa: E402
from repro.utils import pick_device  # noqa: E402


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"cpu: {line.split(':', 1)[1].strip()} ({torch.get_num_threads()} threads)"
    except OSError:
        pass
    return f"cpu: {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def tiny_classifier() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
                         nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 2))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device):
    """(result, wall seconds, process CPU seconds)."""
    sync(device)
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    sync(device)
    return out, time.perf_counter() - start, time.process_time() - cpu


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """The options every speed benchmark shares: classifier, device, threads and seed."""
    parser.add_argument("--classifier", choices=("mobilenet", "tiny"), default="mobilenet")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)


def setup_model(args: argparse.Namespace):
    """(device, load average before, (G, C, conv styles, rgb styles, noise, style_min, style_max)):
    a seeded random generator of ``args.resolution`` x ``args.channels``, the chosen classifier and
    ``args.images`` random images' styles and fixed noise, on ``args.device``."""
    device = pick_device(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    load_before = load_average()
    torch.manual_seed(args.seed)
    G = Generator(args.resolution, args.channels).to(device).eval()
    C = (build_classifier(2) if args.classifier == "mobilenet" else tiny_classifier()).to(device).eval()
    gen = torch.Generator().manual_seed(args.seed)
    with torch.inference_mode():
        conv, rgb = G.styles(torch.randn(args.images, G.w_dim, generator=gen).to(device))
    noise = [t.to(device) for t in G.make_noise(args.images, generator=gen)]
    smin, smax = style_range(torch.cat(conv, 1))
    return device, load_before, (G, C, conv, rgb, noise, smin, smax)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--channels", type=int, default=64, help="generator channels (Generator(resolution, channels))")
    parser.add_argument("--images", type=int, default=8, help="N images")
    parser.add_argument("--coords", type=int, default=0,
                        help="StyleSpace coordinates to edit, spread evenly over S (0: all)")
    parser.add_argument("--batch-size", type=int, default=256, help="fast path renders per call")
    add_model_args(parser)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "attfind_speed.jsonl"))
    args = parser.parse_args(argv)

    device, load_before, (G, C, conv, rgb, noise, smin, smax) = setup_model(args)
    S = sum(G.style_dims)
    coords = None if args.coords <= 0 or args.coords >= S else np.linspace(0, S - 1, args.coords).round().astype(int).tolist()
    num_coords = S if coords is None else len(coords)
    edit_renders = args.images * 2 * num_coords

    # Warm-up (allocator, kernels) on one image and one coordinate per path.
    one = ([c[:1] for c in conv], [r[:1] for r in rgb], [t[:1] for t in noise])
    compute_effects(G, C, *one, smin, smax, coords=[0], progress=False)
    compute_effects_reference(G, C, *one, smin, smax, coords=[0], progress=False)

    kwargs = dict(coords=coords, progress=False)
    fast, t_fast, cpu_fast = timed(lambda: compute_effects(G, C, conv, rgb, noise, smin, smax,
                                                           batch_size=args.batch_size, **kwargs), device)
    ref, t_ref, cpu_ref = timed(lambda: compute_effects_reference(G, C, conv, rgb, noise, smin, smax, **kwargs),
                                device)
    diff = float((fast.effect - ref.effect).abs().max())
    record = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": device_name(device),
        "torch": torch.__version__,
        "config": {"resolution": args.resolution, "channels": args.channels, "images": args.images,
                   "num_styles": S, "coords": num_coords, "conv_layers": len(G.style_dims),
                   "batch_size": args.batch_size, "classifier": args.classifier, "seed": args.seed},
        "load_average": {"before": load_before, "after": load_average()},
        "edit_renders": edit_renders,
        "batched": {"seconds": round(t_fast, 3), "cpu_seconds": round(cpu_fast, 3),
                    "renders_per_s": round(edit_renders / t_fast, 2)},
        "reference": {"seconds": round(t_ref, 3), "cpu_seconds": round(cpu_ref, 3),
                      "renders_per_s": round(edit_renders / t_ref, 2)},
        "ratio": round(t_ref / t_fast, 2),
        "max_abs_diff": diff,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "a") as f:
        f.write(json.dumps(record) + "\n")
    print(json.dumps(record, indent=2))
    print(f"batched {record['batched']['renders_per_s']:.1f} renders/s, reference "
          f"{record['reference']['renders_per_s']:.1f} renders/s: {record['ratio']:.1f}x  (appended to {out})")
    return record


if __name__ == "__main__":
    main()
