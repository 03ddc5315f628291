"""Screened AttFind against exact AttFind: renders saved, speed and agreement, in one run.

On one model and one set of AttFind images the script times, in one process:

* the **reference** path (:func:`repro.attfind.compute_effects_reference`, one full render per
  edit) on the first ``--reference-images`` images (its renders/s does not depend on N: it is a
  loop of batch-1 renders);
* the **exact** batched path (:func:`repro.attfind.compute_effects`) on all the images, then the
  selection (:func:`repro.attfind.run_attfind`);
* **screened** AttFind (:func:`repro.attfind.screened_attfind`: gradient pass, the screen's
  renders, the verification rounds and the selection) on the same images.

It reports renders made and saved, wall seconds, effective renders/s (the N x 2S entries of the
effect tensor over the wall time) of each path and the screened path's speed-up over both, the
overlap of the screened and exact top-10 lists, and the flip rate at k = 10 of both lists on
held-out images (:func:`repro.fliprate.flip_rate_curve`, repeats as ``repro.explain`` runs it),
with their difference and the spread over repeats (``--replay`` adds the agreement and renders
of other shares and runners-up, replayed on the exact tensor without rendering). Appends one
JSON line to ``benchmarks/results/attfind_screened.jsonl``. A measurement, not a test; speeds compare only
within one run (record the load average, pin ``--threads``).

The model: ``--model`` (a finished ``model.pt`` or a training checkpoint ``ckpt-*.pt`` of a
StylEx run; its EMA networks) with ``--classifier-dir`` (a trained classifier's run directory);
the AttFind images and the held-out images are then those ``repro.explain`` uses for the
profile (``--profile``, ``--task``). Without ``--model``: a freshly initialised generator of
``--resolution`` x ``--channels`` and a fresh classifier, random w for both image sets.

    python benchmarks/attfind_screened.py --threads 1                       # fresh default-size model
    python benchmarks/attfind_screened.py --threads 1 --model runs/default/synth-age/stylex/model.pt \\
        --classifier-dir runs/default/synth-age/classifier
    python benchmarks/attfind_screened.py --device cuda --resolution 64 --channels 512 --images 250 \\
        --exact-images 8 --reference-images 1 --reference-coords 256 --flip-repeats 0   # paper-size speed
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.attfind_speed import device_name, load_average, timed  # noqa: E402
from repro.attfind import (SCREEN_RUNNERS_UP, SCREEN_SHARE, EffectResult, _contenders, _screen_mask,  # noqa: E402
                           compute_effects, compute_effects_reference, first_order_effects, get_preset,
                           run_attfind, screened_attfind)
from repro.fliprate import flip_rate_curve  # noqa: E402
from repro.networks import Generator, build_classifier  # noqa: E402
from repro.stylespace import flatten_styles, style_range  # noqa: E402
from repro.utils import pick_device  # noqa: E402


def _fresh(args: argparse.Namespace, device: torch.device, n_found: int, n_held: int):
    """A seeded random generator and classifier; random w for the AttFind and held-out images."""
    torch.manual_seed(args.seed)
    G = Generator(args.resolution, args.channels).to(device).eval()
    C = build_classifier(2).to(device).eval()

    def images(n: int, seed: int):
        gen = torch.Generator().manual_seed(seed)
        with torch.inference_mode():
            conv, rgb = G.styles(torch.randn(n, G.w_dim, generator=gen).to(device))
        return conv, rgb, [t.to(device) for t in G.make_noise(n, generator=gen)]

    desc = {"kind": "fresh", "note": "freshly initialised generator and classifier (no trained model)",
            "resolution": args.resolution, "channels": args.channels}
    return G, C, images(n_found, args.seed), images(n_held, args.seed + 10_000), desc


def _trained(args: argparse.Namespace, device: torch.device):
    """The EMA networks of a StylEx checkpoint, a trained classifier, and repro.explain's image sets."""
    from repro.classifier import load_classifier
    from repro.config import get_profile
    from repro.explain import image_sets
    from repro.model import StylExArch

    state = torch.load(args.model, map_location="cpu", weights_only=True)
    model = StylExArch.from_checkpoint(state).build()
    model.load_state_dict(state["ema"])
    model.to(device).eval().requires_grad_(False)
    classifier = load_classifier(args.classifier_dir, device=device).model
    profile = get_profile(args.profile)
    task = next((t for t in profile.tasks if t.name == args.task), None)
    if task is None:
        raise SystemExit(f"profile {args.profile} has no task {args.task!r}: {[t.name for t in profile.tasks]}")
    profile.eval = dataclasses.replace(profile.eval, attfind_images=args.images or profile.eval.attfind_images,
                                       repeats=args.flip_repeats or 1, images_per_repeat=args.flip_images)
    found, held = image_sets(model, classifier, task, profile)
    sets = []
    for lat in (found, held):
        conv, rgb = lat.styles(model)
        sets.append((conv, rgb, lat.noise))
    path = Path(args.model)
    run = path.parent.parent.name if path.parent.name == "checkpoints" else path.parent.name
    desc = {"kind": "trained", "model": str(args.model), "run": args.label or run,
            "iteration": int(state["iteration"]) if "iteration" in state  # a checkpoint; a model.pt records it in metadata
            else int(json.loads(state.get("metadata") or "{}").get("finished_iteration", -1)),
            "mode": model.arch.mode, "classifier": str(args.classifier_dir), "profile": args.profile,
            "task": args.task, "resolution": model.arch.resolution, "channels": model.arch.channels}
    return model.generator, classifier, sets[0], sets[1], desc


def replay(exact: EffectResult, estimate: torch.Tensor, config, share: float, runners_up: int,
           k: int) -> dict:
    """Screened AttFind replayed on the exact effect tensor, without rendering: the screen's mask,
    the fill and the verification rounds of ``screened_attfind`` read their "renders" from
    ``exact`` (the batched path's values; a real run's renders differ from them only by float
    rounding). Returns the top-``k`` overlap with exact AttFind and the share of edits rendered."""
    effect, S = exact.effect, exact.num_styles
    moved = (effect != 0).any(-1)
    logit = 0 if config.variant == "one-vs-all" else None
    mask = _screen_mask(estimate, exact.base_logits, torch.ones(S, dtype=torch.bool), share, logit)
    screened = torch.where(mask[..., None], effect, estimate)
    is_exact = mask | ~moved
    renders, rounds = int((mask & moved).sum()), 0
    while True:
        result = EffectResult(screened, exact.base_logits, exact.style_dims, exact=is_exact)
        todo = _contenders(result, config, None, runners_up) & ~is_exact
        if not bool(todo.any()):
            break
        renders += int((todo & moved).sum())
        screened[todo] = effect[todo]
        is_exact |= todo
        rounds += 1
    top, top_exact = run_attfind(result, config).coords[:k], run_attfind(exact, config).coords[:k]
    return {"share": share, "runners_up": runners_up, "overlap": len(set(top) & set(top_exact)),
            "of": len(top_exact), "renders_share": round(renders / effect[:, :, :, 0].numel(), 4), "rounds": rounds}


def _subset(styles, n: int):
    conv, rgb, noise = styles
    return [c[:n] for c in conv], [r[:n] for r in rgb], [t[:n] for t in noise]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model.pt or ckpt-*.pt of a StylEx run (default: a fresh model)")
    parser.add_argument("--classifier-dir", help="a trained classifier's run directory (with --model)")
    parser.add_argument("--label", help="the model's name in the record (default: its run directory's name)")
    parser.add_argument("--profile", default="default", help="with --model: the profile whose image sets to use")
    parser.add_argument("--task", default="synth-age")
    parser.add_argument("--resolution", type=int, default=32, help="fresh model: generator resolution")
    parser.add_argument("--channels", type=int, default=64, help="fresh model: generator channels")
    parser.add_argument("--images", type=int, default=0,
                        help="N AttFind images (0: the profile's attfind_images with --model, 32 for a fresh model)")
    parser.add_argument("--exact-images", type=int, default=0,
                        help="images the exact batched path is timed on (0: all N; agreement needs all)")
    parser.add_argument("--reference-images", type=int, default=2, help="images the reference path is timed on")
    parser.add_argument("--reference-coords", type=int, default=0,
                        help="coordinates the reference path is timed on, spread evenly over S (0: all)")
    parser.add_argument("--screen", type=float, default=SCREEN_SHARE, help="share of each image's 2S edits rendered")
    parser.add_argument("--runners-up", type=int, default=SCREEN_RUNNERS_UP)
    parser.add_argument("--fill", choices=("estimate", "zero"), default="estimate")
    parser.add_argument("--preset", default="replication", help="AttFind preset (the default profile's: replication)")
    parser.add_argument("--replay", action="store_true",
                        help="also replay screening without renders on the exact tensor for every combination "
                             "of --replay-shares and --replay-runners-up (agreement and renders only)")
    parser.add_argument("--replay-shares", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    parser.add_argument("--replay-runners-up", type=int, nargs="+", default=[0, 3, 6, 10])
    parser.add_argument("--k", type=int, default=10, help="top-k for the overlap and the flip rate")
    parser.add_argument("--flip-repeats", type=int, default=5, help="flip-rate repeats (0: no flip rate)")
    parser.add_argument("--flip-images", type=int, default=80, help="held-out images per repeat")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "attfind_screened.jsonl"))
    args = parser.parse_args(argv)
    if (args.model is None) != (args.classifier_dir is None):
        parser.error("--model and --classifier-dir go together")

    device = pick_device(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    load_before = load_average()
    n_held = max(1, args.flip_repeats) * args.flip_images
    if args.model is None:
        G, C, found, held, model_desc = _fresh(args, device, args.images or 32, n_held)
    else:
        G, C, found, held, model_desc = _trained(args, device)
    conv, rgb, noise = found
    n_images, S = conv[0].shape[0], sum(G.style_dims)
    n_exact = min(args.exact_images or n_images, n_images)
    n_ref = min(args.reference_images, n_images)
    ref_coords = None
    if 0 < args.reference_coords < S:
        ref_coords = np.linspace(0, S - 1, args.reference_coords).round().astype(int).tolist()
    n_ref_coords = S if ref_coords is None else len(ref_coords)
    smin, smax = style_range(flatten_styles(conv))  # targets of all N images, for every path
    config = get_preset(args.preset)
    entries = n_images * 2 * S

    # Warm-up (allocator, kernels, the folded classifier) on one image per path.
    one = _subset(found, 1)
    compute_effects(G, C, *one, smin, smax, coords=[0], progress=False)
    compute_effects_reference(G, C, *one, smin, smax, coords=[0], progress=False)
    compute_effects(G, C, *one, smin, smax, coords=[0], screen=1.0, progress=False)

    ref, t_ref, cpu_ref = timed(lambda: compute_effects_reference(G, C, *_subset(found, n_ref), smin, smax,
                                                                  coords=ref_coords, progress=False), device)
    exact, t_exact, cpu_exact = timed(lambda: compute_effects(G, C, *_subset(found, n_exact), smin, smax,
                                                              batch_size=args.batch_size, progress=False), device)
    exact_attrs, t_select, _ = timed(lambda: run_attfind(exact, config), device)
    (screened, effects), t_scr, cpu_scr = timed(
        lambda: screened_attfind(G, C, conv, rgb, noise, smin, smax, config, screen=args.screen,
                                 runners_up=args.runners_up, fill=args.fill, batch_size=args.batch_size,
                                 progress=False), device)
    # the reference and the exact path are per-render loops / batches: their rate holds for all N
    ref_rate = n_ref * 2 * n_ref_coords / t_ref
    exact_rate = n_exact * 2 * S / (t_exact + t_select)
    scr_rate = entries / t_scr
    info = effects.screen
    k = args.k
    record = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": device_name(device),
        "torch": torch.__version__,
        "model": model_desc,
        "config": {"images": n_images, "num_styles": S, "conv_layers": len(G.style_dims), "preset": args.preset,
                   "screen": args.screen, "runners_up": args.runners_up, "fill": args.fill,
                   "batch_size": args.batch_size, "seed": args.seed, "reference_images": n_ref,
                   "reference_coords": n_ref_coords, "exact_images": n_exact},
        "load_average": {"before": load_before},
        "entries": entries,
        "reference": {"images": n_ref, "coords": n_ref_coords, "seconds": round(t_ref, 3), "cpu_seconds": round(cpu_ref, 3),
                      "renders_per_s": round(ref_rate, 2)},
        "exact": {"images": n_exact, "seconds": round(t_exact, 3), "select_seconds": round(t_select, 3),
                  "cpu_seconds": round(cpu_exact, 3), "renders_per_s": round(exact_rate, 2)},
        "screened": {"seconds": round(t_scr, 3), "cpu_seconds": round(cpu_scr, 3),
                     "gradient_seconds": info["gradient_seconds"], "renders": info["renders"],
                     "screen_renders": info["screened_renders"], "rounds": info["rounds"],
                     "verified_coordinates": len(info["verified_coordinates"]),
                     "renders_share": round(info["renders"] / entries, 4),
                     "renders_saved": entries - info["renders"],
                     "effective_renders_per_s": round(scr_rate, 2)},
        "speedup_vs_reference": round(scr_rate / ref_rate, 2),
        "speedup_vs_exact": round(scr_rate / exact_rate, 2),
    }
    if n_exact == n_images:
        top_exact, top_scr = exact_attrs.coords[:k], screened.coords[:k]
        agreement = {"k": k, "overlap": len(set(top_exact) & set(top_scr)), "of": len(top_exact),
                     "same_order": top_exact == top_scr, "exact_top": [list(p) for p in top_exact],
                     "screened_top": [list(p) for p in top_scr],
                     "same_unstable": exact_attrs.details["unstable_images"] == screened.details["unstable_images"]}
        if args.flip_repeats > 0:
            h_conv, h_rgb, h_noise = held
            rates = {}
            for name, attrs in (("exact", exact_attrs), ("screened", screened)):
                curve = flip_rate_curve(G, C, h_conv, h_rgb, h_noise, attrs, ks=[k], repeats=args.flip_repeats,
                                        images_per_repeat=args.flip_images, seed=args.seed, progress=False)
                rates[name] = curve.at(k)
            agreement["flip_rate"] = {
                "k": k, "repeats": args.flip_repeats, "images_per_repeat": args.flip_images,
                "exact": round(rates["exact"].mean, 4), "exact_std": round(rates["exact"].std, 4),
                "screened": round(rates["screened"].mean, 4), "screened_std": round(rates["screened"].std, 4),
                "difference": round(rates["screened"].mean - rates["exact"].mean, 4)}
        record["agreement"] = agreement
        if args.replay:
            estimate = first_order_effects(G, C, conv, rgb, noise, smin, smax, shift_size=config.shift_size)
            record["replay"] = [replay(exact, estimate, config, share, runners_up, k)
                                for share in args.replay_shares for runners_up in args.replay_runners_up]
    record["load_average"]["after"] = load_average()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "a") as f:
        f.write(json.dumps(record) + "\n")
    print(json.dumps(record, indent=2))
    line = (f"screened {scr_rate:.1f} effective renders/s ({info['renders']} of {entries} rendered), exact "
            f"{exact_rate:.1f}/s, reference {ref_rate:.1f}/s: {record['speedup_vs_reference']:.1f}x the reference, "
            f"{record['speedup_vs_exact']:.1f}x exact")
    if "agreement" in record:
        a = record["agreement"]
        line += f"; top-{k} overlap {a['overlap']}/{a['of']}"
        if "flip_rate" in a:
            line += f", flip rate {a['flip_rate']['screened']:.3f} vs {a['flip_rate']['exact']:.3f}"
    print(line + f"  (appended to {out})")
    return record


if __name__ == "__main__":
    main()
