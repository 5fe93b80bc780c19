"""The examples in the public API's docstrings run and print what they say."""

import doctest
import importlib

import pytest


@pytest.mark.parametrize("module", ["xsnn.api", "xsnn.explanation"])
def test_docstring_examples(module, monkeypatch):
    monkeypatch.delenv("XSNN_DATA", raising=False)
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    if module == "xsnn.api":
        assert result.attempted >= 25  # the examples are there (a module without any would pass silently)
