"""Figures: explanations, SHAP heat maps and metric distributions (matplotlib, imported lazily).

Every function returns a ``matplotlib.figure.Figure`` and draws from explicit arrays, so that a
test can read back what was coloured: in :func:`comparison_figure` the overlay of the AXp panel
is a masked array whose unmasked cells are exactly the AXp's pixels, and the markers on the SHAP
panel sit exactly on the proven-irrelevant pixels. :func:`save` writes PNG and SVG.
Nothing here computes an explanation: pass the objects of :mod:`xsnn.explanation` and
:mod:`xsnn.compare`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "comparison_figure",
    "explanation_figure",
    "shap_figure",
    "distributions_figure",
    "save",
    "DISTRIBUTION_METRICS",
]

DISTRIBUTION_METRICS = (
    "axp_size",
    "smallest_sufficient_k",
    "shap_order_axp_size",
    "jaccard",
    "topk_sufficient",
    "irrelevant_mass",
    "unknown_mass",
    "kendall_tau",
    "rbo",
    "ffa_error",
    "cxp_size",
    "smallest_changing_k",
    "topk_cxp_changes",
)
AXP_COLOUR = "#1b9e77"
CXP_COLOUR = "#d95f02"


def _pyplot():
    """pyplot, imported on first use (matplotlib falls back to its Agg backend without a display)."""
    import matplotlib.pyplot as plt

    return plt


def _background_image(data: np.ndarray | None, spikes: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """The picture under the overlays: the raw image, else the pixels that spike at least once."""
    if data is not None:
        return np.asarray(data, dtype=float).reshape(_shape2d(shape))
    return (np.asarray(spikes).sum(axis=0) > 0).astype(float).reshape(_shape2d(shape))


def _shape2d(shape: Sequence[int]) -> tuple[int, int]:
    shape = tuple(int(s) for s in shape)
    return shape if len(shape) == 2 else (1, int(np.prod(shape)))


def _mask_panel(ax, picture: np.ndarray, mask: np.ndarray, colour: str, title: str) -> None:
    from matplotlib.colors import ListedColormap

    ax.imshow(picture, cmap="gray_r", alpha=0.35, interpolation="nearest")
    overlay = np.ma.masked_array(np.ones(mask.shape), mask=~mask)
    ax.imshow(overlay, cmap=ListedColormap([colour]), vmin=0, vmax=1, alpha=0.85, interpolation="nearest")
    ax.set_title(title, fontsize=9)


def _heat_panel(ax, values: np.ndarray, title: str):
    limit = float(np.abs(values).max()) or 1.0
    shown = ax.imshow(values, cmap="coolwarm", vmin=-limit, vmax=limit, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    return shown


def _clean(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def comparison_figure(comparison, *, title: str | None = None):
    """Image | AXp | CXp | SHAP heat map, side by side; proven-irrelevant pixels marked with dots.

    ``comparison`` is a :class:`xsnn.compare.Comparison`. The SHAP panel shows each pixel's
    feature value ``phi`` (red pushes towards the prediction, blue away); the dots are the pixels
    of features proven to occur in no AXp.
    """
    plt = _pyplot()
    sv = comparison.shap
    shape = _shape2d(sv.input_shape)
    picture = _background_image(sv.data, sv.spikes, sv.input_shape)
    fig, axes = plt.subplots(1, 4, figsize=(11, 3.2))
    axes[0].imshow(picture, cmap="gray_r", interpolation="nearest")
    axes[0].set_title(f"image (predicted {sv.target_label})", fontsize=9)
    row = comparison.metrics
    _mask_panel(
        axes[1],
        picture,
        comparison.pixel_mask(comparison.axp).reshape(shape),
        AXP_COLOUR,
        f"AXp: {len(comparison.axp)} features ({row.get('axp_status')})",
    )
    cxp_note = f"{len(comparison.cxp)} features" if comparison.cxp else "none"
    _mask_panel(axes[2], picture, comparison.pixel_mask(comparison.cxp).reshape(shape), CXP_COLOUR, f"CXp: {cxp_note}")
    shown = _heat_panel(axes[3], sv.pixel_values().reshape(shape), f"SHAP ({sv.explainer})")
    rows, cols = np.nonzero(comparison.irrelevant_pixels().reshape(shape))
    axes[3].scatter(cols, rows, s=2, c="black", marker=".", linewidths=0, label="irrelevant (in no AXp)")
    if len(rows):
        axes[3].legend(loc="lower center", bbox_to_anchor=(0.5, -0.18), fontsize=7, frameon=False, markerscale=4)
    fig.colorbar(shown, ax=axes[3], fraction=0.046, pad=0.04)
    for ax in axes:
        _clean(ax)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def explanation_figure(explanation, *, title: str | None = None):
    """Image | explanation for an :class:`xsnn.Explanation` (its ``pixel_mask`` coloured)."""
    plt = _pyplot()
    picture = _background_image(explanation.data, explanation.spikes, explanation.input_shape)
    mask = np.asarray(explanation.pixel_mask).reshape(picture.shape)
    fig, axes = plt.subplots(1, 2, figsize=(5.6, 3))
    axes[0].imshow(picture, cmap="gray_r", interpolation="nearest")
    axes[0].set_title("image", fontsize=9)
    kind = str(getattr(explanation, "kind", "axp")).upper()
    _mask_panel(
        axes[1],
        picture,
        mask,
        AXP_COLOUR if kind != "CXP" else CXP_COLOUR,
        f"{kind}: {explanation.size} features ({explanation.status})",
    )
    for ax in axes:
        _clean(ax)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def shap_figure(shap_values, *, title: str | None = None):
    """Image | SHAP heat map for :class:`xsnn.compare.ShapValues`."""
    plt = _pyplot()
    shape = _shape2d(shap_values.input_shape)
    fig, axes = plt.subplots(1, 2, figsize=(6, 3))
    axes[0].imshow(
        _background_image(shap_values.data, shap_values.spikes, shap_values.input_shape),
        cmap="gray_r",
        interpolation="nearest",
    )
    axes[0].set_title("image", fontsize=9)
    shown = _heat_panel(axes[1], shap_values.pixel_values().reshape(shape), f"SHAP ({shap_values.explainer})")
    fig.colorbar(shown, ax=axes[1], fraction=0.046, pad=0.04)
    for ax in axes:
        _clean(ax)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _numbers(rows: Sequence[dict], metric: str) -> tuple[np.ndarray, bool]:
    """The decided values of ``metric`` (None and '' left out) and whether they are Booleans."""
    values = [r.get(metric) for r in rows]
    values = [v for v in values if v is not None and v != ""]
    if values and all(isinstance(v, bool) or v in ("True", "False") for v in values):
        return np.array([v is True or v == "True" for v in values], float), True
    return np.array([float(v) for v in values], float), False


def distributions_figure(
    rows: Sequence[dict], metrics: Sequence[str] | None = None, *, bins: int = 20, title: str | None = None
):
    """One histogram per metric over many images (``rows``: the dicts of ``xsnn compare``).

    Undecided values (``None``) are left out and counted in the panel title; Boolean metrics are
    drawn as two bars (False, True).
    """
    plt = _pyplot()
    metrics = list(metrics or DISTRIBUTION_METRICS)
    cols = min(4, len(metrics))
    nrows = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.4 * nrows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        values, boolean = _numbers(rows, metric)
        undecided = len(rows) - len(values)
        if boolean:
            ax.bar([0, 1], [int((values == 0).sum()), int((values == 1).sum())], color="#7570b3")
            ax.set_xticks([0, 1], ["False", "True"])
        elif len(values):
            ax.hist(values, bins=bins, color="#7570b3")
        ax.set_title(f"{metric} (n={len(values)}" + (f", {undecided} undecided)" if undecided else ")"), fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def save(figure, path: str | Path, formats: Sequence[str] = ("png", "svg"), dpi: int = 150) -> list[Path]:
    """Write ``figure`` as ``path`` with each suffix in ``formats`` (``path``'s own suffix is replaced)."""
    base = Path(path)
    base = base.with_suffix("") if base.suffix.lstrip(".") in formats else base
    written = []
    for fmt in formats:
        target = base.with_name(base.name + f".{fmt}")
        figure.savefig(
            target, format=fmt, dpi=dpi, bbox_inches="tight", metadata={"Date": None} if fmt == "svg" else None
        )
        written.append(target)
    return written


def batch_summary_figure(records: Sequence[dict]):
    """Histograms of explanation time and size, and size against time, by status, for the rows of
    a batch run (``xsnn summarize --plot``): each row needs ``status``, ``explain_s`` and ``size``."""
    plt = _pyplot()
    shown = [r for r in records if r["explain_s"] is not None and r["size"] is not None]
    statuses = sorted({r["status"] for r in shown})
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    times = np.array([max(r["explain_s"], 1e-3) for r in shown])
    bins = np.geomspace(times.min(), times.max() * 1.01, 40) if len(times) else 10
    sizes = np.array([r["size"] for r in shown])
    size_bins = np.linspace(sizes.min(), sizes.max() + 1, 40) if len(sizes) else 10
    for status in statuses:
        picked = [r for r in shown if r["status"] == status]
        axes[0].hist([max(r["explain_s"], 1e-3) for r in picked], bins=bins, alpha=0.7, label=status)
        axes[1].hist([r["size"] for r in picked], bins=size_bins, alpha=0.7, label=status)
        axes[2].scatter([r["explain_s"] for r in picked], [r["size"] for r in picked], s=6, alpha=0.6, label=status)
    axes[0].set(xscale="log", xlabel="explanation time (s)", ylabel="instances")
    axes[1].set(xlabel="explanation size (features)", ylabel="instances")
    axes[2].set(xscale="log", xlabel="explanation time (s)", ylabel="size (features)")
    if statuses:
        for axis in axes:
            axis.legend(fontsize=8)
    fig.suptitle(f"{len(shown)} explanations")
    fig.tight_layout()
    return fig


def close(figure) -> None:
    """Free a figure's memory (pyplot keeps every open figure)."""
    _pyplot().close(figure)
