"""Plotting helpers shared by the book and the labs (matplotlib only)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from .metrics import RocCurve
from .utils import as_images

__all__ = ["image_grid", "plot_curves", "plot_roc", "format_table", "show_table"]


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
