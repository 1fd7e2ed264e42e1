r"""Test gates for optional packages."""
import importlib.util
from typing import Callable


def with_package(*names: str) -> Callable:
    r"""Skips a test unless every package in ``names`` is importable (uses the
    flags of :mod:`gdl_pyg.typing` where it has one)."""
    import pytest

    from gdl_pyg import typing as t
    missing = []
    for name in names:
        flag = getattr(t, f"WITH_{name.upper().replace('-', '_')}", None)
        ok = flag if flag is not None else importlib.util.find_spec(name) is not None
        if not ok:
            missing.append(name)
    return pytest.mark.skipif(bool(missing), reason=f"requires {', '.join(missing)}")
