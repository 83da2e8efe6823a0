"""The docstring examples of sepbn.nn run (also collected by `pytest sepbn`; here so `pytest tests` has them)."""

import doctest
import importlib

import pytest

MODULES = ["functional", "attention", "sepbn", "bruteforce", "mixture", "convert", "similarity"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"sepbn.nn.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
