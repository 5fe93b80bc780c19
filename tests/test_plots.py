"""Figures by content: the pixels a figure colours are the explanation's."""

from __future__ import annotations

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from xsnn import explain, plots  # noqa: E402
from xsnn.compare import IRRELEVANT, RELEVANT, Budgets, compare, make_background  # noqa: E402
from xsnn.data import load_sample  # noqa: E402
from xsnn.features import FeatureSet  # noqa: E402
from xsnn.model import load_model  # noqa: E402


@pytest.fixture(scope="module")
def comparison():
    model = load_model("mnist10-sparse192")
    images, _ = load_sample()
    return compare(
        model,
        images[0],
        features=FeatureSet.patches(model.input_shape, 4),
        explainer="permutation",
        max_evals=5 * 99,
        background=make_background("kmeans", images[100:140], size=3, seed=0),
        budgets=Budgets.scaled(6),
    )


def _overlay(ax) -> np.ndarray:
    """Cells the overlay of a mask panel colours (its unmasked cells)."""
    image = ax.get_images()[-1].get_array()
    return ~np.ma.getmaskarray(image)


def test_comparison_figure_colours_the_explanations(comparison):
    fig = plots.comparison_figure(comparison)
    axes = fig.axes
    assert np.array_equal(_overlay(axes[1]), comparison.pixel_mask(comparison.axp))
    assert np.array_equal(_overlay(axes[2]), comparison.pixel_mask(comparison.cxp))
    heat = np.asarray(axes[3].get_images()[0].get_array())
    assert np.array_equal(heat, comparison.shap.pixel_values())
    marked = axes[3].collections[0].get_offsets()
    rows, cols = np.nonzero(comparison.irrelevant_pixels())
    assert sorted(map(tuple, np.asarray(marked).astype(int).tolist())) == sorted(zip(cols.tolist(), rows.tolist()))
    assert (comparison.relevance == IRRELEVANT).any() and (comparison.relevance == RELEVANT).any()
    assert np.array_equal(np.asarray(axes[0].get_images()[0].get_array()), comparison.shap.data.astype(float))


def test_explanation_and_shap_figures(comparison):
    model = load_model("mnist10-sparse192")
    e = explain(model, load_sample()[0][3], time_limit=20)
    fig = plots.explanation_figure(e)
    assert np.array_equal(_overlay(fig.axes[1]), e.pixel_mask)
    fig = plots.shap_figure(comparison.shap)
    assert np.array_equal(np.asarray(fig.axes[1].get_images()[0].get_array()), comparison.shap.pixel_values())


def test_distributions_count_every_decided_value():
    rng = np.random.default_rng(0)
    rows = [{"jaccard": float(v), "topk_sufficient": bool(b)} for v, b in zip(rng.random(50), rng.integers(0, 2, 50))]
    rows += [{"jaccard": None, "topk_sufficient": None}] * 3
    fig = plots.distributions_figure(rows, ["jaccard", "topk_sufficient"], bins=10)
    heights = [p.get_height() for p in fig.axes[0].patches]
    expected, _ = np.histogram([r["jaccard"] for r in rows[:50]], bins=10)
    assert heights == expected.tolist()
    bars = [p.get_height() for p in fig.axes[1].patches]
    assert bars == [sum(not r["topk_sufficient"] for r in rows[:50]), sum(r["topk_sufficient"] for r in rows[:50])]
    assert "3 undecided" in fig.axes[0].get_title()


def test_save_writes_png_and_svg(tmp_path, comparison):
    written = plots.save(plots.comparison_figure(comparison), tmp_path / "figure.png")
    assert [p.name for p in written] == ["figure.png", "figure.svg"]
    assert written[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and b"<svg" in written[1].read_bytes()[:500]
