import contextlib

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
