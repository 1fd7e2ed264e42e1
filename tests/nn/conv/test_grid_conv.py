import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from gdl_pyg.domains.grid import grid_to_data
from gdl_pyg.groups import CyclicGroup, Permutations, Translations
from gdl_pyg.groups.base import permute_nodes
from gdl_pyg.nn.conv.grid_conv import GridConv
from gdl_pyg.testing import assert_equivariant, equivariance_error

DTYPE = torch.float64


def general(conv, data):
    r"""The message passing path (no ``grid_shape``)."""
    return conv(data.x, data.edge_index, data.edge_offset)


def dense(conv, data):
    r"""The ``F.conv2d`` fast path."""
    return conv(data.x, data.edge_index, data.edge_offset, data.grid_shape)


def to_image(out, B, shape):
    r"""``[B * prod(shape), C]`` in canonical layout -> ``[B, C, *shape]``."""
    return out.view(B, *shape, -1).movedim(-1, 1)


def reference(conv, img):
    r"""``torch.nn.Conv{2,3}d(padding="same")`` with the weights of ``conv``.

    Circular padding wider than the grid (which PyTorch refuses) is computed
    on a tiled copy of the image, the torus unrolled."""
    d = conv.dim
    Conv = torch.nn.Conv2d if d == 2 else torch.nn.Conv3d
    shape = img.shape[2:]
    half = [k // 2 for k in conv.kernel_size]
    wraps_twice = any(h > s for h, s in zip(half, shape))
    mode = "zeros" if wraps_twice else conv.padding_mode
    ref = Conv(conv.in_channels, conv.out_channels, conv.kernel_size, padding="same",
               padding_mode=mode, bias=conv.bias is not None).to(img.dtype)
    with torch.no_grad():
        ref.weight.copy_(conv.weight)
        if conv.bias is not None:
            ref.bias.copy_(conv.bias)
    with warnings.catch_warnings():  # "padding='same' with even kernel lengths ..."
        warnings.simplefilter("ignore", UserWarning)
        if conv.padding_mode == "circular" and wraps_twice:
            reps = [2 * math.ceil(h / s) + 1 for h, s in zip(half, shape)]
            tiled = img.repeat(1, 1, *reps)
            out = ref(tiled)
            for k, (r, s) in enumerate(zip(reps, shape)):
                out = out.narrow(k + 2, (r // 2) * s, s)
            return out
        return ref(img)


def make(cin, cout, k, padding_mode="zeros", **kwargs):
    torch.manual_seed(0)
    return GridConv(cin, cout, k, padding_mode=padding_mode, **kwargs).to(DTYPE)


def test_repr_shapes_and_layout():
    conv = GridConv(3, 5, 3)
    assert str(conv) == "GridConv(3, 5, kernel_size=(3, 3), padding_mode=zeros)"
    assert conv.weight.shape == torch.nn.Conv2d(3, 5, 3).weight.shape == (5, 3, 3, 3)
    assert conv.bias.shape == (5, )
    assert GridConv.group_name == "Translations"
    conv3 = GridConv(2, 4, (3, 2, 1), bias=False, padding_mode="circular")
    assert str(conv3) == ("GridConv(2, 4, kernel_size=(3, 2, 1), padding_mode=circular, "
                          "bias=False)")
    assert conv3.weight.shape == torch.nn.Conv3d(2, 4, (3, 2, 1)).weight.shape
    assert conv3.bias is None and conv3.dim == 3
    assert GridConv(1, 1, 3, dim=3).kernel_size == (3, 3, 3)

    data = grid_to_data(torch.randn(2, 3, 4, 5), batched=True)
    assert general(conv, data).shape == dense(conv, data).shape == (40, 5)


def test_reset_parameters_like_conv2d():
    torch.manual_seed(1)
    conv = GridConv(3, 5, (3, 4))
    torch.manual_seed(1)
    ref = torch.nn.Conv2d(3, 5, (3, 4))
    assert torch.equal(conv.weight, ref.weight) and torch.equal(conv.bias, ref.bias)
    torch.manual_seed(2)
    conv.reset_parameters()
    torch.manual_seed(2)
    ref.reset_parameters()
    assert torch.equal(conv.weight, ref.weight) and torch.equal(conv.bias, ref.bias)


SIZES = [(7, 6), (6, 8), (1, 9), (1, 1)]
CHANNELS = [(1, 1), (3, 5), (4, 2)]


@pytest.mark.parametrize("padding_mode", ["zeros", "circular"])
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_equals_conv2d(k, padding_mode):
    periodic = padding_mode == "circular"
    for (cin, cout), (H, W) in zip(CHANNELS * 2, SIZES + SIZES[::-1]):
        conv = make(cin, cout, k, padding_mode)
        for B, batched in ((1, False), (3, True)):
            img = torch.randn(B, cin, H, W, dtype=DTYPE)
            data = grid_to_data(img if batched else img[0], batched=batched,
                                radius=k // 2, periodic=periodic)
            expected = reference(conv, img)
            for path in (general, dense):
                out = to_image(path(conv, data), B, (H, W))
                assert out.shape == expected.shape
                assert torch.allclose(out, expected, atol=1e-10, rtol=0), (path, H, W, cin)


def test_rectangular_kernel_and_tuple_grid_shape():
    conv = make(2, 3, (2, 5))
    img = torch.randn(2, 2, 5, 6, dtype=DTYPE)
    data = grid_to_data(img, batched=True, radius=2)
    expected = reference(conv, img)
    assert torch.allclose(to_image(general(conv, data), 2, (5, 6)), expected, atol=1e-10)
    out = conv(data.x, data.edge_index, data.edge_offset, grid_shape=(5, 6))
    assert torch.allclose(to_image(out, 2, (5, 6)), expected, atol=1e-10)


@pytest.mark.parametrize("padding_mode", ["zeros", "circular"])
def test_equals_conv3d(padding_mode):
    for k, shape in (((3, 3, 3), (3, 4, 5)), ((2, 3, 4), (4, 1, 5))):
        conv = make(2, 3, k, padding_mode)
        img = torch.randn(2, 2, *shape, dtype=DTYPE)
        data = grid_to_data(img, batched=True, radius=2, periodic=padding_mode == "circular")
        expected = reference(conv, img)
        for path in (general, dense):
            out = to_image(path(conv, data), 2, shape)
            assert torch.allclose(out, expected, atol=1e-10, rtol=0)


def test_general_path_any_node_order_and_larger_stencil():
    conv = make(3, 4, 3)
    data = grid_to_data(torch.randn(2, 3, 5, 6, dtype=DTYPE), batched=True, radius=2)
    out = dense(conv, data)
    # the radius-2 stencil has edges outside the 3x3 kernel: they send nothing
    assert torch.allclose(general(conv, data), out, atol=1e-10)
    perm = Permutations().sample(data, generator=torch.Generator().manual_seed(0))
    shuffled = permute_nodes(data, perm)
    assert torch.allclose(general(conv, shuffled), out[perm], atol=1e-10)


def test_gradients_agree():
    conv = make(3, 4, 3, "circular")
    img = torch.randn(2, 3, 5, 4, dtype=DTYPE)
    data = grid_to_data(img, batched=True, periodic=True)
    target = torch.randn(40, 4, dtype=DTYPE)
    grads = []
    for path in (general, dense):
        conv.zero_grad()
        x = data.x.clone().requires_grad_()
        out = conv(x, data.edge_index, data.edge_offset,
                   data.grid_shape if path is dense else None)
        ((out - target) ** 2).sum().backward()
        grads.append((x.grad, conv.weight.grad.clone(), conv.bias.grad.clone()))
    ref = torch.nn.Conv2d(3, 4, 3, padding="same", padding_mode="circular").to(DTYPE)
    ref.load_state_dict(conv.state_dict())
    x = img.clone().requires_grad_()
    ((to_image(target, 2, (5, 4)) - ref(x)) ** 2).sum().backward()
    grads.append((x.grad.movedim(1, -1).reshape(40, 3), ref.weight.grad, ref.bias.grad))
    for a, b in zip(grads[0], grads[1]):
        assert torch.allclose(a, b, atol=1e-10)
    for a, b in zip(grads[0], grads[2]):
        assert torch.allclose(a, b, atol=1e-10)
    small = grid_to_data(torch.randn(1, 3, 3, dtype=DTYPE))
    conv = make(1, 2, 3)
    x = small.x.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: conv(x, small.edge_index, small.edge_offset), (x, ))


def test_translation_equivariance():
    data = grid_to_data(torch.randn(2, 3, 6, 5), batched=True, periodic=True)
    conv = GridConv(3, 4, 3, padding_mode="circular")
    elements = [(1, 0), (0, 2), (5, 4), (3, 1)]
    res = assert_equivariant(conv, data, Translations(), elements=elements)  # fast path
    assert res.error < 1e-12 and res.num_elements == 4
    assert_equivariant(conv, data, Translations(), forward=general, elements=elements)
    even = GridConv(3, 2, (4, 2), padding_mode="circular")
    data2 = grid_to_data(torch.randn(3, 6, 5), radius=2, periodic=True)
    assert_equivariant(even, data2, Translations(), forward=general)
    assert_equivariant(even, data2, Translations())


def test_checker_fails_without_the_symmetry():
    # zero padding on a bounded grid: translations are not a symmetry of the
    # dense path, whose border stays where it is
    data = grid_to_data(torch.randn(3, 6, 5), periodic=False)
    conv = GridConv(3, 4, 3, padding_mode="zeros")
    with pytest.raises(AssertionError, match="not equivariant to Z"):
        assert_equivariant(conv, data, Translations())
    # the message passing path reads the border off the graph, which the
    # group moves along with the nodes: it commutes with the relabelling
    assert_equivariant(conv, data, Translations(), forward=general)

    # a position-dependent term breaks both paths, on the torus as well
    class PositionalGridConv(GridConv):
        def forward(self, x, edge_index, edge_offset, grid_shape=None):
            out = super().forward(x, edge_index, edge_offset, grid_shape)
            return out + torch.arange(x.size(0), dtype=x.dtype).unsqueeze(-1) * 1e-3

    periodic = grid_to_data(torch.randn(3, 6, 5), periodic=True)
    broken = PositionalGridConv(3, 4, 3, padding_mode="circular")
    for forward in (None, general):
        with pytest.raises(AssertionError, match="'PositionalGridConv' is not equivariant"):
            assert_equivariant(broken, periodic, Translations(), forward=forward)


def test_not_rotation_equivariant_unless_kernel_is_symmetric():
    data = grid_to_data(torch.randn(2, 3, 6, 6), batched=True, periodic=True)
    conv = GridConv(3, 4, 3, padding_mode="circular").to(DTYPE)
    for forward in (None, general):
        with pytest.raises(AssertionError, match="not equivariant to C4"):
            assert_equivariant(conv, data, CyclicGroup(4), forward=forward)
    with torch.no_grad():  # average the kernel over the four rotations (in float64)
        conv.weight.copy_(sum(torch.rot90(conv.weight, r, dims=(-2, -1)) for r in range(4)) / 4)
    for forward in (None, general):
        assert_equivariant(conv, data, CyclicGroup(4), forward=forward)
    # a broken kernel fails by a margin far above the tolerance
    assert equivariance_error(GridConv(3, 4, 3, padding_mode="circular"), data,
                              CyclicGroup(4)).error > 1e-3


def test_errors():
    conv = GridConv(4, 2, 3)
    data = grid_to_data(torch.randn(3, 4, 4))
    with pytest.raises(ValueError, match=r"'GridConv' expected x with 4 channels \(got 3\)"):
        general(conv, data)
    x = torch.randn(16, 4)
    with pytest.raises(ValueError, match="shape \\[num_nodes, 4\\]"):
        conv(x.view(16, 2, 2), data.edge_index, data.edge_offset)
    with pytest.raises(ValueError, match="'edge_offset' of shape"):
        conv(x, data.edge_index, torch.zeros(data.num_edges, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="integer 'edge_offset'"):
        conv(x, data.edge_index, data.edge_offset.double())
    adj = torch.sparse_coo_tensor(data.edge_index, torch.ones(data.num_edges), (16, 16),
                                  check_invariants=True)
    with pytest.raises(TypeError, match="dense torch.long"):
        conv(x, adj, data.edge_offset)
    with pytest.raises(TypeError, match="dense torch.long"):
        conv(x, data.edge_index.int(), data.edge_offset)
    with pytest.raises(ValueError, match=r"'GridConv' expected 'edge_index' "
                       r".*shape \[2, num_edges\]"):
        conv(x, data.edge_index[:1], data.edge_offset)
    with pytest.raises(ValueError, match="multiple of prod"):
        conv(x, data.edge_index, data.edge_offset, grid_shape=(3, 3))
    with pytest.raises(ValueError, match="grid_shape of 2 sizes"):
        conv(x, data.edge_index, data.edge_offset, grid_shape=(4, 2, 2))
    with pytest.raises(ValueError, match="grids of one size"):
        conv(x, data.edge_index, data.edge_offset, grid_shape=torch.tensor([[2, 4], [4, 2]]))
    with pytest.raises(ValueError, match="padding_mode"):
        GridConv(1, 1, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match="dim=3 but a 2-D"):
        GridConv(1, 1, (3, 3), dim=3)
    with pytest.raises(ValueError, match="2 or 3 positive sizes"):
        GridConv(1, 1, (3, 0))
    with pytest.raises(TypeError, match="kernel_size"):
        GridConv(1, 1, 2.5)
    with pytest.raises(ValueError, match="in_channels"):
        GridConv(0, 1, 3)
    with pytest.raises(ValueError, match="aggr='add'"):
        GridConv(1, 1, 3, aggr="mean")
    with pytest.raises(ValueError, match="flow='source_to_target'"):
        GridConv(1, 1, 3, flow="target_to_source")


def test_compile_general_path_without_graph_breaks():
    conv = GridConv(3, 4, 3)
    data = grid_to_data(torch.randn(2, 3, 5, 5), batched=True)
    torch._dynamo.reset()
    explain = torch._dynamo.explain(conv)(data.x, data.edge_index, data.edge_offset)
    assert explain.graph_count == 1
    assert explain.graph_break_count == 0
    # the dense path too, when the grid shape is given as ints (a grid_shape
    # tensor has to be read on the host)
    torch._dynamo.reset()
    explain = torch._dynamo.explain(conv)(data.x, data.edge_index, data.edge_offset, (5, 5))
    assert explain.graph_count == 1
    assert explain.graph_break_count == 0
    torch._dynamo.reset()


def test_dense_path_matches_functional_conv_in_float32():
    conv = GridConv(3, 4, 3)
    img = torch.randn(2, 3, 9, 7)
    data = grid_to_data(img, batched=True)
    expected = F.conv2d(img, conv.weight, conv.bias, padding=1)
    assert torch.allclose(to_image(dense(conv, data), 2, (9, 7)), expected, atol=1e-5)
    assert torch.allclose(to_image(general(conv, data), 2, (9, 7)), expected, atol=1e-5)
