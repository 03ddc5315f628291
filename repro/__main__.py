"""Command line: ``python -m repro <command> --help``.

Each command is a thin wrapper over the library function the notebooks call.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Callable

from repro.config import MODES, PRECISIONS, PROFILES, RESOLUTIONS, get_profile, to_dict

PROFILE_HELP = (f"named settings: {', '.join(PROFILES)}, or the name of a custom profile made by "
                f"`python -m repro custom` (default: %(default)s)")


def _add_common(p: argparse.ArgumentParser, *, task: bool = True) -> None:
    p.add_argument("--profile", default="default", help=PROFILE_HELP)
    p.add_argument("--data-root", default=None,
                   help="folder holding afhq/, celeba/, ffhq/ for the paper profiles (a custom profile "
                        "keeps the folder it was made with)")
    p.add_argument("--run-root", default=None, help="where runs are written (default: runs/)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: %(default)s)")
    if task:
        p.add_argument("--task", default=None,
                       help="task of the profile (default: every task of the profile)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _tasks(args: argparse.Namespace):
    profile = get_profile(args.profile, data_root=args.data_root, run_root=args.run_root)
    tasks = [profile.task(args.task)] if getattr(args, "task", None) else profile.tasks
    return profile, tasks


def cmd_profiles(args: argparse.Namespace) -> None:
    if args.show:
        print(json.dumps(to_dict(get_profile(args.show, run_root=args.run_root)), indent=2))
        return
    for name, build in PROFILES.items():
        profile = build()
        tasks = ", ".join(f"{t.name} [{' '.join(t.modes)}]" for t in profile.tasks)
        print(f"{name:11s} {profile.tasks[0].stylex_data.resolution}px, {profile.stylex.channels} channels, "
              f"{profile.stylex.iterations} iterations; tasks: {tasks}")


def cmd_custom(args: argparse.Namespace) -> None:
    from repro.config import config_diff, custom_profile, custom_profile_path, save_profile
    from repro.user_classifier import check_inputs
    from repro.utils import write_atomic

    if args.data_root is None:
        raise ValueError("give --data-root DIR: your image folder, DIR/{train,val,test}/<class>/* or DIR/<class>/*")
    profile = custom_profile(
        args.data_root, name=args.name, task=args.task, resolution=args.resolution, channels=args.channels,
        iterations=args.iterations, batch_size=args.batch_size, latent_dim=args.latent_dim, modes=args.modes,
        seeds=args.seeds, split_seed=args.split_seed, epochs=args.epochs, classifier=args.classifier,
        classifier_weights=args.classifier_weights, classifier_size=args.classifier_size,
        classifier_mean=args.classifier_mean, classifier_std=args.classifier_std,
        attfind_images=args.attfind_images, k=args.k, repeats=args.repeats,
        images_per_repeat=args.images_per_repeat, run_root=args.run_root or "runs")
    saved = custom_profile_path(profile.name, profile.run_root)
    if saved.is_file():  # models already trained there were trained on its images: never mix them up
        before = json.loads(saved.read_text())
        old_tasks = {t.get("name"): t.get("stylex_data") for t in before.get("tasks") or []}
        diffs = [d for t in profile.tasks for d in config_diff(old_tasks.get(t.name) or {"task": None},
                                                               to_dict(t.stylex_data), f"{t.name}.data.")]
        if diffs:
            changes = "; ".join(d.replace(": expected ", ": saved ").replace(", found ", ", now ") for d in diffs)
            raise ValueError(f"profile {profile.name!r} in {saved.parent} was made for other images ({changes}); "
                             f"give another --name, or delete {saved.parent} first")
    summary = check_inputs(profile, progress=not args.no_progress)  # before anything is saved or trained
    path = save_profile(profile)
    write_atomic(path.parent / "inputs.json", json.dumps(summary, indent=2) + "\n")
    for task, entry in summary.items():
        counts = "; ".join(f"{split} " + ", ".join(f"{c} {n}" for c, n in per.items())
                           for split, per in entry["images"].items())
        print(f"{task}: {len(entry['classes'])} classes ({', '.join(entry['classes'])}); images: {counts}; "
              f"split: {entry['split']}")
        for note in entry["left_out"]:
            print(f"{task}: {note}")
        if "classifier" in entry:
            print(f"{task}: your classifier {profile.classifier.source} passed the checks on "
                  f"{entry['classifier']['images']} validation images (shape, finite, deterministic)")
    who = "your classifier" if profile.classifier.source else "a MobileNetV2 trained on your images"
    print(f"profile {profile.name!r} ({who}) -> {path}; next: bash run_all.sh --profile {profile.name} "
          f"(or python -m repro train-classifier / train-observer / train-stylex / explain --profile {profile.name})")


def cmd_train_classifier(args: argparse.Namespace) -> None:
    from repro.classifier import train_classifier

    profile, tasks = _tasks(args)
    for task in tasks:
        run = train_classifier(task.classifier_data, profile.classifier,
                               profile.run_dir(task.name, "classifier"), device=args.device,
                               force=args.force, progress=not args.no_progress)
        print(f"{task.name}: test accuracy {run.metrics['test']['accuracy']:.4f} -> {run.run_dir}")


def cmd_train_observer(args: argparse.Namespace) -> None:
    from repro.observer import train_observer

    profile, tasks = _tasks(args)
    for task in tasks:
        run = train_observer(profile, task, device=args.device, force=args.force, progress=not args.no_progress)
        print(f"{task.name}: observer ({profile.observer.arch}, seed {profile.observer.seed}) test accuracy "
              f"{run.metrics['test']['accuracy']:.4f} -> {run.run_dir}")


def cmd_train_stylex(args: argparse.Namespace) -> None:
    from repro.training import train_profile_model

    profile, tasks = _tasks(args)
    if args.precision is not None or args.channels_last:
        profile.stylex = dataclasses.replace(profile.stylex,
                                             channels_last=args.channels_last or profile.stylex.channels_last,
                                             precision=args.precision or profile.stylex.precision)
    if args.iterations is not None:  # recorded in the model's configuration as what it was trained for
        profile.stylex = dataclasses.replace(profile.stylex, iterations=args.iterations)
    if args.lr_rampdown is not None:
        profile.stylex = dataclasses.replace(profile.stylex, lr_rampdown=args.lr_rampdown)
    for task in tasks:
        modes = [args.mode] if args.mode else task.modes
        for mode in modes:
            result = train_profile_model(profile, task, mode, device=args.device, force=args.force,
                                         progress=not args.no_progress, seed=args.seed)
            print(f"{task.name}/{mode}: {result.iteration} iterations -> {result.run_dir}")


def cmd_explain(args: argparse.Namespace) -> None:
    from repro.explain import explain_classes

    profile, tasks = _tasks(args)
    for task in tasks:
        for mode in ([args.mode] if args.mode else task.modes):
            for exp in explain_classes(profile, task, mode, device=args.device, force=args.force,
                                       progress=not args.no_progress, seed=args.seed).values():
                target = exp.results.get("class_names")
                name = (f"{task.name}/{mode}" + (f" seed {args.seed}" if args.seed is not None else "")
                        + (f" class {target[1]} vs rest" if target else ""))
                rates = ", ".join(f"{m} {r['flip_rate']['mean']:.3f} ± {r['flip_rate']['std']:.3f}"
                                  for m, r in exp.results["methods"].items())
                print(f"{name}: flip rate at k={profile.eval.k}: {rates}")
                obs = exp.results.get("observer") or {}
                if obs.get("available"):
                    second = ", ".join(f"{m} {r['observer']['flip_Cprime']:.3f} (C {r['observer']['flip_C_agreed']:.3f}, "
                                       f"{r['observer']['pixel_max_255']:.1f}/255 max)"
                                       for m, r in exp.results["methods"].items()
                                       if r.get("observer", {}).get("flip_Cprime") is not None)
                    print(f"{name}: second observer flip rate among agreed images: {second}")
                elif obs.get("note"):
                    print(f"{name}: {obs['note']}")


def cmd_ablation(args: argparse.Namespace) -> None:
    from pathlib import Path

    from repro.ablation import ROWS, copy_samples, measure_row, save_rows, train_row

    profile, tasks = _tasks(args)
    for task in tasks:
        for row in args.row or list(ROWS):
            result = train_row(profile, task, row, iterations=args.iterations, device=args.device,
                               force=args.force, progress=not args.no_progress)
            print(f"{task.name}/ablation/{row}: {result.iteration} iterations -> {result.run_dir}")
            if not args.train_only:
                record = measure_row(profile, task, row, device=args.device, progress=not args.no_progress)
                path = save_rows([record], args.out)
                copy_samples(profile, task, row, Path(args.out).parent)
                print(f"{task.name}/ablation/{row}: measured -> {path}")


def cmd_measure(args: argparse.Namespace) -> None:
    import json
    from pathlib import Path

    from repro.ablation import copy_last_grid, measure_model, refine_grid

    profile, tasks = _tasks(args)
    if args.refine_grid and args.refine_steps <= 0:
        raise ValueError("measure --refine-grid compares refined reconstructions with the encoder's; "
                         "give --refine-steps N (N > 0) too")
    profile = dataclasses.replace(profile, eval=dataclasses.replace(profile.eval, refine_steps=args.refine_steps))
    for task in tasks:
        run_dir = Path(args.run_dir) if args.run_dir else profile.model_dir(task.name, "stylex", args.seed)
        if args.grid:
            grid = copy_last_grid(run_dir, args.grid.format(task=task.name))
            print(f"last training grid -> {grid}" if grid else f"{run_dir} has no training grid to copy")
        if args.refine_grid:
            print(f"encoder and refined reconstructions -> "
                  f"{refine_grid(profile, task, run_dir, args.refine_grid.format(task=task.name), steps=args.refine_steps, device=args.device)}")
        record = {"task": task.name, "run_dir": str(run_dir), "label": args.label,
                  **measure_model(profile, task, run_dir, device=args.device, progress=not args.no_progress,
                                 force=args.force)}
        print(json.dumps(record))
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            with open(args.out, "a") as f:
                f.write(json.dumps(record) + "\n")


def cmd_ship_weights(args: argparse.Namespace) -> None:
    from repro.weights import ship

    profile = get_profile(args.profile, data_root=args.data_root, run_root=args.run_root)
    max_bytes = None if args.max_mb <= 0 else int(args.max_mb * 1e6)
    manifest = ship(profile, args.weights_root, max_bytes=max_bytes, stages=args.stage,
                    model_dtype="float16" if args.half else "float32",
                    classifier_dtype="float16" if args.half_classifiers else "float32")
    for entry in manifest["stages"]:
        print(f"shipped {entry['stage']}: {entry['files'][0]['file']}")
    for key, reason in manifest["not_shipped"].items():
        print(f"not shipped {key}: {reason}")
    print(f"{len(manifest['stages'])} stage(s), {manifest['total_bytes'] / 1e6:.1f} MB -> "
          f"{args.weights_root}/{profile.name}/ (manifest.json, MODEL_CARD.md)")


def cmd_install_weights(args: argparse.Namespace) -> None:
    from repro.weights import install, uninstall

    profile = get_profile(args.profile, data_root=args.data_root, run_root=args.run_root)
    if args.remove:
        for key in uninstall(profile):
            print(f"removed the shipped weights installed in {key}")
        return
    report = install(profile, args.weights_root)
    if report.source is None:
        return  # nothing shipped for this profile: silently nothing
    for key in report.installed:
        print(f"installed {key} from {report.source}")
    for key in report.present:
        print(f"kept {key}: finished in the run folder already")
    for key, reason in report.skipped.items():
        print(f"not installed {key}: {reason}")
    print(f"shipped weights: {report.summary()}")


def cmd_render_synthetic(args: argparse.Namespace) -> None:
    from repro.data import synthetic
    from repro.figures import save_image_grid

    factors = synthetic.sample_factors(args.n, seed=args.seed, split="train")
    images = synthetic.render(factors, args.size)
    path = save_image_grid(images, args.out, nrow=args.nrow)
    print(f"wrote {path}")


def cmd_readme(args: argparse.Namespace) -> None:
    from repro.report import update_readme

    changed = update_readme(args.readme, args.figures)
    print(f"README sections updated from {args.figures}/: {', '.join(changed) or 'none'}")


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], None], str]] = {
    "profiles": (cmd_profiles, "list the named profiles, or print one as JSON"),
    "custom": (cmd_custom, "make a custom profile of your own image folder (and your own classifier), checking "
                           "every input before anything is trained; saved as runs/<name>/config.json"),
    "train-classifier": (cmd_train_classifier, "train the MobileNetV2 classifier of each task"),
    "train-observer": (cmd_train_observer, "train the second observer C' of each task (another architecture "
                                           "and seed; used only to check explanations)"),
    "train-stylex": (cmd_train_stylex, "train StylEx / StylEx-alt / StyleGAN2 models (torchrun-aware)"),
    "explain": (cmd_explain, "AttFind, Wu and random baselines and their flip rates for trained models"),
    "ablation": (cmd_ablation, "train the rows of the StylEx recipe ablation (notebook 02 shows them)"),
    "measure": (cmd_measure, "the ablation table's fidelity measures (LPIPS, L1, C and C' on reconstructions, "
                             "AttFind / random flip rates of C and C', edit size) of one trained stylex model"),
    "ship-weights": (cmd_ship_weights, "copy a profile's finished networks into weights/<profile>/ with their "
                                       "sha256, a manifest and a model card (repro.weights)"),
    "install-weights": (cmd_install_weights, "verify a profile's shipped weights and place the unfinished stages "
                                             "in its run folder, so they are not trained (run_all.sh does this)"),
    "render-synthetic": (cmd_render_synthetic, "write a grid of synthetic faces to a PNG"),
    "readme": (cmd_readme, "copy the tables the default report wrote under figures/ into README.md"),
}


def _add_custom(p: argparse.ArgumentParser) -> None:
    """The flags of ``custom`` (``repro.config.custom_profile`` documents each)."""
    p.add_argument("--data-root", default=None, help="your image folder: DIR/{train,val,test}/<class>/* or "
                                                     "DIR/<class>/* (2 or more classes, images of any size)")
    p.add_argument("--name", default="custom", help="the profile's name and run folder runs/<name>/ (default: %(default)s)")
    p.add_argument("--task", default=None, help="the task's name (default: the folder's name)")
    p.add_argument("--run-root", default=None, help="where runs are written (default: runs/)")
    p.add_argument("--resolution", type=int, default=64, choices=list(RESOLUTIONS),
                   help="images are resized and centre-cropped to this square size (default: %(default)s)")
    p.add_argument("--split-seed", type=int, default=0,
                   help="seed of the 80/10/10 split of a folder without train/val/test (default: %(default)s)")
    p.add_argument("--classifier", default=None,
                   help="your classifier: a torch.export program (.pt2) or package.module:factory returning an "
                        "nn.Module (default: train a MobileNetV2 on your images)")
    p.add_argument("--classifier-weights", default=None, help="a state_dict file for --classifier (weights_only)")
    p.add_argument("--classifier-size", type=int, default=None,
                   help="the square input size your classifier was trained on (default: --resolution)")
    p.add_argument("--classifier-mean", type=float, nargs=3, default=None, metavar=("R", "G", "B"),
                   help="its input normalisation mean, for pixels in [0, 1] (default: it takes [-1, 1])")
    p.add_argument("--classifier-std", type=float, nargs=3, default=None, metavar=("R", "G", "B"),
                   help="its input normalisation std, for pixels in [0, 1]")
    p.add_argument("--epochs", type=int, default=8, help="MobileNetV2 and observer epochs (default: %(default)s)")
    p.add_argument("--channels", type=int, default=64, help="StylEx network width (default: %(default)s)")
    p.add_argument("--latent-dim", type=int, default=512, help="encoder output size (default: %(default)s)")
    p.add_argument("--iterations", type=int, default=1500, help="StylEx training steps (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=16, help="StylEx batch (default: %(default)s)")
    p.add_argument("--modes", nargs="+", default=["stylex", "stylegan2"], choices=list(MODES),
                   help="models to train (default: %(default)s)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="StylEx training seeds (default: %(default)s)")
    p.add_argument("--attfind-images", type=int, default=32, help="images AttFind runs on (default: %(default)s)")
    p.add_argument("--k", type=int, default=10, help="coordinates edited for the flip rate (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=5, help="flip-rate repeats (default: %(default)s)")
    p.add_argument("--images-per-repeat", type=int, default=80,
                   help="held-out images per flip-rate repeat (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m repro", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="command", required=True)
    for name, (func, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=func)
        if name == "profiles":
            p.add_argument("--show", default=None, help="print one profile (built-in or custom) as JSON")
            p.add_argument("--run-root", default=None, help="where custom profiles are saved (default: runs/)")
        elif name == "custom":
            _add_custom(p)
        elif name == "readme":
            p.add_argument("--readme", default="README.md")
            p.add_argument("--figures", default="figures")
        elif name == "render-synthetic":
            p.add_argument("--n", type=int, default=32, help="number of faces")
            p.add_argument("--size", type=int, default=64, help="pixels (power of two, 32..256)")
            p.add_argument("--seed", type=int, default=0)
            p.add_argument("--nrow", type=int, default=8, help="faces per row")
            p.add_argument("--out", default="synthetic_faces.png", help="output PNG")
        elif name in ("ship-weights", "install-weights"):
            p.add_argument("--profile", default="default", help=PROFILE_HELP)
            p.add_argument("--data-root", default=None, help="folder holding afhq/, celeba/, ffhq/ (paper profiles)")
            p.add_argument("--run-root", default=None, help="where runs are (default: runs/)")
            p.add_argument("--weights-root", default="weights", help="shipped weights folder (default: %(default)s)")
            if name == "ship-weights":
                p.add_argument("--max-mb", type=float, default=30.0,
                               help="refuse to ship more than this many MB (0: no cap; default: %(default)s)")
                p.add_argument("--half", action="store_true",
                               help="store the generative models' weights as float16 (half the size; they load "
                                    "back into float32 networks)")
                p.add_argument("--half-classifiers", action="store_true",
                               help="store the classifiers' (C and C') weights as float16 too")
                p.add_argument("--stage", action="append", default=None,
                               help="ship only these stages: <task>/<component> or a pattern such as '*/stylex*' "
                                    "(repeatable; default: every finished stage)")
            else:
                p.add_argument("--remove", action="store_true",
                               help="remove what an earlier install placed (unchanged files only), so it is trained")
        else:
            _add_common(p)
            p.add_argument("--force", action="store_true", help="retrain even if a finished run exists")
        if name in ("train-stylex", "explain"):
            p.add_argument("--mode", default=None, choices=list(MODES),
                           help="model (default: every mode the profile lists for the task)")
        if name == "ablation":
            from repro.ablation import ROWS
            p.add_argument("--row", action="append", choices=list(ROWS), help="row(s) to train (default: all)")
            p.add_argument("--iterations", type=int, default=1500, help="iterations per row (default: %(default)s)")
            p.add_argument("--train-only", action="store_true", help="train, but do not measure the rows")
            p.add_argument("--out", default="figures/ablation.json", help="where the measured rows are merged")
        if name == "measure":
            p.add_argument("--seed", type=int, default=None,
                           help="the model's training seed, one of the profile's seeds (default: the primary one)")
            p.add_argument("--run-dir", default=None, help="measure the stylex model in this folder instead")
            p.add_argument("--label", default="", help="what this model is, for the record")
            p.add_argument("--grid", default=None,
                           help="also copy the run's last training grid (held-out originals over "
                                "reconstructions) to this PNG ({task} is replaced by the task)")
            p.add_argument("--out", default=None, help="append the record to this JSON Lines file")
            p.add_argument("--refine-steps", type=int, default=0,
                           help="refine each image's encoding by this many steps of per-image optimisation "
                                "before every measure (EvalConfig.refine_steps; its explanation is kept in "
                                "the run's refine-N/ folder) (default: %(default)s, the encoder's w)")
            p.add_argument("--refine-grid", default=None,
                           help="with --refine-steps: also write held-out originals over the encoder's and the "
                                "refined reconstructions to this PNG ({task} is replaced by the task)")
        if name == "explain":
            p.add_argument("--seed", type=int, default=None,
                           help="the model's training seed, one of the profile's seeds (default: the primary one)")
        if name == "train-stylex":
            p.add_argument("--iterations", type=int, default=None, help="override the profile's iterations")
            p.add_argument("--lr-rampdown", type=float, default=None, metavar="SHARE",
                           help="the learning rates fall on a half cosine to 0 over this last share of the "
                                "iterations (default: the profile's)")
            p.add_argument("--precision", default=None, choices=list(PRECISIONS),
                           help="fp32 (reference), tf32 (CUDA), bf16 autocast, or auto (bf16 where the device "
                                "computes it natively, else fp32); checked against fp32 at the start (default: "
                                "the profile's)")
            p.add_argument("--channels-last", action="store_true", help="NHWC conv layout (GPU)")
            p.add_argument("--seed", type=int, default=None,
                           help="training seed, one of the profile's seeds (default: the primary one)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; a user error prints ``error: <message>`` (no traceback) and returns 2.

    User errors: ``ValueError`` (bad names and values; ``repro.data.real.DataError`` and
    ``repro.user_classifier.ClassifierError`` are ones),
    ``OSError`` (missing files, unwritable or full run directories, ``FileExistsError``),
    ``repro.checkpoint.CheckpointError``, and the training faults ``NonFiniteError``,
    ``PrecisionMismatch`` and the classifier's ``FloatingPointError`` (their messages say what
    was kept and what to do). Ctrl-C (or a signal that stopped training) prints one
    line and returns 130 (or the signal's shell code).
    """
    from repro.checkpoint import CheckpointError
    from repro.precision import PrecisionMismatch
    from repro.training import NonFiniteError

    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "iterations", None) is not None and args.iterations < 1:
        parser.error(f"--iterations must be a positive number of training steps, got {args.iterations}; "
                     f"give 1 or more, or leave it out to use the profile's")
    try:
        args.func(args)
    except (ValueError, OSError, CheckpointError, NonFiniteError, PrecisionMismatch, FloatingPointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        detail = str(err) or "re-run the same command to go on from what was saved"
        print(f"interrupted: {detail}", file=sys.stderr)
        return int(getattr(err, "exit_code", 130))
    return 0


if __name__ == "__main__":
    sys.exit(main())
