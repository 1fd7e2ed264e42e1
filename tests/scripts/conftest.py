import contextlib
import importlib.util
import sys
import types
from pathlib import Path

import pytest
import torch


@contextlib.contextmanager
def torch_threads_restored():
    r"""Restores torch's intra-op thread count on exit."""
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    # the benchmark scripts set torch's thread count for their own process
    # (`--threads`, default 1); run in-process by these tests, they would leave
    # every later test of this pytest worker on that count
    with torch_threads_restored():
        yield


SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def load_script(name: str) -> types.ModuleType:
    r"""Imports ``scripts/<name>.py`` afresh (the scripts are not a package).
    The scripts folder goes on ``sys.path`` (some scripts import others), and
    the module is registered in ``sys.modules`` under ``name``, as a script run
    by ``python scripts/<name>.py`` could import it."""
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
