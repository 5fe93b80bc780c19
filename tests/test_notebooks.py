"""Every notebook in notebooks/ runs from top to bottom without error, in its quick mode.

The notebooks read ``XSNN_NOTEBOOK_QUICK=1`` (small budgets, fewer images); the committed outputs
come from full mode. The same check runs with nbmake: ``XSNN_NOTEBOOK_QUICK=1 pytest --nbmake notebooks``.
"""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
EXPECTED = ["01_quickstart.ipynb", "02_sat_vs_smt.ipynb", "03_axp_vs_shap.ipynb", "04_causal_queries.ipynb"]


def test_the_four_notebooks_are_there():
    assert [p.name for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path, monkeypatch):
    monkeypatch.setenv("XSNN_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]
    assert not [out for out in outputs if out.get("output_type") == "error"]
    text = "".join(out.get("text", "") for out in outputs)
    assert "quick mode" in text  # the environment variable reached the kernel
