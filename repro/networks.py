"""StylEx networks: StyleGAN2 generator with an explicit StyleSpace API, encoder, discriminator.

Everything here is a pure ``nn.Module`` built from plain PyTorch ops: no optimiser, no device
calls, no compiled extensions; it builds and runs on CPU and moves to CUDA with ``.to()``.

StyleSpace (Wu et al.) is explicit rather than hidden inside the layers' forward passes::

    conv_styles, rgb_styles = G.styles(w)           # S: one [B, C_l] tensor per conv layer
    edited = edit_styles(conv_styles, [i], values)  # new list, inputs untouched (repro.stylespace)
    img = G.synthesis(edited, rgb_styles, noise)    # render from (edited) styles

The StyleSpace layout (flat indices, layers and channels) and its edits live in
:mod:`repro.stylespace`.

``G(w, noise)`` is exactly ``G.synthesis(*G.styles(w), noise)``. ``synthesis(...,
return_states=True)`` also returns the input of every conv layer, and ``synthesis(...,
start_layer=l, state=states[l])`` resumes there, so an edit of layer ``l`` only recomputes
layers ``>= l`` (what makes AttFind's ``N x 2S`` renders affordable). ``InferenceSynthesis(G)``
computes the same function faster for inference (non-fused modulation: one shared-weight conv
over the batch) and renders single-coordinate edits of a layer without a conv per edit.

Architecture notes (StyleGAN2, Karras et al. 2020, config F, with uniform width):
- equalized learning rate: weights are N(0, 1) and scaled by 1/sqrt(fan_in) at run time;
- modulated 3x3 convs with weight demodulation, computed as one grouped convolution with a
  weight per batch item, so every image in a batch can carry different styles;
- per-layer noise [B, 1, H, W] times a learned strength (initially 0), then bias and leaky
  ReLU(0.2) times sqrt(2);
- skip generator: a ToRGB (modulated 1x1 conv, no demodulation) after the 4x4 layer and after
  each resolution's second conv, summed with bilinear x2 upsampling (this equals the
  [1,3,3,1] FIR upsampler away from the border); the first conv of each resolution upsamples
  its input bilinearly x2;
- encoder and discriminator share one residual trunk (fromRGB, residual blocks that halve the
  resolution with [1,3,3,1]-blurred strided convs and a 1x1 skip, summed and scaled by
  1/sqrt(2), then a 3x3 conv and a fully connected layer at 4x4). Only the discriminator has
  minibatch-stddev: an encoding must not depend on the other images of its batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

__all__ = [
    "Generator", "InferenceSynthesis", "SynthesisState", "SynthesisLayer", "ToRGB", "MappingNetwork", "ResidualTrunk",
    "Encoder", "Discriminator", "EqualLinear", "EqualConv2d", "modulated_conv2d", "build_classifier",
    "PlainCNN", "assert_shape",
]

LRELU_GAIN = math.sqrt(2.0)


# ---------------------------------------------------------------------------------------------
# helpers

def assert_shape(t: Tensor, shape: Sequence[int | None], name: str) -> None:
    """Raise ``AssertionError`` naming ``name`` unless ``t`` has ``shape`` (None matches any size)."""
    ok = t.ndim == len(shape) and all(want is None or int(got) == want for got, want in zip(t.shape, shape))
    if not ok:
        want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
        raise AssertionError(f"{name}: expected shape {want}, got {list(t.shape)}")


def _lrelu(x: Tensor) -> Tensor:
    return F.leaky_relu(x, 0.2) * LRELU_GAIN


def _check_resolution(resolution: int) -> int:
    """log2(resolution) for a power of two in [8, 1024]."""
    k = int(round(math.log2(resolution))) if resolution > 0 else 0
    if resolution < 8 or resolution > 1024 or 2 ** k != resolution:
        raise ValueError(f"resolution must be a power of two in [8, 1024], got {resolution}")
    return k


def _upsample2x(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


def _blur(x: Tensor, pad: int) -> Tensor:
    """Depthwise [1,3,3,1] x [1,3,3,1] / 64 filter with zero padding ``pad`` on every side."""
    k1 = torch.tensor([1.0, 3.0, 3.0, 1.0], device=x.device, dtype=x.dtype)
    k = torch.outer(k1, k1) / 64.0
    c = x.shape[1]
    return F.conv2d(F.pad(x, [pad] * 4), k.expand(c, 1, 4, 4), groups=c)


# ---------------------------------------------------------------------------------------------
# equalized learning-rate layers

class EqualLinear(nn.Module):
    """Fully connected layer with equalized learning rate (StyleGAN2 ``FullyConnectedLayer``).

    Parameters:
        in_features / out_features: sizes.
        bias: whether to add a bias.
        bias_init: initial value of the bias (1 for the style affines).
        lr_multiplier: learning-rate multiplier (0.01 in the mapping network).
        activation: leaky ReLU(0.2) * sqrt(2) after the bias when True.
    """

    def __init__(self,
                 in_features: int,            # input size
                 out_features: int,           # output size
                 bias: bool = True,           # add a learned bias
                 bias_init: float = 0.0,      # initial bias value
                 lr_multiplier: float = 1.0,  # learning-rate multiplier
                 activation: bool = False):   # leaky ReLU(0.2) * sqrt(2)
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init) / lr_multiplier)) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        b = self.bias * self.bias_gain if self.bias is not None else None
        x = F.linear(x, self.weight * self.weight_gain, b)
        return _lrelu(x) if self.activation else x

    def extra_repr(self) -> str:
        return f"in={self.weight.shape[1]}, out={self.weight.shape[0]}, activation={self.activation}"


class EqualConv2d(nn.Module):
    """Conv layer with equalized learning rate; optional x2 downsampling (blur, then stride 2).

    Parameters:
        in_channels / out_channels: channel counts.
        kernel_size: square kernel size (1 or 3).
        bias: whether to add a bias.
        activation: leaky ReLU(0.2) * sqrt(2) after the bias when True.
        down: halve the resolution ([1,3,3,1] blur, then a stride-2 convolution).
    """

    def __init__(self,
                 in_channels: int,          # input channels
                 out_channels: int,         # output channels
                 kernel_size: int,          # square kernel size
                 bias: bool = True,         # add a learned bias
                 activation: bool = False,  # leaky ReLU(0.2) * sqrt(2)
                 down: bool = False):       # halve the resolution
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.activation = activation
        self.down = down
        self.kernel_size = kernel_size

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight * self.weight_gain
        if self.down:  # blur pads so that (H + 2p - 3 - k) / 2 + 1 = H / 2
            x = _blur(x, pad=(self.kernel_size + 1) // 2)
            x = F.conv2d(x, w, stride=2)
        else:
            x = F.conv2d(x, w, padding=self.kernel_size // 2)
        if self.bias is not None:
            x = x + self.bias.view(1, -1, 1, 1)
        return _lrelu(x) if self.activation else x

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"in={i}, out={o}, kernel={k}, activation={self.activation}, down={self.down}"


# ---------------------------------------------------------------------------------------------
# generator

def modulated_conv2d(x: Tensor, weight: Tensor, styles: Tensor, demodulate: bool = True) -> Tensor:
    """StyleGAN2 modulated convolution with a different style per batch item (fused: one grouped conv).

    x [B, C_in, H, W]; weight [C_out, C_in, k, k] (already gain-scaled); styles [B, C_in].
    Returns [B, C_out, H, W] ('same' padding).
    """
    b, c_in, h, w_ = x.shape
    c_out, _, k, _ = weight.shape
    wts = weight.unsqueeze(0) * styles.reshape(b, 1, c_in, 1, 1)  # [B, C_out, C_in, k, k]
    if demodulate:
        wts = wts * torch.rsqrt(wts.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8)
    out = F.conv2d(x.reshape(1, b * c_in, h, w_), wts.reshape(b * c_out, c_in, k, k), padding=k // 2, groups=b)
    return out.reshape(b, c_out, out.shape[2], out.shape[3])


class SynthesisLayer(nn.Module):
    """One StyleSpace layer: affine (w -> style), modulated 3x3 conv, noise, bias, leaky ReLU.

    Parameters:
        w_dim: size of w.
        in_channels / out_channels: channel counts (the style has ``in_channels`` entries).
        resolution: output resolution (noise maps are [B, 1, resolution, resolution]).
        up: upsample the input x2 (bilinear) before the convolution.
    """

    def __init__(self,
                 w_dim: int,         # size of w
                 in_channels: int,   # input channels = style size
                 out_channels: int,  # output channels
                 resolution: int,    # output resolution
                 up: bool = False):  # upsample x2 first
        super().__init__()
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.weight_gain = 1.0 / math.sqrt(in_channels * 9)
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.in_channels, self.out_channels = in_channels, out_channels
        self.resolution = resolution
        self.up = up

    def forward(self, x: Tensor, style: Tensor, noise: Tensor | None) -> Tensor:
        if self.up:
            x = _upsample2x(x)
        x = modulated_conv2d(x, self.weight * self.weight_gain, style, demodulate=True)
        if noise is None:
            noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
        x = x + noise * self.noise_strength
        return _lrelu(x + self.bias.view(1, -1, 1, 1))


class ToRGB(nn.Module):
    """Affine + modulated 1x1 conv (no demodulation) + bias: features -> image.

    Parameters:
        w_dim: size of w.
        in_channels: feature channels (= style size).
        img_channels: image channels.
    """

    def __init__(self,
                 w_dim: int,         # size of w
                 in_channels: int,   # feature channels
                 img_channels: int):  # image channels
        super().__init__()
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(img_channels, in_channels, 1, 1))
        self.weight_gain = 1.0 / math.sqrt(in_channels)
        self.bias = nn.Parameter(torch.zeros(img_channels))

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        x = modulated_conv2d(x, self.weight * self.weight_gain, style, demodulate=False)
        return x + self.bias.view(1, -1, 1, 1)


@dataclass
class SynthesisState:
    """The input of one conv layer: features ``x`` [B, C, H, W] and the running skip image
    ``img`` [B, 3, H', W'] (None before the first ToRGB)."""

    x: Tensor
    img: Tensor | None

    @property
    def batch(self) -> int:
        return self.x.shape[0]

    def _map(self, fn) -> "SynthesisState":
        return SynthesisState(fn(self.x), None if self.img is None else fn(self.img))

    def expand(self, n: int) -> "SynthesisState":
        """Broadcast a batch-1 state to batch ``n`` (a view, no copy)."""
        if self.batch == n:
            return self
        if self.batch != 1:
            raise ValueError(f"expand needs a batch-1 state (or batch {n}), got batch {self.batch}")
        return self._map(lambda t: t.expand(n, *t.shape[1:]))

    def repeat_interleave(self, n: int) -> "SynthesisState":
        """Repeat each batch item ``n`` times: [a, b] -> [a, a, ..., b, b, ...]."""
        return self._map(lambda t: t.repeat_interleave(n, dim=0))

    def index(self, idx: Tensor | slice | Sequence[int]) -> "SynthesisState":
        """Select batch items (``idx`` may repeat items)."""
        return self._map(lambda t: t[idx])


class Generator(nn.Module):
    """StyleGAN2 synthesis network driven directly by w (no mapping network on this path).

    At resolution R = 2^k the conv layers are: one at 4x4, then two per resolution 8..R (the
    first of each pair upsamples), i.e. ``2k - 3`` layers (9 at 64 px); ToRGB layers follow
    the 4x4 conv and each resolution's second conv. StyleSpace S is the concatenation of the conv
    layers' styles (``style_dims``); the ToRGB styles are not part of it.

    Parameters:
        resolution: output size (power of two, 32..256 in this project; 8..1024 accepted).
        channels: uniform conv width at every resolution.
        w_dim: size of w (512 latent + 2 class probabilities in StylEx).
        img_channels: image channels.
    """

    def __init__(self,
                 resolution: int,        # output size, a power of two
                 channels: int,          # uniform conv width
                 w_dim: int = 514,       # 512 latent + 2 class probabilities
                 img_channels: int = 3):  # RGB
        super().__init__()
        log2 = _check_resolution(resolution)
        self.resolution, self.channels, self.w_dim, self.img_channels = resolution, channels, w_dim, img_channels
        self.const = nn.Parameter(torch.randn(channels, 4, 4))
        layers = [SynthesisLayer(w_dim, channels, channels, 4)]
        to_rgb = [ToRGB(w_dim, channels, img_channels)]
        for k in range(3, log2 + 1):
            layers += [SynthesisLayer(w_dim, channels, channels, 2 ** k, up=True),
                       SynthesisLayer(w_dim, channels, channels, 2 ** k)]
            to_rgb.append(ToRGB(w_dim, channels, img_channels))
        self.layers = nn.ModuleList(layers)
        self.to_rgb = nn.ModuleList(to_rgb)
        self.num_conv_layers = len(layers)
        self.num_rgb_layers = len(to_rgb)
        self.style_dims = [layer.in_channels for layer in layers]
        self.rgb_style_dims = [channels] * len(to_rgb)
        self.num_styles = sum(self.style_dims)
        self.noise_shapes = [(1, layer.resolution, layer.resolution) for layer in layers]

    @staticmethod
    def rgb_after(layer: int) -> int | None:
        """Index of the ToRGB that follows conv layer ``layer`` (None if none follows it)."""
        return layer // 2 if layer % 2 == 0 else None

    def styles(self, w: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """w [B, w_dim] -> (conv styles: [B, C_l] per conv layer (StyleSpace), ToRGB styles: [B, C] each)."""
        assert_shape(w, [None, self.w_dim], "w")
        conv = [layer.affine(w) for layer in self.layers]
        rgb = [t.affine(w) for t in self.to_rgb]
        return conv, rgb

    def synthesis(self, conv_styles: Sequence[Tensor], rgb_styles: Sequence[Tensor],
                  noise: Sequence[Tensor] | None = None, *, start_layer: int = 0,
                  state: SynthesisState | None = None,
                  return_states: bool = False) -> Tensor | tuple[Tensor, list[SynthesisState | None]]:
        """Render [B, img_channels, R, R] from (possibly edited) styles.

        Args:
            conv_styles: one [B, C_l] per conv layer (all of them, also when resuming).
            rgb_styles: one [B, C] per ToRGB layer.
            noise: one [B, 1, H_l, W_l] per conv layer, or None for fresh random noise (training
                only: anything evaluated must pass fixed noise, see ``make_noise``/``zero_noise``).
            start_layer / state: resume at conv layer ``start_layer`` from ``state`` = the
                ``states[start_layer]`` of an earlier render with the same styles for the
                layers before it (possibly indexed / expanded to this batch).
            return_states: also return ``states``, where ``states[l]`` is the input of conv
                layer ``l`` (entries before ``start_layer`` are None).
        """
        n_layers = self.num_conv_layers
        if not 0 <= start_layer < n_layers:
            raise ValueError(f"start_layer must be in [0, {n_layers}), got {start_layer}")
        if state is None and start_layer > 0:
            raise ValueError("resuming at start_layer > 0 needs state=states[start_layer]")
        if len(conv_styles) != n_layers or len(rgb_styles) != self.num_rgb_layers:
            raise AssertionError(f"expected {n_layers} conv and {self.num_rgb_layers} ToRGB styles, "
                                 f"got {len(conv_styles)} and {len(rgb_styles)}")
        batch = conv_styles[start_layer].shape[0]
        for l in range(start_layer, n_layers):
            assert_shape(conv_styles[l], [batch, self.style_dims[l]], f"conv_styles[{l}]")
        first_rgb = (start_layer + 1) // 2  # the first ToRGB that runs
        for r in range(first_rgb, self.num_rgb_layers):
            assert_shape(rgb_styles[r], [batch, self.rgb_style_dims[r]], f"rgb_styles[{r}]")
        if noise is not None:
            if len(noise) != n_layers:
                raise AssertionError(f"expected {n_layers} noise tensors, got {len(noise)}")
            for l in range(start_layer, n_layers):
                assert_shape(noise[l], [batch, *self.noise_shapes[l]], f"noise[{l}]")

        if state is None:
            state = SynthesisState(self.const.unsqueeze(0).expand(batch, -1, -1, -1), None)
        assert_shape(state.x, [batch, self.channels, None, None], "state.x")
        x, img = state.x, state.img
        states: list[SynthesisState | None] = [None] * n_layers
        for l in range(start_layer, n_layers):
            if return_states:
                states[l] = SynthesisState(x, img)
            x = self.layers[l](x, conv_styles[l], None if noise is None else noise[l])
            r = self.rgb_after(l)
            if r is not None:
                y = self.to_rgb[r](x, rgb_styles[r])
                img = y if img is None else _upsample2x(img) + y
        return (img, states) if return_states else img

    def forward(self, w: Tensor, noise: Sequence[Tensor] | None = None) -> Tensor:
        """Exactly ``synthesis(*styles(w), noise)``."""
        return self.synthesis(*self.styles(w), noise)

    def make_noise(self, batch: int, *, generator: torch.Generator | None = None,
                   device: torch.device | str | None = None) -> list[Tensor]:
        """Fixed N(0, 1) noise maps, one [batch, 1, H_l, W_l] per conv layer (store one per image).

        Drawn on ``generator``'s device (the global RNG on ``device`` when None), then moved to
        ``device`` (default: the generator's parameters' device)."""
        device = torch.device(device) if device is not None else self.const.device
        src = generator.device if generator is not None else device
        return [torch.randn(batch, *shape, generator=generator, device=src).to(device)
                for shape in self.noise_shapes]

    def zero_noise(self, batch: int, device: torch.device | str | None = None) -> list[Tensor]:
        """All-zero noise maps (the deterministic 'no noise' render)."""
        device = torch.device(device) if device is not None else self.const.device
        return [torch.zeros(batch, *shape, device=device) for shape in self.noise_shapes]


# ---------------------------------------------------------------------------------------------
# inference fast path (CPU-friendly; used by AttFind)

class InferenceSynthesis:
    """The synthesis network of a :class:`Generator`, computed a faster way for inference only.

    ``Generator.synthesis`` modulates by folding each image's style into its own copy of the
    conv weight and running one grouped convolution ("fused" modulation, as in training). Here
    the modulation is "non-fused": activations are scaled by the style, ONE convolution with the
    shared weight runs over the whole batch, and the demodulation coefficients
    ``rsqrt(style^2 @ sum_k(w^2)^T + 1e-8)`` scale its output; activations are channels_last,
    the leaky-ReLU gain is folded into the epilogue and the ToRGB 1x1 convs are batched matrix
    products. Same function as ``Generator.synthesis`` up to float rounding (tested).

    :meth:`render_edits` renders many single-coordinate edits of one layer from that layer's
    input state, computing the edited layer itself without a convolution per edit (see there).

    A snapshot of the generator's weights when built: rebuild it after they change. Every
    method runs under ``torch.inference_mode``.

    Parameters:
        G: the generator to snapshot.
    """

    def __init__(self, G: Generator):
        with torch.inference_mode():
            self.G = G
            self.weight = [layer.weight * layer.weight_gain for layer in G.layers]
            self.weight_sq = [w.square().sum(dim=[2, 3]).t().contiguous() for w in self.weight]  # [C_in, C_out]
            self.bias = [(layer.bias * LRELU_GAIN).view(1, -1, 1, 1) for layer in G.layers]
            self.noise_gain = [layer.noise_strength * LRELU_GAIN for layer in G.layers]
            self.rgb_weight = [(t.weight * t.weight_gain).flatten(1) for t in G.to_rgb]  # [img_channels, C]
            self.rgb_bias = [t.bias.view(1, -1, 1, 1) for t in G.to_rgb]

    # -- one layer -------------------------------------------------------------------------
    def _demodulation(self, layer: int, style: Tensor) -> Tensor:
        """[B, C_out, 1, 1]: demodulation coefficient times the leaky-ReLU gain."""
        return (torch.rsqrt(style.square() @ self.weight_sq[layer] + 1e-8) * LRELU_GAIN)[:, :, None, None]

    def _epilogue(self, layer: int, y: Tensor, demod: Tensor, noise: Tensor | None) -> Tensor:
        """lrelu(demod * y + noise * strength + bias) * gain, in place on the conv output ``y``
        (in-place passes skip the allocation); the gain is folded into ``demod`` and the bias
        (lrelu is positively homogeneous)."""
        if noise is None:
            noise = torch.randn(y.shape[0], 1, y.shape[2], y.shape[3], device=y.device, dtype=y.dtype)
        y.mul_(demod).add_(self.bias[layer]).add_(noise * self.noise_gain[layer])
        return F.leaky_relu_(y, 0.2)

    def _layer(self, layer: int, x: Tensor, style: Tensor, noise: Tensor | None) -> Tensor:
        x = (x * style[:, :, None, None]).contiguous(memory_format=torch.channels_last)
        if self.G.layers[layer].up:  # scaling commutes with the (per-channel) upsampling: scale first
            x = _upsample2x(x)
        y = F.conv2d(x, self.weight[layer], padding=1)
        return self._epilogue(layer, y, self._demodulation(layer, style), noise)

    def _to_rgb(self, r: int, x: Tensor, style: Tensor) -> Tensor:
        """The modulated 1x1 conv as a batched matrix product with per-image weights [B, 3, C]."""
        b, _, h, w = x.shape
        y = torch.bmm(self.rgb_weight[r].unsqueeze(0) * style.unsqueeze(1), x.flatten(2))  # [B, 3, HW]
        return y.view(b, -1, h, w) + self.rgb_bias[r]

    def _run(self, start: int, x: Tensor, img: Tensor | None, conv_styles: Sequence[Tensor],
             rgb_styles: Sequence[Tensor], noise: Sequence[Tensor] | None,
             states: list[SynthesisState | None] | None = None) -> Tensor:
        """Conv layers ``start..`` from their input ``x`` and skip image ``img``; records states."""
        for l in range(start, self.G.num_conv_layers):
            if states is not None:
                states[l] = SynthesisState(x, img)
            x = self._layer(l, x, conv_styles[l], None if noise is None else noise[l])
            img = self._after_conv(l, x, img, rgb_styles)
        return img

    def _after_conv(self, layer: int, x: Tensor, img: Tensor | None, rgb_styles: Sequence[Tensor]) -> Tensor | None:
        r = self.G.rgb_after(layer)
        if r is None:
            return img
        y = self._to_rgb(r, x, rgb_styles[r])
        return y if img is None else _upsample2x(img) + y

    # -- public ----------------------------------------------------------------------------
    @torch.inference_mode()
    def synthesis(self, conv_styles: Sequence[Tensor], rgb_styles: Sequence[Tensor],
                  noise: Sequence[Tensor] | None = None, *, start_layer: int = 0,
                  state: SynthesisState | None = None,
                  return_states: bool = False) -> Tensor | tuple[Tensor, list[SynthesisState | None]]:
        """Same contract and result as :meth:`Generator.synthesis`, computed the inference way."""
        G = self.G
        if not 0 <= start_layer < G.num_conv_layers:
            raise ValueError(f"start_layer must be in [0, {G.num_conv_layers}), got {start_layer}")
        if state is None and start_layer > 0:
            raise ValueError("resuming at start_layer > 0 needs state=states[start_layer]")
        if len(conv_styles) != G.num_conv_layers or len(rgb_styles) != G.num_rgb_layers:
            raise AssertionError(f"expected {G.num_conv_layers} conv and {G.num_rgb_layers} ToRGB styles, "
                                 f"got {len(conv_styles)} and {len(rgb_styles)}")
        batch = conv_styles[start_layer].shape[0]
        if state is None:
            state = SynthesisState(G.const.unsqueeze(0).expand(batch, -1, -1, -1), None)
        assert_shape(state.x, [batch, G.channels, None, None], "state.x")
        states: list[SynthesisState | None] | None = [None] * G.num_conv_layers if return_states else None
        img = self._run(start_layer, state.x, state.img, conv_styles, rgb_styles, noise, states)
        return (img, states) if return_states else img

    @torch.inference_mode()
    def render_edits(self, layer: int, state: SynthesisState, conv_styles: Sequence[Tensor],
                     rgb_styles: Sequence[Tensor], noise: Sequence[Tensor], image: Tensor, channel: Tensor,
                     value: Tensor, rows_per_pass: int | None = None) -> Tensor:
        """Render R single-coordinate edits of conv layer ``layer`` of a batch of n images.

        Row ``r`` is image ``image[r]`` rendered with ``conv_styles[layer][image[r], channel[r]]``
        set to ``value[r]``, everything else (styles, noise) as given: the same image as
        ``synthesis`` of the edited styles. ``state`` is the batch's ``states[layer]`` (from
        ``synthesis(..., return_states=True)``): the layers before ``layer`` are not run.

        The edited layer needs no convolution per edit: the conv is linear in the modulated
        input, so with ``u`` the layer's (upsampled) input and ``z = conv(u * s, w)`` computed
        once per image, changing style ``c`` by ``delta`` gives ``z + delta * conv(u_c, w[:, c])``,
        a single-input-channel conv (1/C of a full one) done as a 9-tap batched matrix product;
        the demodulation is recomputed from the edited style. Only the later layers run per edit,
        ``rows_per_pass`` rows at a time (default: all).

        Args:
            image / channel / value: [R] batch index (long), channel of ``layer`` (long), new value.
        Returns:
            [R, img_channels, resolution, resolution].
        """
        G = self.G
        n = state.batch
        assert_shape(conv_styles[layer], [n, G.style_dims[layer]], f"conv_styles[{layer}]")
        assert_shape(noise[layer], [n, *G.noise_shapes[layer]], f"noise[{layer}]")
        rows = image.shape[0]
        if channel.shape != (rows,) or value.shape != (rows,):
            raise AssertionError(f"image, channel and value must be [R]; got {list(image.shape)}, "
                                 f"{list(channel.shape)}, {list(value.shape)}")
        if rows == 0:
            return state.x.new_zeros(0, G.img_channels, G.resolution, G.resolution)
        style = conv_styles[layer]
        u = state.x.contiguous(memory_format=torch.channels_last)
        if G.layers[layer].up:
            u = _upsample2x(u)
        weight = self.weight[layer]
        c_out, h, w = weight.shape[0], u.shape[2], u.shape[3]
        z = F.conv2d(u * style[:, :, None, None], weight, padding=1)  # [n, C_out, H, W], unedited
        # per-row weight of the edited input channel times its change: [R, 9, C_out]
        delta = value - style[image, channel]
        w_edit = weight[:, channel].permute(1, 2, 3, 0).reshape(rows, 9, c_out) * delta[:, None, None]
        edited = style[image]  # a copy: advanced indexing
        edited[torch.arange(rows, device=edited.device), channel] = value
        step = rows if rows_per_pass is None else max(1, rows_per_pass)
        images = []
        for r0 in range(0, rows, step):
            sl = slice(r0, r0 + step)
            img_r, ch_r = image[sl], channel[sl]
            taps = F.unfold(u[img_r, ch_r].unsqueeze(1), 3, padding=1).transpose(1, 2)  # [r, HW, 9]
            y = z[img_r]  # channels_last, like z
            y.permute(0, 2, 3, 1).view(len(img_r), h * w, c_out).baddbmm_(taps, w_edit[sl])
            x = self._epilogue(layer, y, self._demodulation(layer, edited[sl]), noise[layer][img_r])
            rgb_r = [t[img_r] for t in rgb_styles]
            img = self._after_conv(layer, x, None if state.img is None else state.img[img_r], rgb_r)
            if layer + 1 < G.num_conv_layers:
                img = self._run(layer + 1, x, img, [c[img_r] for c in conv_styles], rgb_r, [t[img_r] for t in noise])
            images.append(img)
        return torch.cat(images)


# ---------------------------------------------------------------------------------------------
# mapping network (optional: StylEx-alt z-passes and the plain StyleGAN2 baseline)

class MappingNetwork(nn.Module):
    """z -> w: normalize z by its second moment, then ``num_layers`` equalized-lr FC + leaky ReLU.

    Tracks ``w_avg`` (moving average of w in training mode) for the truncation trick.

    Parameters:
        z_dim: size of z.
        w_dim: size of w (and of the hidden layers).
        num_layers: FC layers.
        lr_multiplier: learning-rate multiplier of every layer (StyleGAN2: 0.01).
        w_avg_beta: decay of the ``w_avg`` moving average (None: don't track).
    """

    def __init__(self,
                 z_dim: int = 512,                   # size of z
                 w_dim: int = 512,                   # size of w and the hidden layers
                 num_layers: int = 8,                # FC layers
                 lr_multiplier: float = 0.01,        # learning-rate multiplier
                 w_avg_beta: float | None = 0.995):  # w_avg decay (None: off)
        super().__init__()
        self.z_dim, self.w_dim, self.w_avg_beta = z_dim, w_dim, w_avg_beta
        dims = [z_dim] + [w_dim] * num_layers
        self.net = nn.Sequential(*[EqualLinear(dims[i], dims[i + 1], lr_multiplier=lr_multiplier, activation=True)
                                   for i in range(num_layers)])
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: Tensor, truncation_psi: float = 1.0) -> Tensor:
        assert_shape(z, [None, self.z_dim], "z")
        z = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        w = self.net(z)
        if self.training and self.w_avg_beta is not None:
            with torch.no_grad():
                # w may be bf16 under autocast; the running average stays in its own dtype
                self.w_avg.copy_(w.detach().to(self.w_avg.dtype).mean(0).lerp(self.w_avg, self.w_avg_beta))
        if truncation_psi != 1.0:
            w = self.w_avg.to(w.dtype).lerp(w, truncation_psi)
        return w


# ---------------------------------------------------------------------------------------------
# encoder / discriminator

class MinibatchStd(nn.Module):
    """Append the std of each feature over groups of ``group_size`` images, averaged to one channel.

    The group size is ``min(group_size, B)``, lowered to the largest divisor of B when B is not
    a multiple of it (StyleGAN2 requires divisibility; this keeps any batch size working).
    """

    def __init__(self, group_size: int, num_channels: int = 1):
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        g = min(self.group_size, n)
        while n % g:
            g -= 1
        f = self.num_channels
        y = x.reshape(g, -1, f, c // f, h, w)       # [G, M, F, c, H, W]: group members i, i+M, ...
        y = (y - y.mean(dim=0)).square().mean(dim=0)  # variance over the group
        y = (y + 1e-8).sqrt().mean(dim=[2, 3, 4])   # [M, F]
        y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)


class ResidualBlock(nn.Module):
    """StyleGAN2 residual D block: conv3x3, conv3x3 + down, plus a 1x1 down skip; sum / sqrt(2)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv0 = EqualConv2d(in_channels, in_channels, 3, activation=True)
        self.conv1 = EqualConv2d(in_channels, out_channels, 3, activation=True, down=True)
        self.skip = EqualConv2d(in_channels, out_channels, 1, bias=False, down=True)

    def forward(self, x: Tensor) -> Tensor:
        return (self.skip(x) + self.conv1(self.conv0(x))) / math.sqrt(2.0)


class ResidualTrunk(nn.Module):
    """The trunk shared by encoder and discriminator: fromRGB, residual blocks down to 4x4,
    optional minibatch-stddev, conv 3x3, FC. Image [B, C_img, R, R] -> features [B, channels].

    Parameters:
        resolution: input size (power of two).
        channels: uniform width.
        img_channels: image channels.
        mbstd_group: minibatch-stddev group size (None/0: no minibatch-stddev).
    """

    def __init__(self,
                 resolution: int,                # input size
                 channels: int,                  # uniform width
                 img_channels: int = 3,          # image channels
                 mbstd_group: int | None = None):  # minibatch-stddev group (None: off)
        super().__init__()
        log2 = _check_resolution(resolution)
        self.resolution, self.channels, self.img_channels = resolution, channels, img_channels
        self.from_rgb = EqualConv2d(img_channels, channels, 1, activation=True)
        self.blocks = nn.Sequential(*[ResidualBlock(channels, channels) for _ in range(log2 - 2)])
        self.mbstd = MinibatchStd(mbstd_group) if mbstd_group else None
        self.conv = EqualConv2d(channels + (1 if self.mbstd else 0), channels, 3, activation=True)
        self.fc = EqualLinear(channels * 16, channels, activation=True)

    def forward(self, img: Tensor) -> Tensor:
        assert_shape(img, [None, self.img_channels, self.resolution, self.resolution], "image")
        x = self.blocks(self.from_rgb(img))
        if self.mbstd is not None:
            x = self.mbstd(x)
        return self.fc(self.conv(x).flatten(1))


class Encoder(nn.Module):
    """StyleGAN2 residual discriminator architecture with an ``out_dim`` final linear layer and
    NO minibatch-stddev: an image's encoding does not depend on the rest of its batch.

    Parameters:
        resolution: input size.
        channels: uniform width.
        out_dim: size of the encoding (512 in StylEx).
        img_channels: image channels.
    """

    def __init__(self,
                 resolution: int,        # input size
                 channels: int,          # uniform width
                 out_dim: int = 512,     # encoding size
                 img_channels: int = 3):  # image channels
        super().__init__()
        self.trunk = ResidualTrunk(resolution, channels, img_channels, mbstd_group=None)
        self.out = EqualLinear(channels, out_dim)
        self.out_dim = out_dim

    def forward(self, img: Tensor) -> Tensor:
        return self.out(self.trunk(img))


class Discriminator(nn.Module):
    """StyleGAN2 residual discriminator with minibatch-stddev, conditioned on class probabilities
    by projection (stylegan2-ada): ``logit = <fc_out(features), cmap(c)> / sqrt(cmap_dim)`` with
    ``cmap`` = FC embedding of c normalized by its second moment.

    Parameters:
        resolution: input size.
        channels: uniform width (also the projection size ``cmap_dim``).
        num_classes: size of the conditioning vector c (softmax probabilities).
        mbstd_group: minibatch-stddev group size.
        img_channels: image channels.
    """

    def __init__(self,
                 resolution: int,        # input size
                 channels: int,          # uniform width = cmap_dim
                 num_classes: int = 2,   # size of c
                 mbstd_group: int = 4,   # minibatch-stddev group size
                 img_channels: int = 3):  # image channels
        super().__init__()
        self.num_classes, self.cmap_dim = num_classes, channels
        self.trunk = ResidualTrunk(resolution, channels, img_channels, mbstd_group=mbstd_group)
        self.out = EqualLinear(channels, self.cmap_dim)
        self.embed = EqualLinear(num_classes, self.cmap_dim)

    def forward(self, img: Tensor, c: Tensor) -> Tensor:
        assert_shape(c, [img.shape[0], self.num_classes], "c")
        cmap = self.embed(c)
        cmap = cmap * torch.rsqrt(cmap.square().mean(dim=1, keepdim=True) + 1e-8)
        h = self.out(self.trunk(img))
        return (h * cmap).sum(dim=1) / math.sqrt(self.cmap_dim)


class PlainCNN(nn.Sequential):
    """A plain VGG-style classifier: four stages of two 3x3 conv + BatchNorm + ReLU, each
    followed by 2x2 max-pooling (widths ``width`` x 1, 2, 4, 8), global average pooling and one
    linear layer. No residuals and no depthwise convolutions: another architecture family than
    MobileNetV2, for the second observer (``repro.observer``). Any input size of at least 16 px.
    """

    def __init__(self, num_classes: int = 2, width: int = 32):
        layers: list[nn.Module] = []
        c_in = 3
        for mult in (1, 2, 4, 8):
            c_out = width * mult
            for c in (c_in, c_out):
                layers += [nn.Conv2d(c, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            layers.append(nn.MaxPool2d(2))
            c_in = c_out
        super().__init__(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes))


def _small_image_resnet18(num_classes: int) -> nn.Module:
    """torchvision ResNet-18 for 32..256 px images: a 3x3 stride-1 first conv and no max-pool
    (the CIFAR adaptation). About 10x the compute of :class:`PlainCNN` at 32 px (0.56 vs 0.05 GMAC per
    image; 11x its CPU training time): a GPU choice."""
    model = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


def build_classifier(num_classes: int = 2, arch: str = "mobilenet_v2") -> nn.Module:
    """A classifier trained from scratch (no pretrained weights).

    ``arch``: ``mobilenet_v2`` (the classifier StylEx explains, as in the paper), ``cnn``
    (:class:`PlainCNN`) or ``resnet18`` (ResNet-18 adapted to small images); the last two are
    second-observer architectures (``repro.config.CLASSIFIER_ARCHS``).
    """
    if arch == "mobilenet_v2":
        return torchvision.models.mobilenet_v2(weights=None, num_classes=num_classes)
    if arch == "cnn":
        return PlainCNN(num_classes)
    if arch == "resnet18":
        return _small_image_resnet18(num_classes)
    raise ValueError(f"unknown classifier architecture {arch!r}; choose one of: mobilenet_v2, cnn, resnet18")
