"""Compatibility: the protocols moved to :mod:`sepbn.protocols` (the ground floor, numpy only)."""

from ..protocols import *  # noqa: F401,F403
from ..protocols import __all__  # noqa: F401
