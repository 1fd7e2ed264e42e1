r"""Fixtures of the graph-layer tests: the sparse product over ``edge_index``
(:func:`gdl_pyg.nn.conv.message_passing_conv.csr_adjacency`)."""
import pytest

import gdl_pyg.nn.conv.convolutional_conv as convolutional_conv
import gdl_pyg.nn.conv.message_passing_conv as message_passing_conv


@pytest.fixture
def csr_builds(monkeypatch):
    r"""A list that gets one entry per CSR adjacency a layer builds for its
    sparse product (in every module that calls :func:`csr_adjacency`): its
    flow, so that the forward product (the layer's flow) and the backward one
    (over the transposed edges, the other flow) can be told apart."""
    built = []
    original = message_passing_conv.csr_adjacency

    def spy(*args):
        built.append(args[3])
        return original(*args)

    for module in (message_passing_conv, convolutional_conv):
        monkeypatch.setattr(module, "csr_adjacency", spy)
    return built


@pytest.fixture
def product_at_any_size(monkeypatch):
    r"""The sparse product for graphs of every size (the tests' graphs are
    below :obj:`PRODUCT_MIN_MESSAGE_ELEMENTS`)."""
    monkeypatch.setattr(message_passing_conv, "PRODUCT_MIN_MESSAGE_ELEMENTS", 0)


@pytest.fixture
def threads():
    r"""``torch.set_num_threads`` for one test (restored after it): compiled
    layers take the sparse product on several threads, inductor's gather and
    scatter on one."""
    import torch
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)
