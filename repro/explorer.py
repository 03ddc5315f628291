"""An interactive explorer of a model's top AttFind attributes (ipywidgets), with a static fallback.

The app: pick a held-out image (or upload one, for models with an encoder), move one slider per
top attribute, and see the counterfactual and the classifier's probability update live.

**Slider semantics.** Each attribute is a ``(direction d, index i)`` pair of a list that reads
"class 1 -> class 0" (:mod:`repro.counterfactual`). A slider value ``a`` in [-1, 1] edits
coordinate ``i`` by the shift size ``|a|`` towards a target: for ``a > 0`` the target of the
list's own direction ``d`` (the way AttFind found to move images towards **class 0**), for
``a < 0`` the opposite one (towards **class 1**):
``s_i <- s_i + |a| * (target - s_i)`` (:func:`repro.stylespace.apply_edits`), target = min or max of
``s_i`` over the AttFind images (the explanation's ``targets``).
``a = 0`` leaves the coordinate alone, and with every slider at 0 the picture is exactly the
unedited render. Sliders edit their coordinates together.

**Headless runs.** Whether a live front end is attached cannot be told reliably from inside a
kernel (papermill, nbclient, Jupyter and VS Code all run the same IPython kernel, and a comm
opens either way), so nothing depends on it. :meth:`Explorer.show` always displays the widget
(live in Jupyter; in an executed notebook only its saved state, which a static viewer cannot
draw) **and then** a static matplotlib figure of fixed slider settings
(:meth:`Explorer.static_figure`), so the executed notebook shows results either way. Outside
IPython (a script, pytest) ``show`` displays nothing. Building the widgets is cheap and works
with no kernel at all.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from repro.attribute_figures import choose_images, layer_channel, one_thread
from repro.evaluation import Latents, fixed_noise
from repro.explain import Explanation
from repro.figures import _in_notebook, _mpl, _save, as_hwc_uint8
from repro.inference import class_probability, classify
from repro.model import StylExModel
from repro.stylespace import Attributes, apply_edits


@torch.inference_mode()
def render_signed(model: StylExModel, lat: Latents, coords: Sequence[tuple[int, int]], values: Sequence[float],
                  style_min: torch.Tensor, style_max: torch.Tensor) -> torch.Tensor:
    """Images [N, 3, R, R] in [-1, 1] with coordinate ``coords[j]`` moved by slider value ``values[j]``.

    See the module docstring for the meaning of a value; 0 leaves a coordinate as it is.
    """
    if len(coords) != len(values):
        raise ValueError(f"{len(coords)} attributes but {len(values)} slider values")
    conv, rgb = lat.styles(model)
    moved = [(d if a > 0 else 1 - d, i, abs(float(a))) for (d, i), a in zip(coords, values) if a != 0]
    conv = apply_edits(conv, [(d, i) for d, i, _ in moved], [a for _, _, a in moved], style_min, style_max)
    return model.generator.synthesis(conv, rgb, lat.noise).clamp(-1, 1)


def _png(images: Sequence[np.ndarray], scale: int, pad: int = 2) -> bytes:
    """uint8 [H, W, 3] images side by side on white, upscaled (nearest), as PNG bytes."""
    from PIL import Image

    h, w = images[0].shape[:2]
    canvas = np.full((h + 2 * pad, len(images) * (w + pad) + pad, 3), 255, np.uint8)
    for j, img in enumerate(images):
        canvas[pad:pad + h, pad + j * (w + pad): pad + j * (w + pad) + w] = img
    pic = Image.fromarray(canvas)
    pic = pic.resize((pic.width * scale, pic.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    pic.save(buf, format="PNG")
    return buf.getvalue()


def _upload_content(value: Any) -> tuple[str, bytes] | None:
    """(name, bytes) of the last file of a FileUpload value (ipywidgets 8 tuple or 7 dict)."""
    if not value:
        return None
    items = list(value.values()) if isinstance(value, dict) else list(value)
    item = items[-1]
    name = item.get("name") or item.get("metadata", {}).get("name", "upload")
    return name, bytes(item["content"])


class Explorer:
    """The explorer app of one explanation.

    Parameters:
        explanation: a model's explanation (``repro.explain.explain_model``).
        top: sliders for the top ``top`` attributes of ``attributes``.
        class_names: names of class 0 and class 1.
        attributes: method key (default ``attfind``) or a list.
        max_images: held-out images offered in the picker.
        scale: upscaling of the displayed images.
        noise_seed: seed of the fixed noise given to an uploaded image.

    Attributes: ``widget`` (the app), ``sliders``, ``picker``, ``upload`` (None without an
    encoder), ``image`` (ipywidgets.Image of the pictures), ``label`` (probabilities), and
    ``current`` (the Latents shown).
    """

    def __init__(self, explanation: Explanation, *, top: int = 6, class_names: Sequence[str],
                 attributes: Attributes | str = "attfind", max_images: int = 64, scale: int = 4,
                 noise_seed: int = 12_345):
        import ipywidgets as W

        self.explanation = explanation
        self.model, self.classifier = explanation.model, explanation.classifier
        self.attributes = explanation.attributes[attributes] if isinstance(attributes, str) else attributes
        self.coords = self.attributes.top(top)
        self.class_names = tuple(class_names)
        self.scale, self.noise_seed = scale, noise_seed
        self.style_min, self.style_max = explanation.targets
        self.device = next(self.model.parameters()).device
        self.resolution = int(self.model.generator.resolution)
        self.pool = explanation.eval_set.subset(slice(0, min(max_images, len(explanation.eval_set))))
        self.current: Latents = self.pool.subset(slice(0, 1))
        self.current_name = "held-out #0"
        self._muted = False

        dims = self.model.generator.style_dims
        c0, c1 = self.class_names
        self.sliders = []
        for rank, _ in enumerate(self.coords):
            layer, channel = layer_channel(self.attributes, rank, dims)
            self.sliders.append(W.FloatSlider(value=0.0, min=-1.0, max=1.0, step=0.05, continuous_update=False,
                                              description=f"#{rank + 1} L{layer} C{channel}",
                                              style={"description_width": "initial"}))
        self.picker = W.Dropdown(options=[(f"held-out #{i}", i) for i in range(len(self.pool))], value=0,
                                 description="image")
        self.upload = (W.FileUpload(accept="image/*", multiple=False, description="upload")
                       if self.model.encoder is not None else None)
        self.reset = W.Button(description="reset sliders")
        self.image = W.Image(format="png")
        self.label = W.Label()
        self.caption = W.HTML(
            f"<small>{self.attributes.method} attributes; slider +1: towards <b>{c0}</b> (class 0), "
            f"−1: towards <b>{c1}</b> (class 1); |value| = shift size. Pictures: "
            f"{'input, ' if self.model.encoder is not None else ''}unedited render, counterfactual.</small>")

        for s in self.sliders:
            s.observe(self.update, names="value")
        self.picker.observe(self._on_pick, names="value")
        self.reset.on_click(lambda _: self.set_values([0.0] * len(self.sliders)))
        if self.upload is not None:
            self.upload.observe(self._on_upload, names="value")
        pickers = [self.picker] + ([self.upload] if self.upload is not None else []) + [self.reset]
        self.widget = W.VBox([W.HBox(pickers), self.caption,
                              W.HBox([W.VBox(self.sliders), W.VBox([self.image, self.label])])])
        self.update()

    # -- state ---------------------------------------------------------------------------------

    @property
    def values(self) -> list[float]:
        return [float(s.value) for s in self.sliders]

    def set_values(self, values: Sequence[float]) -> None:
        """Move every slider at once and redraw once."""
        self._muted = True
        try:
            for s, v in zip(self.sliders, values):
                s.value = float(v)
        finally:
            self._muted = False
        self.update()

    def select(self, index: int) -> None:
        """Show held-out image ``index`` of the picker."""
        self.current = self.pool.subset(slice(index, index + 1))
        self.current_name = f"held-out #{index}"
        self.update()

    @one_thread
    @torch.inference_mode()
    def load_image(self, image: bytes | np.ndarray | Any, name: str = "upload") -> None:
        """Show an image of one's own: resized to the model's resolution, classified, encoded.

        ``image``: encoded file bytes (PNG, JPEG, ...), a uint8 [H, W, 3] array or a PIL image.
        The image gets w = [E(x), softmax C(x)] and fixed noise from ``noise_seed``.
        """
        from PIL import Image

        if self.model.encoder is None:
            raise ValueError(f"a {self.model.mode} model has no encoder: it cannot explain an uploaded image")
        if isinstance(image, (bytes, bytearray, memoryview)):
            image = Image.open(io.BytesIO(bytes(image)))
        elif isinstance(image, np.ndarray):
            image = Image.fromarray(np.asarray(image, dtype=np.uint8))
        pic = image.convert("RGB").resize((self.resolution, self.resolution), Image.BICUBIC)
        x = torch.from_numpy(np.asarray(pic).copy()).permute(2, 0, 1)[None].float().div(127.5).sub(1.0)
        x = x.to(self.device)
        probs = F.softmax(classify(self.classifier, x), dim=1)
        w = self.model.encode(x, probs)
        self.current = Latents(w, fixed_noise(self.model, 1, self.noise_seed, self.device), "uploaded", x)
        self.current_name = name
        self.update()

    # -- rendering -----------------------------------------------------------------------------

    @torch.inference_mode()
    def render(self, values: Sequence[float] | None = None) -> dict[str, Any]:
        """The current image: ``input`` (real image or None), ``original`` and ``edited`` renders
        (float [1, 3, R, R]), and ``p_original`` / ``p_edited`` (softmax [2])."""
        values = self.values if values is None else list(values)
        zeros = [0.0] * len(self.coords)
        original = render_signed(self.model, self.current, self.coords, zeros, self.style_min, self.style_max)
        edited = (original if not any(values) else
                  render_signed(self.model, self.current, self.coords, values, self.style_min, self.style_max))
        p = F.softmax(classify(self.classifier, torch.cat([original, edited])), dim=1).cpu()
        return {"input": self.current.images, "original": original, "edited": edited,
                "p_original": p[0], "p_edited": p[1]}

    @one_thread
    def update(self, change: Any = None) -> None:
        """Redraw the pictures and the probability label (the sliders' observer)."""
        if self._muted:
            return
        out = self.render()
        pics = ([] if out["input"] is None else [as_hwc_uint8(out["input"])[0]])
        pics += [as_hwc_uint8(out["original"])[0], as_hwc_uint8(out["edited"])[0]]
        self.image.value = _png(pics, self.scale)
        c0, c1 = self.class_names
        po, pe = out["p_original"], out["p_edited"]
        verdict = f"{self.class_names[int(po.argmax())]} → {self.class_names[int(pe.argmax())]}"
        self.label.value = (f"{self.current_name}: p({c1}) {float(po[1]):.3f} → {float(pe[1]):.3f}, "
                            f"p({c0}) {float(po[0]):.3f} → {float(pe[0]):.3f} (decision {verdict})")

    def _on_pick(self, change: dict[str, Any]) -> None:
        self.select(int(change["new"]))

    def _on_upload(self, change: dict[str, Any]) -> None:
        got = _upload_content(change["new"])
        if got is not None:
            self.load_image(got[1], name=got[0])

    # -- static fallback -----------------------------------------------------------------------

    @one_thread
    def static_figure(self, n_images: int = 4, path: str | Path | None = None):
        """Fixed slider settings as a figure: per held-out image (rows, both base classes), the
        render, then each top attribute alone at ±1 towards the image's other class, then all of
        them together; titled with the probability of that other class."""
        plt = _mpl()
        choice = choose_images(self.explanation, n_images)
        k = len(self.coords)
        cols = k + 2
        fig, axes = plt.subplots(len(choice.indices), cols, figsize=(0.95 * cols + 0.4, 1.05 * len(choice.indices) + 0.4),
                                 squeeze=False)
        dims = self.model.generator.style_dims
        for row, (idx, base) in enumerate(zip(choice.indices, choice.base_class)):
            lat = self.explanation.eval_set.subset(slice(idx, idx + 1))
            sign = 1.0 if base == 1 else -1.0  # +1 moves towards class 0 (module docstring)
            settings = [[0.0] * k] + [[sign if j == r else 0.0 for j in range(k)] for r in range(k)] + [[sign] * k]
            imgs = torch.cat([render_signed(self.model, lat, self.coords, v, self.style_min, self.style_max)
                              for v in settings])
            p = class_probability(self.classifier, imgs, 1 - base)
            for col, (ax, img) in enumerate(zip(axes[row], as_hwc_uint8(imgs))):
                ax.imshow(img, interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_title(f"p({self.class_names[1 - base]})={float(p[col]):.2f}", fontsize=6, pad=2)
                if row == 0:
                    head = "render" if col == 0 else ("all" if col == cols - 1 else
                                                      "#{} L{} C{}".format(col, *layer_channel(self.attributes, col - 1, dims)))
                    ax.text(0.5, 1.28, head, transform=ax.transAxes, ha="center", fontsize=7)
            axes[row][0].set_ylabel(f"{self.class_names[base]} →\n{self.class_names[1 - base]}", fontsize=7)
        task, mode = self.explanation.results.get("task", ""), self.explanation.results.get("mode", "")
        fig.suptitle(f"explorer, static view: sliders at ±1 towards the other class ({task} {mode})", fontsize=8)
        fig.tight_layout()
        if path is not None:
            return _save(fig, path)
        return fig

    def show(self, n_images: int = 4, path: str | Path | None = None) -> None:
        """Display the widget and then the static figure (see the module docstring on headless runs)."""
        fig = self.static_figure(n_images, path)
        if not _in_notebook():
            _mpl().close(fig)
            return
        from IPython.display import display

        display(self.widget)
        display(fig)
        _mpl().close(fig)


def explorer(explanation: Explanation, *, top: int = 6, class_names: Sequence[str],
             attributes: Attributes | str = "attfind", max_images: int = 64) -> Explorer:
    """Build the explorer app of ``explanation``; call ``.show()`` to display it (see :class:`Explorer`)."""
    return Explorer(explanation, top=top, class_names=class_names, attributes=attributes, max_images=max_images)
