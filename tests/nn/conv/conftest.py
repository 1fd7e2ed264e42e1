r"""Fixtures of the graph-layer tests: the sparse product over ``edge_index``
(:func:`gdl_pyg.nn.conv.message_passing_conv.csr_adjacency`)."""
import pytest

import gdl_pyg.nn.conv.convolutional_conv as convolutional_conv
import gdl_pyg.nn.conv.diffusion_conv as diffusion_conv
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

    for module in (message_passing_conv, convolutional_conv, diffusion_conv):
        monkeypatch.setattr(module, "csr_adjacency", spy)
    return built


@pytest.fixture
def product_at_any_size(monkeypatch):
    r"""The sparse product for graphs of every size (the tests' graphs are
    below the thresholds of :func:`eager_cpu_product` and
    :func:`sparse_sum_nodes`)."""
    for name in ("PRODUCT_MIN_MESSAGE_ELEMENTS", "PRODUCT_MIN_UNWEIGHTED_ELEMENTS",
                 "PRODUCT_MIN_SPARSE_ENTRIES", "COMPILED_PRODUCT_MIN_ELEMENTS"):
        monkeypatch.setattr(message_passing_conv, name, 0)


@pytest.fixture
def threads():
    r"""``torch.set_num_threads`` for one test (restored after it): compiled
    layers take the sparse product on several threads, inductor's gather and
    scatter on one."""
    import torch
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


@pytest.fixture
def output_and_grads():
    r"""``run(conv, x, *args, seed=2)``: the output of ``conv(x, *args)`` (:obj:`x`
    a tensor or a pair, fresh leaves each call) and the gradients of a fixed
    random projection of it with respect to :obj:`x` and the parameters
    (:obj:`None` for unused ones), to compare two paths of a layer."""
    import torch

    def run(conv, x, *args, seed=2):
        pair = isinstance(x, tuple)
        xs = [t.detach().clone().requires_grad_() for t in (x if pair else (x, ))]
        out = conv(tuple(xs) if pair else xs[0], *args)
        weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed),
                             dtype=out.dtype)
        return out, torch.autograd.grad((out * weight).sum(), xs + list(conv.parameters()),
                                        allow_unused=True)

    return run


@pytest.fixture
def gather_path():
    r"""``force(conv)``: forces PyG's gather-and-scatter :meth:`propagate` on
    :obj:`conv` (a registered hook turns the sparse product off); returns the
    hook's handle, whose ``remove()`` turns it back on."""
    def force(conv):
        return conv.register_propagate_forward_pre_hook(lambda module, inputs: None)

    return force
