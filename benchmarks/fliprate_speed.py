"""Speed of the flip-rate evaluation: the fast path against the reference path of ``repro.fliprate``.

Both paths of ``repro.fliprate._flip_matrix`` run in one process on the same random generator,
classifier, styles, fixed noise and top-k coordinates: ``fast=True`` (``InferenceSynthesis``,
BatchNorm-folded classifier, edited renders resumed at the first edited layer) and ``fast=False``
(``G.synthesis`` and the plain classifier, every render from the constant). The script reports
edited renders per second and evaluation images per second of each (wall clock; the process's CPU
seconds are recorded too), their ratio, and how far apart their outputs are: the largest
difference of the classifier logits the two paths computed (recorded on the way, in the same
order; the largest logit is recorded for scale) and the number of flip / base-class decisions on
which they disagree. It appends one JSON line to ``benchmarks/results/fliprate_speed.jsonl``.
A measurement, not a test. The fast path folds the classifier's BatchNorm once (cached per
classifier by ``repro.inference.fast_classifier``); the script folds it before timing, as a
flip-rate curve with repeats pays it once, not per repeat. On a
shared CPU the load average (recorded before and after) moves the numbers: compare runs under
similar load.

The coordinates are ``--k`` random (direction, index) pairs (seeded), drawn from the conv layers
``>= --min-layer``; the fast path resumes edited renders at the lowest layer among them, so
``--min-layer`` above 0 shows what resuming buys when the top coordinates are all late. The
fast path resumes only while the stored layer inputs of all N images fit in
``repro.fliprate._state_budget(device)``, else it starts from the constant: ``config.resumed_layer``
records which (0: from the constant).

    python benchmarks/fliprate_speed.py --resolution 32 --channels 64 --images 256 --k 10
    python benchmarks/fliprate_speed.py --curve --k 20           # ks = 1..20 in one pass, like the curve
    python benchmarks/fliprate_speed.py --device cuda --resolution 64 --channels 512 --images 1000 --k 10
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import repro.fliprate as fliprate  # noqa: E402
from benchmarks.attfind_speed import add_model_args, device_name, load_average, setup_model, timed  # noqa: E402
from repro.networks import Generator, InferenceSynthesis  # noqa: E402
from repro.stylespace import decode_index  # noqa: E402


@contextlib.contextmanager
def record_logits(store: list[torch.Tensor]):
    """Keep every logits tensor ``_flip_matrix`` computes (both paths), in call order.

    ``repro.fliprate`` returns only the decisions; to compare the two paths' outputs as numbers
    this wraps the two classifier functions it looks up in its own namespace (``fast_classifier``
    for the fast path, ``classify`` for the reference path) and restores them afterwards. If
    either name is gone, nothing is recorded (the logit difference is then reported as None).
    """
    names = ("fast_classifier", "classify")
    if not all(hasattr(fliprate, n) for n in names):
        yield
        return
    fast_orig, classify_orig = fliprate.fast_classifier, fliprate.classify

    def keep(logits: torch.Tensor) -> torch.Tensor:
        store.append(logits.detach().float())
        return logits

    def fast_wrapped(classifier):
        fn = fast_orig(classifier)
        return lambda img: keep(fn(img))

    fliprate.fast_classifier = fast_wrapped
    fliprate.classify = lambda classifier, img: keep(classify_orig(classifier, img))
    try:
        yield
    finally:
        fliprate.fast_classifier, fliprate.classify = fast_orig, classify_orig


def random_coords(style_dims: list[int], k: int, min_layer: int, seed: int) -> list[tuple[int, int]]:
    """``k`` distinct (direction, flat index) pairs, indices in conv layers >= ``min_layer``."""
    first = int(sum(style_dims[:min_layer]))
    total = int(sum(style_dims))
    if k > total - first:
        raise SystemExit(f"--k {k} is more than the {total - first} coordinates in layers >= {min_layer}")
    rng = np.random.default_rng(seed)
    idx = rng.choice(np.arange(first, total), size=k, replace=False)
    dirs = rng.integers(0, 2, size=k)
    return [(int(d), int(i)) for d, i in zip(dirs, idx)]


def resumed_layer(G: Generator, conv, rgb, noise, start_layer: int, n_images: int) -> int | None:
    """The layer the fast path's edited renders start from: ``start_layer``, or 0 when the stored
    layer inputs of all images would exceed ``repro.fliprate._state_budget`` (the same test
    ``_flip_matrix`` makes, on one image's state). None if that function is gone."""
    budget = getattr(fliprate, "_state_budget", None)
    cap = budget(next(G.parameters()).device) if budget is not None else None
    if start_layer == 0 or cap is None:
        return 0 if cap is not None else None
    with torch.inference_mode():
        _, states = InferenceSynthesis(G).synthesis([c[:1] for c in conv], [r[:1] for r in rgb],
                                                    [t[:1] for t in noise], return_states=True)
    st = states[start_layer]
    per_image = sum(t.numel() * t.element_size() for t in (st.x, st.img) if t is not None)
    return start_layer if per_image * n_images <= cap else 0


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--channels", type=int, default=64, help="generator channels (Generator(resolution, channels))")
    parser.add_argument("--images", type=int, default=256, help="N evaluation images")
    parser.add_argument("--k", type=int, default=10, help="coordinates edited together")
    parser.add_argument("--curve", action="store_true", help="evaluate every k in 1..K in one pass (flip_rate_curve)")
    parser.add_argument("--min-layer", type=int, default=0, help="draw the coordinates from conv layers >= this")
    parser.add_argument("--batch-size", type=int, default=256, help="renders per call (both paths)")
    add_model_args(parser)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fliprate_speed.jsonl"))
    args = parser.parse_args(argv)

    device, load_before, (G, C, conv, rgb, noise, smin, smax) = setup_model(args)
    dims = list(G.style_dims)
    if not 0 <= args.min_layer < len(dims):
        raise SystemExit(f"--min-layer must be in [0, {len(dims)})")
    coords = random_coords(dims, args.k, args.min_layer, args.seed)
    start_layer = min(decode_index(i, dims)[0] for _, i in coords)
    resume_layer = resumed_layer(G, conv, rgb, noise, start_layer, args.images)
    ks = list(range(1, args.k + 1)) if args.curve else [args.k]
    edited = len(ks) * args.images

    def run(fast: bool, n: int | None = None):
        sl = slice(0, n)
        return fliprate._flip_matrix(G, C, [c[sl] for c in conv], [r[sl] for r in rgb], [t[sl] for t in noise],
                                     coords, ks, smin, smax, args.batch_size, False, fast=fast)

    # Warm-up (allocator, kernels, the classifier fold) on two images per path.
    run(True, 2)
    run(False, 2)

    logits_fast: list[torch.Tensor] = []
    logits_ref: list[torch.Tensor] = []
    with record_logits(logits_fast):
        (flip_fast, base_fast), t_fast, cpu_fast = timed(lambda: run(True), device)
    with record_logits(logits_ref):
        (flip_ref, base_ref), t_ref, cpu_ref = timed(lambda: run(False), device)
    logit_diff = logit_scale = None
    if logits_fast and logits_ref:
        a, b = torch.cat(logits_fast), torch.cat(logits_ref)
        logit_diff = float((a - b).abs().max()) if a.shape == b.shape else None
        logit_scale = float(b.abs().max())

    record = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": device_name(device),
        "torch": torch.__version__,
        "config": {"resolution": args.resolution, "channels": args.channels, "images": args.images,
                   "k": args.k, "ks": len(ks), "curve": args.curve, "num_styles": int(sum(dims)),
                   "conv_layers": len(dims), "min_layer": args.min_layer, "start_layer": start_layer, "resumed_layer": resume_layer,
                   "batch_size": args.batch_size, "classifier": args.classifier, "seed": args.seed},
        "load_average": {"before": load_before, "after": load_average()},
        "edited_renders": edited,
        "fast": {"seconds": round(t_fast, 3), "cpu_seconds": round(cpu_fast, 3),
                 "edited_renders_per_s": round(edited / t_fast, 2), "images_per_s": round(args.images / t_fast, 2)},
        "reference": {"seconds": round(t_ref, 3), "cpu_seconds": round(cpu_ref, 3),
                      "edited_renders_per_s": round(edited / t_ref, 2), "images_per_s": round(args.images / t_ref, 2)},
        "ratio": round(t_ref / t_fast, 2),
        "max_abs_logit_diff": logit_diff,
        "max_abs_logit": logit_scale,
        "flip_disagreements": int((flip_fast != flip_ref).sum()),
        "base_class_disagreements": int((base_fast != base_ref).sum()),
        "flip_rate": {"fast": flip_fast.float().mean(1).tolist(), "reference": flip_ref.float().mean(1).tolist()},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "a") as f:
        f.write(json.dumps(record) + "\n")
    print(json.dumps(record, indent=2))
    print(f"fast {record['fast']['edited_renders_per_s']:.1f} edited renders/s "
          f"({record['fast']['images_per_s']:.1f} images/s), reference "
          f"{record['reference']['edited_renders_per_s']:.1f} ({record['reference']['images_per_s']:.1f} images/s): "
          f"{record['ratio']:.1f}x; max logit diff {logit_diff}, {record['flip_disagreements']} flip disagreements  "
          f"(appended to {out})")
    return record


if __name__ == "__main__":
    main()
