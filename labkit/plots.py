"""Plotting helpers shared by the book and the labs (matplotlib only)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from .metrics import RocCurve
from .utils import as_images

__all__ = ["image_grid", "plot_curves", "plot_roc", "format_table", "show_table", "flow_diagram"]


def _np(a) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def image_grid(images, *, titles: Sequence[str] | None = None, ncols: int = 10, cmap: str = "gray", size: float = 1.2, vmin: float | None = 0.0, vmax: float | None = 1.0):
    """Show images ``(N, H, W)``, ``(N, 1, H, W)``, ``(N, 3, H, W)`` or flat square ``(N, H*W)``.

    Returns the matplotlib Figure.
    """
    a = _np(images).astype(np.float32)
    if a.ndim == 2:  # flat square images, viewed as labkit views them everywhere
        a = as_images(torch.as_tensor(a))[0].numpy()
    if a.ndim == 4:
        a = a[:, 0] if a.shape[1] == 1 else a.transpose(0, 2, 3, 1)
    n = a.shape[0]
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows * (1.25 if titles else 1)), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(a[i], cmap=cmap, vmin=vmin, vmax=vmax)
            if titles is not None:
                ax.set_title(titles[i], fontsize=8)
    fig.tight_layout()
    return fig


def plot_curves(x, ys: Mapping[str, Sequence[float]], *, xlabel: str, ylabel: str, title: str | None = None, logx: bool = False, ax=None, marker: str = "o"):
    """Plot several named curves over the same x values. Returns the Axes."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.6))
    for name, y in ys.items():
        ax.plot(_np(x), _np(y), marker=marker, label=name)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return ax


def plot_roc(curves: Mapping[str, RocCurve], *, log: bool = True, ax=None, title: str | None = None):
    """ROC curves, on log-log axes by default (Carlini et al. 2022), with the chance diagonal."""
    if ax is None:
        _, ax = plt.subplots(figsize=(4.6, 4.4))
    lo = 1e-4 if log else 0.0
    for name, c in curves.items():
        ax.plot(np.clip(c.fpr, lo, 1), np.clip(c.tpr, lo, 1), label=f"{name} (AUC {c.auc:.3f})")
    ax.plot([lo, 1], [lo, 1], "k--", lw=0.8, label="chance")
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, 1)
        ax.set_ylim(lo, 1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    return ax


def format_table(rows: Sequence[Mapping[str, object]], *, columns: Sequence[str] | None = None, floatfmt: str = ".3f", style: str = "markdown") -> str:
    """Format a list of dicts as a table: Markdown (``style="markdown"``) or aligned plain text
    (``style="text"``: first column left-aligned, the others right-aligned). Floats use ``floatfmt``."""
    if not rows:
        raise ValueError("rows must be a non-empty list of dicts")
    if style not in ("markdown", "text"):
        raise ValueError(f"style must be 'markdown' or 'text', got {style!r}")
    columns = list(columns or rows[0].keys())

    def cell(v: object) -> str:
        text = format(float(v), floatfmt) if isinstance(v, (float, np.floating)) else str(v)
        return text.replace("|", "\\|") if style == "markdown" else text  # a bare | would end a Markdown cell

    head = [cell(c) for c in columns]
    body = [[cell(r.get(c, "")) for c in columns] for r in rows]
    if style == "markdown":
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in columns) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body])
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths))) for r in body]
    return "\n".join(lines)


def show_table(rows: Sequence[Mapping[str, object]], **kwargs) -> None:
    """Display :func:`format_table` as rendered Markdown in Jupyter (plain text elsewhere)."""
    text = format_table(rows, **kwargs)
    try:
        from IPython.display import Markdown, display

        display(Markdown(text))
    except ImportError:  # pragma: no cover - outside Jupyter
        print(text)


_BOX_STYLES = {  # kind -> (face colour, edge colour)
    "party": ("#dbe9f6", "#2b6cb0"),  # a person or organisation
    "model": ("#fde8cf", "#c05621"),  # a trained model or an API in front of one
    "data": ("#e2f0d9", "#2f855a"),  # a dataset or a record
    "algorithm": ("#eee4f7", "#6b46c1"),  # a procedure (KeyGen, training, ...)
    "output": ("#f2f2f2", "#4a5568"),  # a result: a bit, a prediction, a label
    "plain": (None, None),  # text without a box (an ellipsis, a note)
}


def flow_diagram(
    boxes: Mapping[str, tuple],
    arrows: Sequence[tuple],
    *,
    size: tuple[float, float] = (8.0, 3.0),
    xlim: tuple[float, float] = (0.0, 10.0),
    ylim: tuple[float, float] = (0.0, 4.0),
    title: str | None = None,
    fontsize: float = 10.0,
):
    """Draw a block diagram: labelled boxes joined by labelled arrows (threat models, pipelines).

    Args:
        boxes: name -> ``(x, y, text)`` or ``(x, y, text, kind)``: the box's centre in data
            coordinates (within ``xlim`` x ``ylim``), its text (may hold newlines and
            ``$math$``) and its kind, one of ``"party"``, ``"model"``, ``"data"``,
            ``"algorithm"``, ``"output"`` (the colour; default ``"model"``) or ``"plain"`` (no box).
        arrows: ``(source, target)``, ``(source, target, label)`` or
            ``(source, target, label, options)`` with ``options`` a dict of ``rad`` (curvature,
            default 0), ``dashed`` (bool) and ``label_offset`` ((dx, dy) added to the label's
            position, the middle of the two centres).

    Returns:
        the matplotlib Figure.
    """
    fig, ax = plt.subplots(figsize=size)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.axis("off")
    artists = {}
    for name, spec in boxes.items():
        if len(spec) not in (3, 4):
            raise ValueError(f"box {name!r} must be (x, y, text) or (x, y, text, kind), got {spec!r}")
        x, y, text = spec[:3]
        kind = spec[3] if len(spec) == 4 else "model"
        if kind not in _BOX_STYLES:
            raise ValueError(f"box {name!r}: kind must be one of {sorted(_BOX_STYLES)}, got {kind!r}")
        face, edge = _BOX_STYLES[kind]
        box = None if face is None else dict(boxstyle="round,pad=0.45", facecolor=face, edgecolor=edge, linewidth=1.2)
        artists[name] = ax.text(x, y, text, ha="center", va="center", fontsize=fontsize + (4 if box is None else 0), zorder=3, bbox=box)
    fig.canvas.draw()  # lay the boxes out, so that arrows can end at their edges
    for spec in arrows:
        if len(spec) not in (2, 3, 4):
            raise ValueError(f"an arrow must be (source, target[, label[, options]]), got {spec!r}")
        src, dst = spec[0], spec[1]
        label = spec[2] if len(spec) > 2 else ""
        opts = spec[3] if len(spec) > 3 else {}
        for end in (src, dst):
            if end not in artists:
                raise ValueError(f"arrow {src!r} -> {dst!r}: no box named {end!r}")
        a, b = artists[src], artists[dst]
        ax.annotate("", xy=b.get_position(), xytext=a.get_position(), zorder=2,
                    arrowprops=dict(arrowstyle="-|>", color="#333333", lw=1.2, mutation_scale=14,
                                    linestyle="--" if opts.get("dashed") else "-",
                                    connectionstyle=f"arc3,rad={opts.get('rad', 0.0)}",
                                    patchA=a.get_bbox_patch(), patchB=b.get_bbox_patch(), shrinkA=3, shrinkB=3))
        if label:
            (x0, y0), (x1, y1) = a.get_position(), b.get_position()
            dx, dy = opts.get("label_offset", (0.0, 0.0))
            ax.text((x0 + x1) / 2 + dx, (y0 + y1) / 2 + dy, label, ha="center", va="center", fontsize=fontsize - 1,
                    zorder=4, style="italic", bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none", alpha=0.9))
    if title:
        ax.set_title(title, fontsize=fontsize + 1)
    fig.tight_layout()
    return fig
