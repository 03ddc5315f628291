"""Training of StylEx (encoder only), StylEx-alt (encoder + mapping-network passes) and a plain
StyleGAN2, single process or under ``torchrun`` (DistributedDataParallel).

The loop owns the optimisers, the EMA copies, the lazy-regularisation phases, checkpoints and
logging; it knows nothing of AttFind. One iteration is:

1. discriminator phase: fakes from a no-grad generator pass, then reals, each its own
   forward/backward (so DDP syncs each); every ``r1_interval`` iterations an R1 phase on reals;
2. generator phase: generator (+ encoder, + mapping) forward, every loss term, one backward
   (E(x) of the latent term is read from w = [E(x), C(x)], not computed twice); every
   ``pl_interval`` iterations a path-length phase;
3. EMA update of generator, encoder and mapping network together, so evaluation uses a
   matching pair (an EMA generator with the raw encoder, as earlier code paired them, is not one).

Modes (``StylExModel.mode``; the model and its architecture live in ``repro.model``):
    stylex      w = [E(x), softmax C(x)]; reconstruction, latent and classifier losses.
    stylex-alt  as stylex, but every ``alt_ratio``-th iteration is a z-pass:
                w = [mapping(z), p] with p the classifier probabilities of the real images of the
                same batch (the original authors' recipe); adversarial + classifier loss only.
    stylegan2   w = mapping(z); adversarial loss only; no encoder (the report's
                "AttFind on StyleGAN2" column).

Outputs in the run directory: ``config.json``, ``metadata.json`` (device, LPIPS status, ...),
``log.jsonl`` (every loss term by name), ``samples/`` (reconstruction / sample grids),
``checkpoints/ckpt-NNNNNNN.pt`` (full state, last K kept) and, when finished, ``model.pt``
(the EMA networks, config and architecture; ``repro.model.load_stylex`` reads it): its presence
marks the stage as done.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
import signal
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from repro.checkpoint import check_run_dir, save_checkpoint
from repro.config import MODES, DataConfig, Profile, StylExConfig, TaskConfig, to_dict
from repro.data import ImageSet, class_names, load_split
from repro.losses import StylExLoss, d_fake_loss, d_real_loss
from repro.inference import classifier_probs
from repro.model import FINAL, StylExArch, StylExModel, TrainResult, load_stylex
from repro.networks import Discriminator
from repro.perceptual import LPIPSLoss
from repro.precision import autocast, matmul_mode, memory_format, numerical_check, require_close
from repro.precision import resolve as resolve_precision
from repro.precision import validate as validate_precision
from repro.stage import StageDir
from repro.utils import pick_device, seed_everything, tqdm, write_atomic

class NonFiniteError(RuntimeError):
    """A loss or weight became NaN/Inf; nothing was written over the last good checkpoint."""


class TrainingStopped(KeyboardInterrupt):
    """SIGINT/SIGTERM stopped training after a final checkpoint; re-running the command resumes.

    A ``KeyboardInterrupt`` so that notebooks and scripts stop instead of carrying on with a
    half-trained model; ``exit_code`` is the shell convention (128 + signal number).
    """

    def __init__(self, signal_name: str, iteration: int, checkpoint: Path | None):
        self.signal_name, self.iteration, self.checkpoint = signal_name, iteration, checkpoint
        self.exit_code = 128 + int(getattr(signal, signal_name))
        super().__init__(f"stopped by {signal_name} at iteration {iteration}; checkpoint {checkpoint}. "
                         f"Re-run the same command to resume from it.")


# ---------------------------------------------------------------------------------------------
# distributed helpers

def _dist_info() -> tuple[int, int, int]:
    """(rank, local_rank, world_size); (0, 0, 1) outside torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 0, 1
    return int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), world


def _init_distributed(device: torch.device) -> None:
    if dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)


# ---------------------------------------------------------------------------------------------
# the loop

def ema_beta(config: StylExConfig, images_seen: int) -> float:
    """This iteration's EMA decay, with stylegan2-ada's ramp-up.

    ``config.ema_decay`` fixes the EMA's half-life in images (batch_size * ln 0.5 / ln decay).
    With ``ema_rampup`` r the half-life is at most r x the images seen so far, so the EMA of a
    young run is not dominated by its random initialisation (decay 0.995 with no ramp-up keeps
    13 % of it after 400 iterations).
    """
    half_life = config.batch_size * math.log(0.5) / math.log(config.ema_decay)
    if config.ema_rampup:
        half_life = min(half_life, images_seen * config.ema_rampup)
    return 0.5 ** (config.batch_size / max(half_life, 1e-8))


def lr_factor(config: StylExConfig, iteration: int) -> float:
    """The share of its configured learning rate every optimiser uses at ``iteration`` (0-based).

    1 throughout without ``config.lr_rampdown``. With a ramp-down share r, 1 until the last
    ``r * config.iterations`` iterations begin, then a half cosine that reaches 0 after the last
    one. The horizon is the configured length: a run stopped early (``train_stylex``'s
    ``iterations``) and resumed follows the same schedule as one trained straight through.
    """
    if not config.lr_rampdown:
        return 1.0
    start = config.iterations * (1.0 - config.lr_rampdown)
    t = (iteration - start) / (config.iterations - start)
    return 1.0 if t <= 0 else 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))


def _set_lr(optimisers: list[tuple[torch.optim.Optimizer, list[float]]], factor: float) -> None:
    for opt, base in optimisers:
        for group, lr in zip(opt.param_groups, base):
            group["lr"] = lr * factor


# What one training iteration computes, recorded in metadata.json. 1 (runs without the field too):
# the discriminator's fakes come from their own no-grad generator pass, as stylegan2 does. Models
# with 2 were trained by a version (2026-11-28) whose one generator pass per iteration served both
# phases (the discriminator on it detached): 1.17x the images per CPU second, but on synth-age
# seed 1, trained both ways, C' read the reconstructions at chance (0.50 against 0.70) and the
# top-10 edits flipped C' on 0.12 against 0.42 (synth-species seed 1: mixed; README, Speed), so
# it was reverted.
TRAIN_STEP = 1


@torch.no_grad()
def _ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for p_ema, p in zip(ema.parameters(), model.parameters()):
        p_ema.lerp_(p.detach(), 1.0 - decay)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)


def _adam(params, lr: float, betas: tuple[float, float], interval: int) -> torch.optim.Adam:
    """Adam with StyleGAN2's lazy-regularisation correction (lr and betas scaled by k/(k+1))."""
    ratio = interval / (interval + 1) if interval > 0 else 1.0
    return torch.optim.Adam(params, lr=lr * ratio, betas=(betas[0] ** ratio, betas[1] ** ratio), eps=1e-8)


def _checkpoints(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "checkpoints").glob("ckpt-*.pt"))


def _remove_stale_temp_files(run_dir: Path) -> None:
    """Half-written checkpoints of a killed run (``.ckpt-*.tmp-PID``) are never loaded: delete them."""
    for tmp in (run_dir / "checkpoints").glob(".ckpt-*.tmp-*"):
        tmp.unlink(missing_ok=True)


def _trim_log(log_file: Path, last_iteration: int) -> None:
    """Keep the log lines of iterations <= ``last_iteration`` (the resumed checkpoint's).

    A killed run may have logged iterations past its last checkpoint, and its last line may be
    cut in half; the resumed run logs those iterations again, so the log stays one line per
    logged iteration, in order.
    """
    if not log_file.exists():
        return
    kept = []
    for line in log_file.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # the half-written last line of a killed run
        if record.get("iteration", 0) <= last_iteration:
            kept.append(line)
    write_atomic(log_file, "".join(f"{line}\n" for line in kept))


def train_stylex(mode: str, data: DataConfig, config: StylExConfig, classifier: nn.Module,
                 run_dir: str | Path, *, device: str = "auto", force: bool = False,
                 progress: bool | None = None, iterations: int | None = None,
                 callbacks: list[Callable[[int, dict[str, float]], None]] | None = None,
                 held_out: ImageSet | None = None) -> TrainResult:
    """Train one model (resuming from the newest valid checkpoint) and return its EMA networks.

    ``classifier`` is frozen. ``callbacks`` are called as ``cb(iteration, logged_terms)`` on every
    log step (e.g. a live plot in a notebook). ``held_out`` images are used for the
    reconstruction grids (default: the first images of the validation split).
    """
    run_dir = Path(run_dir)
    rank, local_rank, world = _dist_info()
    dev = pick_device(device)
    if dev.type == "cuda" and world > 1:
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    validate_precision(config.precision, dev)
    precision = resolve_precision(config.precision, dev)  # "auto": bf16 where the device has it natively
    if world > 1:
        _init_distributed(dev)
    total_iters = iterations if iterations is not None else config.iterations
    arch = StylExArch.of(mode, data.resolution, config, len(class_names(data)))
    full_config = {**arch.to_dict(), "data": to_dict(data), "stylex": to_dict(config), "iterations": total_iters}

    # The stage protocol (repro.stage); checkpoints must match the architecture only. strict:
    # another model living here (another architecture) is never trained over silently.
    stage = StageDir(run_dir, FINAL, full_config, config_keys=arch.keys)
    done = stage.reuse(lambda: load_stylex(run_dir, device=dev, expected=arch), force=force, strict=True)
    if done is not None:
        return done
    if force and rank == 0:
        for path in _checkpoints(run_dir) + [stage.result]:
            path.unlink(missing_ok=True)
    if world > 1:
        dist.barrier()
    if rank == 0:
        stage.begin()
        _remove_stale_temp_files(run_dir)

    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} is not divisible by {world} processes: each process "
                         f"takes an equal share. Choose a StylExConfig.batch_size that is a multiple of {world}, "
                         f"or start a number of processes (torchrun --nproc-per-node) that divides "
                         f"{config.batch_size}")
    batch = config.batch_size // world
    seed_everything(config.seed)  # the same initialisation on every process
    train = load_split(data, "train")
    held_out = held_out if held_out is not None else load_split(data, "val")
    classifier = classifier.to(dev).eval().requires_grad_(False)
    probs_all = classifier_probs(classifier, train, dev)
    if probs_all.shape[1] != arch.num_classes:
        raise ValueError(f"the classifier gives {probs_all.shape[1]} outputs, but {data.task}'s data has "
                         f"{arch.num_classes} classes; train or import the classifier of this data "
                         f"(python -m repro train-classifier --force)")
    if dev.type == "cuda":
        train = train.to(dev)  # the whole uint8 set on the GPU: batches are an index away

    layout = memory_format(config.channels_last)
    model = arch.build().to(dev, memory_format=layout)
    disc = Discriminator(data.resolution, config.channels, num_classes=arch.num_classes).to(dev, memory_format=layout)
    if rank == 0:  # a checkpoint holds model, EMA, discriminator and two Adam moments: ~5x the weights
        weight_bytes = sum(p.numel() * p.element_size() for m in (model, disc) for p in m.parameters())
        check_run_dir(run_dir, need_bytes=max(50_000_000, 2 * 5 * weight_bytes))
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    torch.manual_seed(config.seed + 7919 * rank)  # noise and z differ per process
    w = config.losses
    lpips = LPIPSLoss(w.lpips_net) if w.lpips > 0 else None
    lpips_status = lpips.status if lpips is not None else "disabled (weight 0)"
    if lpips is not None:
        lpips = lpips.to(dev) if lpips.available else None
    loss = StylExLoss(w, lpips)

    g_params = list(model.generator.parameters()) + (list(model.mapping.parameters()) if model.mapping else [])
    opt_g = _adam(g_params, config.lr, config.betas, w.pl_interval if w.pl_weight > 0 else 0)
    opt_e = (_adam(model.encoder.parameters(), config.encoder_lr or config.lr, config.betas, 0)
             if model.encoder is not None else None)
    opt_d = _adam(disc.parameters(), config.lr, config.betas, w.r1_interval if w.r1_gamma > 0 else 0)
    # The configured learning rates (a resumed optimiser's state holds the last scheduled ones).
    schedule = [(opt, [g["lr"] for g in opt.param_groups]) for opt in (opt_g, opt_e, opt_d) if opt is not None]
    batch_gen = torch.Generator().manual_seed(config.seed * 1000 + rank)
    start_iter, pl_mean = 0, torch.zeros((), device=dev)

    state = stage.resume(reversed(_checkpoints(run_dir)), map_location=dev) if not force else None
    if state is not None:
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        disc.load_state_dict(state["disc"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        if opt_e is not None:
            opt_e.load_state_dict(state["opt_e"])
        start_iter = int(state["iteration"])
        pl_mean = state["pl_mean"].to(dev)
        batch_gen.set_state(state["batch_gen"])
        torch.set_rng_state(state["torch_rng"])
        if dev.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"], dev)
        if rank == 0:
            _trim_log(run_dir / "log.jsonl", start_iter)
            print(f"resuming {run_dir} at iteration {start_iter}")
    elif rank == 0:
        _trim_log(run_dir / "log.jsonl", 0)  # a fresh start: no lines of an earlier, lost attempt

    if world > 1:
        ids = [dev.index] if dev.type == "cuda" else None
        model_ddp = nn.parallel.DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False,
                                                        find_unused_parameters=True)
        disc_ddp = nn.parallel.DistributedDataParallel(disc, device_ids=ids, broadcast_buffers=False)
    else:
        model_ddp, disc_ddp = model, disc

    metadata = {"mode": mode, "lpips": lpips_status, "device": str(dev), "world_size": world,
                "torch": torch.__version__, "batch_per_process": batch,
                "precision": precision, "channels_last": config.channels_last,
                **({"precision_requested": config.precision} if config.precision != precision else {}),
                "loss_weights": to_dict(w), "started_at_iteration": start_iter, "train_step": TRAIN_STEP}
    if precision != "fp32":  # trusted only after a fixed render agrees with fp32
        metadata["precision_check"] = numerical_check(model, classifier, precision, dev)
    if rank == 0:
        write_atomic(run_dir / "metadata.json", json.dumps(metadata, indent=2) + "\n")
    if "precision_check" in metadata:
        require_close(metadata["precision_check"])  # after metadata.json, which records the numbers
    if rank == 0:
        if lpips_status.startswith("unavailable"):
            print(f"LPIPS is unavailable ({lpips_status}); training without the LPIPS term. "
                  f"README.md, 'LPIPS offline', says where to place its weights.")

    amp = partial(autocast, precision, dev)
    stop = {"signal": None}
    n_grid = min(8, len(held_out))  # a small folder of your own may hold fewer than 8 validation images
    grid_x = held_out.batch(slice(0, n_grid), dev)
    grid_probs = classifier_probs(classifier, ImageSet(held_out.images[:n_grid], held_out.labels[:n_grid]), dev)
    grid_noise = [t[:n_grid] for t in model.generator.make_noise(8, generator=torch.Generator().manual_seed(0),
                                                                 device=dev)]
    grid_z = torch.randn(8, config.latent_dim, generator=torch.Generator().manual_seed(1)).to(dev)[:n_grid]

    def make_state(iteration: int) -> dict[str, Any]:
        s = {"config": full_config, "arch": arch.to_dict(), "iteration": iteration, "model": model.state_dict(),
             "ema": ema.state_dict(), "disc": disc.state_dict(), "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
             "pl_mean": pl_mean.detach().cpu(), "batch_gen": batch_gen.get_state(),
             "torch_rng": torch.get_rng_state(), "lpips": lpips_status}
        if opt_e is not None:
            s["opt_e"] = opt_e.state_dict()
        if dev.type == "cuda":
            s["cuda_rng"] = torch.cuda.get_rng_state(dev)
        return s

    def write_checkpoint(iteration: int) -> Path | None:
        if rank != 0:
            return None
        # Never write a non-finite model: the newest file on disk stays the last good one.
        for name, module in (("generator/encoder weights", model), ("discriminator weights", disc),
                             ("EMA weights", ema)):
            _check_finite(iteration, {name: _weights_finite(module)}, run_dir)
        path = save_checkpoint(run_dir / "checkpoints" / f"ckpt-{iteration:07d}.pt", make_state(iteration))
        for old in _checkpoints(run_dir)[:-config.keep_checkpoints]:
            old.unlink(missing_ok=True)
        return path

    log_file = run_dir / "log.jsonl"
    bar = tqdm(total=total_iters, initial=start_iter, desc=f"{mode} {data.task}",
               enabled=(progress if rank == 0 else False))
    t_last, it_last = time.perf_counter(), start_iter
    iteration = start_iter
    precision_scope = contextlib.ExitStack()
    precision_scope.enter_context(matmul_mode(precision))  # TF32 on/off, restored in `finally`
    handlers = _install_stop_handlers(stop)  # every rank: torchrun forwards SIGTERM to all of them
    try:
        while iteration < total_iters:
            _set_lr(schedule, lr_factor(config, iteration))
            idx = torch.randint(len(train), (batch,), generator=batch_gen)
            x = train.batch(idx.to(train.images.device), dev).contiguous(memory_format=layout)
            probs = probs_all[idx.to(dev)]
            z_pass = mode == "stylegan2" or (mode == "stylex-alt" and iteration % config.alt_ratio == 1)
            z = torch.randn(batch, config.latent_dim, device=dev) if z_pass else None
            terms: dict[str, float] = {}

            # -- discriminator phase: fakes (their own no-grad generator pass, as stylegan2 does;
            # see TRAIN_STEP), then reals, each its own forward/backward
            disc.requires_grad_(True)
            with torch.no_grad(), amp():
                gx, _ = model(x, probs, z)
                probs_gx = F.softmax(classifier(gx).float(), dim=1)
            # Each pass its own forward and backward: under DDP a second forward must not start
            # before the first one's gradients are reduced.
            with amp():
                d_fake = d_fake_loss(disc_ddp(gx, probs_gx).float())
            _check_finite(iteration + 1, {"d_fake": d_fake}, run_dir)
            d_fake.backward()
            with amp():
                d_real = d_real_loss(disc_ddp(x, probs).float())
            _check_finite(iteration + 1, {"d_real": d_real}, run_dir)
            d_real.backward()
            terms["d_adv"] = d_fake.item() + d_real.item()
            if w.r1_gamma > 0 and iteration % w.r1_interval == 0:
                x_r1 = x.detach().requires_grad_(True)
                r1 = loss.r1_terms(disc_ddp(x_r1, probs), x_r1)
                _check_finite(iteration + 1, {"r1": r1["total"]}, run_dir)
                r1["total"].backward()
                terms["r1"] = r1["r1"].item()
            opt_d.step()
            opt_d.zero_grad(set_to_none=True)
            disc.requires_grad_(False)

            # -- generator (+ encoder, + mapping) phase
            with amp():  # network passes in reduced precision (bf16), the loss terms in fp32
                gx, w_used = model_ddp(x, probs, z)
                logits_gx = classifier(gx).float()
                fake_logits = disc(gx, F.softmax(logits_gx, dim=1).detach()).float()
                if z is None:
                    e_x = w_used[:, :model.latent_dim].detach().float()  # E(x), from w = [E(x), C(x)]
                    e_gx = model.encoder(gx).float()
            gx = gx.float()
            if z is None:
                g_terms = loss.generator_terms(x, gx, fake_logits, e_x, e_gx,
                                               torch.log(probs.clamp_min(1e-8)), logits_gx)
            elif model.conditional:
                g_terms = loss.generator_terms(None, gx, fake_logits, None, None,
                                               torch.log(probs.clamp_min(1e-8)), logits_gx)
            else:
                g_terms = loss.generator_terms(None, gx, fake_logits, None, None, None, None)
            _check_finite(iteration + 1, g_terms, run_dir)
            total = g_terms["total"]
            if w.pl_weight > 0 and iteration % w.pl_interval == 0:
                # Part of the same backward, so that DDP all-reduces its gradients too. In fp32,
                # outside autocast: w from the mapping network is bf16 under precision bf16.
                w_pl = w_used[:max(1, batch // 2)].detach().float().requires_grad_(True)
                pl = loss.path_length_terms(model.generator(w_pl), w_pl, pl_mean)
                _check_finite(iteration + 1, {"pl": pl["total"]}, run_dir)
                total = total + pl["total"]
                pl_mean = pl["new_mean"].detach()
                terms["pl"] = pl["pl"].item()
            total.backward()
            opt_g.step()
            opt_g.zero_grad(set_to_none=True)
            if opt_e is not None:
                opt_e.step()
                opt_e.zero_grad(set_to_none=True)
            _ema_update(ema, model, ema_beta(config, (iteration + 1) * config.batch_size))
            iteration += 1
            terms.update({k: v.item() for k, v in g_terms.items() if k != "total"})
            terms["g_total"] = g_terms["total"].item()
            bar.update(1)

            if rank == 0 and (iteration % config.log_every == 0 or iteration == total_iters):
                now = time.perf_counter()
                sec = (now - t_last) / max(1, iteration - it_last)
                t_last, it_last = now, iteration
                record = {"iteration": iteration, "z_pass": bool(z_pass), **terms, "sec_per_iter": sec,
                          "images_per_sec": config.batch_size / sec}
                with open(log_file, "a") as f:
                    f.write(json.dumps(record) + "\n")
                bar.set_postfix({k: f"{terms[k]:.3f}" for k in ("d_adv", "g_total", "img_l1") if k in terms})
                for cb in callbacks or []:
                    cb(iteration, record)
            if rank == 0 and (iteration % config.sample_every == 0 or iteration == total_iters):
                _write_samples(ema, grid_x, grid_probs, grid_z, grid_noise, run_dir / "samples" / f"iter-{iteration:07d}.png")
            stop_signal = _agree_on_stop(stop["signal"], world, dev)
            if iteration % config.checkpoint_every == 0 or stop_signal is not None:
                written = write_checkpoint(iteration)
            if stop_signal is not None:
                if world > 1:
                    dist.barrier()
                stopped = TrainingStopped(stop_signal, iteration, written if rank == 0 else None)
                if rank == 0:
                    print(stopped, flush=True)
                raise stopped
    finally:
        bar.close()
        _restore_handlers(handlers)
        precision_scope.close()

    if rank == 0 and iteration >= total_iters:
        write_checkpoint(iteration)
        metadata["finished_iteration"] = iteration
        write_atomic(run_dir / "metadata.json", json.dumps(metadata, indent=2) + "\n")
        save_checkpoint(stage.result, {"config": full_config, "arch": arch.to_dict(), "ema": ema.state_dict(),
                                "metadata": json.dumps(metadata)})
    if world > 1:
        dist.barrier()
    return TrainResult(run_dir, iteration, ema, metadata)


def train_profile_model(profile: Profile, task: TaskConfig, mode: str, *, device: str = "auto",
                        force: bool = False, progress: bool | None = None, iterations: int | None = None,
                        callbacks=None, seed: int | None = None) -> TrainResult:
    """Train one model of a profile, with the task's trained classifier (which must exist).

    ``seed`` (one of ``profile.seeds``; None: the primary) sets ``StylExConfig.seed`` and the run
    directory (``profile.model_dir``)."""
    from repro.classifier import load_classifier

    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of: {', '.join(MODES)}")
    if seed is not None and seed not in profile.seeds:
        raise ValueError(f"seed {seed} is not one of profile {profile.name!r}'s training seeds {profile.seeds}")
    clf_dir = profile.run_dir(task.name, "classifier")
    if not (clf_dir / "classifier.pt").exists():
        raise FileNotFoundError(f"no trained classifier in {clf_dir}; run "
                                f"`python -m repro train-classifier --profile {profile.name} --task {task.name}` first")
    classifier = load_classifier(clf_dir).model
    config = profile.stylex if seed is None else dataclasses.replace(profile.stylex, seed=seed)
    return train_stylex(mode, task.stylex_data, config, classifier, profile.model_dir(task.name, mode, seed),
                        device=device, force=force, progress=progress, iterations=iterations, callbacks=callbacks)


# ---------------------------------------------------------------------------------------------
# safety helpers

def _weights_finite(*modules: nn.Module) -> torch.Tensor:
    """0 when every parameter of ``modules`` is finite, else NaN (one reduction per tensor)."""
    ok = all(bool(torch.isfinite(p).all()) for m in modules for p in m.parameters())
    return torch.tensor(0.0 if ok else float("nan"))


def _agree_on_stop(signal_name: str | None, world: int, device: torch.device) -> str | None:
    """The stop request of any process, seen by every process (so all stop at the same iteration)."""
    if world == 1:
        return signal_name
    code = torch.tensor([0 if signal_name is None else int(getattr(signal, signal_name))], device=device)
    dist.all_reduce(code, op=dist.ReduceOp.MAX)
    return None if code.item() == 0 else signal.Signals(int(code.item())).name


def _check_finite(iteration: int, terms: dict[str, torch.Tensor], run_dir: Path) -> None:
    """Raise ``NonFiniteError`` naming the iteration (1-based), the term and the last good checkpoint."""
    # The named terms first: "total" is non-finite whenever one of them is, and says less.
    for name, value in sorted(terms.items(), key=lambda kv: kv[0] == "total"):
        if not torch.isfinite(value).all():
            ckpts = _checkpoints(run_dir)
            last = str(ckpts[-1]) if ckpts else "none yet (the run stopped before its first checkpoint)"
            raise NonFiniteError(
                f"non-finite {name} (NaN or Inf) in iteration {iteration} of {run_dir}; training stopped "
                f"and nothing was written over the checkpoints. Last good checkpoint: {last}. "
                f"Re-running resumes from it; if the same iteration fails again, lower the learning rate "
                f"(StylExConfig.lr) or check the data for broken images.")


def _install_stop_handlers(stop: dict[str, Any]) -> dict[int, Any]:
    """SIGINT/SIGTERM ask the loop to write a checkpoint and stop after the current iteration."""
    def handler(signum, _frame):
        if stop["signal"] is not None:  # asked twice: stop now (checkpoints on disk are whole files)
            raise KeyboardInterrupt(f"{signal.Signals(signum).name} received twice")
        stop["signal"] = signal.Signals(signum).name
        print(f"{stop['signal']}: stopping after this iteration with a checkpoint "
              f"(send it again to stop at once)", flush=True)

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread (e.g. some notebook runners)
            pass
    return previous


def _restore_handlers(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


@torch.no_grad()
def _write_samples(ema: StylExModel, x: torch.Tensor, probs: torch.Tensor, z: torch.Tensor,
                   noise: list[torch.Tensor], path: Path) -> None:
    """Originals over EMA reconstructions (StylEx modes) or EMA samples (stylegan2)."""
    from repro.figures import save_image_grid

    if ema.encoder is not None:
        rec = ema.generator(ema.encode(x, probs), noise)
        images = torch.cat([x, rec])
    else:
        images = ema.generator(ema.sample_w(z), noise)
    save_image_grid(images, path, nrow=len(x), scale=2)
