"""The trained model as its readers see it: the architecture, the networks and the finished file.

:class:`StylExArch` (frozen) is everything that shapes a model's networks: mode, resolution,
width, latent size and mapping depth. :class:`StylExModel` holds the networks of one mode
(generator, encoder, mapping network as the mode needs). A finished run's ``model.pt``
(:data:`FINAL`) stores the EMA networks, the run's config and the architecture as a plain dict
(``"arch"``); :func:`load_stylex` rebuilds the networks from it. Checkpoints written before the
``"arch"`` entry existed carry the same fields at the top of their ``"config"`` and load the same.

Training (``repro.training``) writes these files; everything else (evaluation, explanations,
figures, the explorer, the user study) reads them through this module.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from repro.checkpoint import load_checkpoint
from repro.config import MODES, StylExConfig
from repro.networks import Encoder, Generator, MappingNetwork

NUM_CLASSES = 2
FINAL = "model.pt"  # a finished run's EMA networks; its presence marks the stage as done


@dataclass(frozen=True)
class StylExArch:
    """The architecture of one model: what a checkpoint must match to be loaded into its networks.

    Parameters:
        mode: one of ``MODES`` (stylex | stylex-alt | stylegan2).
        resolution: image size in pixels.
        channels: uniform width of every network.
        latent_dim: encoder / mapping output size.
        mapping_layers: depth of the mapping network (a stylex model has none; see :attr:`keys`).
        num_classes: K, the size of the classifier's softmax the generator is conditioned on (2: the
            paper's two-class tasks; recorded only when it is not 2, so older checkpoints load as they were).
    """

    mode: str
    resolution: int
    channels: int
    latent_dim: int = 512
    mapping_layers: int = 8
    num_classes: int = NUM_CLASSES

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; choose one of: {', '.join(MODES)}")

    @classmethod
    def of(cls, mode: str, resolution: int, config: StylExConfig, num_classes: int = NUM_CLASSES) -> "StylExArch":
        """The architecture a training config gives a model of ``mode`` at ``resolution`` for K classes."""
        return cls(mode, resolution, config.channels, config.latent_dim, config.mapping_layers, num_classes)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StylExArch":
        """From a dict holding the fields (other keys, e.g. the rest of a run's config, are ignored;
        a missing ``num_classes`` is 2)."""
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)
                      if f.name != "num_classes" or f.name in data})

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any]) -> "StylExArch":
        """The architecture a checkpoint records: its ``"arch"`` entry, or, in checkpoints written
        before that entry existed, the same fields at the top of its ``"config"``."""
        return cls.from_dict(state["arch"] if "arch" in state else state["config"])

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict; ``num_classes`` only when it is not 2 (what two-class checkpoints always held)."""
        data = dataclasses.asdict(self)
        if self.num_classes == NUM_CLASSES:
            del data["num_classes"]
        return data

    @property
    def keys(self) -> tuple[str, ...]:
        """The fields that shape a model of this mode: a stylex model has no mapping network, so its
        depth is not one of them (a stylex checkpoint loads whatever mapping_layers the profile names);
        ``num_classes`` is one only when it is not 2 (see :meth:`to_dict`)."""
        return tuple(name for name in self.to_dict() if not (self.mode == "stylex" and name == "mapping_layers"))

    def build(self) -> "StylExModel":
        """Freshly initialised networks of this architecture."""
        return StylExModel(self.mode, self.resolution, self.channels, self.latent_dim, self.mapping_layers,
                           self.num_classes)


class StylExModel(nn.Module):
    """The generator side of one model: generator, encoder and mapping network as its mode needs.

    Parameters:
        mode: one of ``MODES``.
        resolution: image size.
        channels: uniform width of every network.
        latent_dim: encoder / mapping output size.
        mapping_layers: depth of the mapping network.
        num_classes: K, the size of the softmax C(x) that conditions the generator (StylEx modes).

    ``arch`` is the same as a :class:`StylExArch`.
    """

    def __init__(self,
                 mode: str,             # stylex | stylex-alt | stylegan2
                 resolution: int,       # image size in pixels
                 channels: int,         # conv width
                 latent_dim: int = 512,  # E(x) / mapping(z) size
                 mapping_layers: int = 8,  # mapping network depth
                 num_classes: int = NUM_CLASSES):  # K: size of the class input
        super().__init__()
        self.arch = StylExArch(mode, resolution, channels, latent_dim, mapping_layers, num_classes)
        self.mode = mode
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.conditional = mode != "stylegan2"
        w_dim = latent_dim + num_classes if self.conditional else latent_dim
        self.generator = Generator(resolution, channels, w_dim=w_dim)
        self.encoder = Encoder(resolution, channels, out_dim=latent_dim) if mode != "stylegan2" else None
        self.mapping = (MappingNetwork(z_dim=latent_dim, w_dim=latent_dim, num_layers=mapping_layers)
                        if mode != "stylex" else None)

    def encode(self, x: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """w = [E(x), softmax C(x)] for real images (StylEx modes)."""
        if self.encoder is None:
            raise ValueError("a stylegan2 model has no encoder; sample w with sample_w(z)")
        return torch.cat([self.encoder(x), probs], dim=1)

    def sample_w(self, z: torch.Tensor, probs: torch.Tensor | None = None) -> torch.Tensor:
        """w from the mapping network: [mapping(z), p] (stylex-alt) or mapping(z) (stylegan2)."""
        if self.mapping is None:
            raise ValueError("a stylex model has no mapping network; encode real images instead")
        w = self.mapping(z)
        return torch.cat([w, probs], dim=1) if self.conditional else w

    def forward(self, x: torch.Tensor | None, probs: torch.Tensor | None, z: torch.Tensor | None,
                noise: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One generator pass (the unit DDP wraps): an encoder pass when ``z`` is None, else a z-pass.
        Returns (image, w)."""
        w = self.encode(x, probs) if z is None else self.sample_w(z, probs)
        return self.generator(w, noise), w


@dataclass
class TrainResult:
    """A trained model: where its run ended.

    Parameters:
        run_dir: the run directory.
        iteration: iterations completed.
        model: the EMA networks (eval mode).
        metadata: the contents of ``metadata.json``.
    """

    run_dir: Path
    iteration: int
    model: StylExModel
    metadata: dict[str, Any] = field(default_factory=dict)


def load_stylex(run_dir: str | Path, *, device: str | torch.device = "cpu",
                expected: StylExArch | None = None) -> TrainResult:
    """Load a finished model's EMA networks (eval mode, gradients off) from ``run_dir/model.pt``.

    With ``expected``, a model of another mode, resolution, width, latent size or (where the mode
    has a mapping network) mapping depth is refused with a ``ConfigMismatch`` that names the fields.
    """
    run_dir = Path(run_dir)
    state = load_checkpoint(run_dir / FINAL, map_location="cpu",
                            expected_config=expected.to_dict() if expected is not None else None,
                            config_keys=expected.keys if expected is not None else None)
    model = StylExArch.from_checkpoint(state).build()
    model.load_state_dict(state["ema"])
    model.to(device).eval().requires_grad_(False)
    metadata = json.loads(state["metadata"])
    return TrainResult(run_dir, int(metadata.get("finished_iteration", 0)), model, metadata)
