import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from gdl_pyg.domains.grid import grid_to_data
from gdl_pyg.domains.lifted_grid import lift_grid
from gdl_pyg.groups import CyclicGroup, DihedralGroup, Translations, permute_nodes
from gdl_pyg.nn.conv.lifting_conv import LiftingConv
from gdl_pyg.nn.pool.group_pool import GroupPool
from gdl_pyg.testing import assert_equivariant

GROUPS = {"p4": CyclicGroup(4), "p4m": DihedralGroup(4)}


def _transform_image(img, group, h):
    # h = s * N + k is r^k f^s: flip first, then rotate
    k, s = h % group.N, h // group.N
    if s:
        img = torch.flip(img, dims=(-1,))
    return torch.rot90(img, k * 4 // group.N, dims=(-2, -1))


def dense_lifting(img, weight, bias, group):
    r"""Reference: ``img [B, C, H, W]`` convolved with each rotated / flipped
    kernel; returns the lifted layout ``[B * H * W * |G|, O]``."""
    r = weight.size(-1) // 2
    out = torch.stack([F.conv2d(img, _transform_image(weight, group, h), padding=r)
                       for h in range(group.order)], dim=2)  # [B, O, G, H, W]
    out = out.permute(0, 3, 4, 2, 1).reshape(-1, weight.size(0))
    return out + bias if bias is not None else out


def digits(num=4):
    images = torch.tensor(load_digits().images[:num], dtype=torch.float64) / 16.0
    return grid_to_data(images.unsqueeze(1), batched=True)


def lifted_forward(group, fast=False):
    def run(module, data):
        out = lift_grid(data, group)
        out.x = module(data.x, data.edge_index, data.edge_offset,
                       grid_shape=data.grid_shape if fast else None)
        return out
    return run


def test_shapes_repr_and_attributes():
    conv = LiftingConv(1, 8, kernel_size=3, group=CyclicGroup(4))
    assert str(conv) == "LiftingConv(1, 8, kernel_size=3, group=p4)"
    assert str(LiftingConv(2, 4, 5, group="p4m")) == "LiftingConv(2, 4, kernel_size=5, group=p4m)"
    assert str(LiftingConv(2, 4, 3, group=DihedralGroup(2))) == \
        "LiftingConv(2, 4, kernel_size=3, group=pmm)"
    assert "p4" in LiftingConv.group_name and "D4" in LiftingConv.group_name
    assert isinstance(conv.group, CyclicGroup) and conv.order == 4
    assert conv.weight.shape == (8, 1, 3, 3)
    assert conv.bias.shape == (8,)
    assert LiftingConv(1, 8, 3, bias=False).bias is None
    assert set(conv.state_dict()) == {"weight", "bias"}

    data = grid_to_data(torch.randn(2, 1, 6, 5), batched=True)
    out = conv(data.x, data.edge_index, data.edge_offset)
    assert out.shape == (2 * 6 * 5 * 4, 8)
    assert conv(data.x, data.edge_index, data.edge_offset,
                grid_shape=data.grid_shape).shape == out.shape

    old = conv.weight.detach().clone()
    conv.reset_parameters()
    assert not torch.equal(old, conv.weight)


@pytest.mark.parametrize("group", [CyclicGroup(4), DihedralGroup(4), CyclicGroup(2),
                                   DihedralGroup(1)], ids=lambda g: g.name)
@pytest.mark.parametrize("kernel_size", [1, 3, 5])
def test_matches_dense_reference(group, kernel_size):
    torch.manual_seed(0)
    img = torch.randn(2, 3, 7, 6, dtype=torch.float64)  # not square: no symmetry needed here
    data = grid_to_data(img, batched=True, radius=max(1, kernel_size // 2))
    conv = LiftingConv(3, 4, kernel_size, group).double()
    ref = dense_lifting(img, conv.weight, conv.bias, group)
    general = conv(data.x, data.edge_index, data.edge_offset)
    fast = conv(data.x, data.edge_index, data.edge_offset, grid_shape=data.grid_shape)
    fast_tuple = conv(data.x, data.edge_index, data.edge_offset, grid_shape=(7, 6))
    assert torch.allclose(general, ref, atol=1e-10, rtol=0)
    assert torch.allclose(fast, ref, atol=1e-10, rtol=0)
    assert torch.equal(fast, fast_tuple)

    # gradients agree too
    g1 = torch.autograd.grad(general.square().sum(), conv.weight)[0]
    g2 = torch.autograd.grad(fast.square().sum(), conv.weight)[0]
    assert torch.allclose(g1, g2, atol=1e-10, rtol=0)


def test_general_path_any_node_order_and_wide_stencil():
    torch.manual_seed(1)
    img = torch.randn(2, 6, 6, dtype=torch.float64)
    conv = LiftingConv(2, 3, 3, "p4m").double()
    data = grid_to_data(img)
    ref = conv(data.x, data.edge_index, data.edge_offset, grid_shape=data.grid_shape)
    # a radius-2 stencil: offsets outside the 3x3 kernel contribute nothing
    wide = grid_to_data(img, radius=2)
    assert torch.allclose(conv(wide.x, wide.edge_index, wide.edge_offset), ref,
                          atol=1e-10, rtol=0)
    # float offsets are accepted
    assert torch.allclose(conv(wide.x, wide.edge_index, wide.edge_offset.double()), ref,
                          atol=1e-10, rtol=0)
    # relabelled pixels: the lifted rows follow the pixel order
    perm = torch.randperm(data.num_nodes, generator=torch.Generator().manual_seed(0))
    shuffled = permute_nodes(data, perm)
    out = conv(shuffled.x, shuffled.edge_index, shuffled.edge_offset)
    assert torch.allclose(out.view(-1, 8, 3), ref.view(-1, 8, 3)[perm], atol=1e-10, rtol=0)


@pytest.mark.parametrize("name", ["p4", "p4m"])
@pytest.mark.parametrize("fast", [False, True], ids=["general", "fast"])
def test_equivariant_on_digits(name, fast):
    torch.manual_seed(0)
    group = GROUPS[name]
    conv = LiftingConv(1, 6, 3, group=name)
    res = assert_equivariant(conv, digits(), group, forward=lifted_forward(name, fast),
                             output_keys=["x"])
    assert res.num_elements == group.order
    assert res.error < 1e-9


def test_equivariant_wide_kernel_on_padded_digits():
    torch.manual_seed(0)
    images = torch.tensor(load_digits().images[:2], dtype=torch.float64) / 16.0
    data = grid_to_data(F.pad(images, (2, 2, 2, 2)).unsqueeze(1), batched=True, radius=2)
    conv = LiftingConv(1, 3, 5, group="p4m")
    assert_equivariant(conv, data, GROUPS["p4m"], forward=lifted_forward("p4m"),
                       output_keys=["x"])


def test_checker_fails_on_broken_variants():
    data = digits(2)
    torch.manual_seed(0)
    # the same (un-rotated) kernel for every element: a plain convolution
    # copied |G| times is not equivariant on the lifted grid
    broken = LiftingConv(1, 6, 3, group="p4")
    broken.kernel_index.copy_(torch.arange(9).expand(4, 9))
    with pytest.raises(AssertionError, match="not equivariant to C4"):
        assert_equivariant(broken, data, GROUPS["p4"], forward=lifted_forward("p4"),
                           output_keys=["x"])
    # a p4 lifting is not flip-equivariant: after pooling over rotations
    # the result is rotation- but not reflection-equivariant
    conv = LiftingConv(1, 6, 3, group="p4")

    def pooled(module, d):
        out = lifted_forward("p4")(module, d)
        return GroupPool("max")(out)
    assert_equivariant(conv, data, CyclicGroup(4), forward=pooled, output_keys=["x"])
    with pytest.raises(AssertionError, match="not equivariant to D4"):
        assert_equivariant(conv, data, DihedralGroup(4), forward=pooled, output_keys=["x"])
    p4m = LiftingConv(1, 6, 3, group="p4m")

    def pooled_m(module, d):
        return GroupPool("max")(lifted_forward("p4m")(module, d))
    assert_equivariant(p4m, data, DihedralGroup(4), forward=pooled_m, output_keys=["x"])


def test_batching():
    torch.manual_seed(0)
    conv = LiftingConv(1, 4, 3, "p4m").double()
    data = digits(3)
    out = conv(data.x, data.edge_index, data.edge_offset)
    for b in range(3):
        single = grid_to_data(data.x[data.batch == b].view(1, 8, 8))
        one = conv(single.x, single.edge_index, single.edge_offset)
        assert torch.allclose(out.view(3, -1, 4)[b], one, atol=1e-12, rtol=0)


def test_bad_inputs():
    with pytest.raises(ValueError, match="odd"):
        LiftingConv(1, 4, 4)
    with pytest.raises(ValueError, match="odd"):
        LiftingConv(1, 4, 0)
    with pytest.raises(ValueError, match="square"):
        LiftingConv(1, 4, (3, 5))
    assert LiftingConv(1, 4, (3, 3)).kernel_size == 3
    with pytest.raises(ValueError, match="in_channels"):
        LiftingConv(0, 4, 3)
    with pytest.raises(ValueError, match="Unknown grid group"):
        LiftingConv(1, 4, 3, group="p6")
    with pytest.raises(ValueError, match="N in"):
        LiftingConv(1, 4, 3, group=CyclicGroup(8))
    with pytest.raises(TypeError, match="grid group"):
        LiftingConv(1, 4, 3, group=Translations())
    conv = LiftingConv(2, 4, 3)
    data = grid_to_data(torch.randn(1, 5, 5))
    with pytest.raises(ValueError, match=r"\[num_nodes, 2\]"):
        conv(data.x, data.edge_index, data.edge_offset)
    with pytest.raises(ValueError, match=r"planar 'edge_offset'"):
        conv(data.x.repeat(1, 2), data.edge_index, data.edge_offset[:, :1])
    with pytest.raises(TypeError, match="sparse adjacency"):
        conv(data.x.repeat(1, 2), data.edge_index, None)
    data = grid_to_data(torch.randn(2, 5, 5))
    with pytest.raises(ValueError, match="whole number"):
        conv(data.x, data.edge_index, data.edge_offset, grid_shape=(4, 4))
    with pytest.raises(ValueError, match="2-D"):
        conv(data.x, data.edge_index, data.edge_offset, grid_shape=(5, 5, 1))


def test_compile_general_path():
    torch._dynamo.reset()
    conv = LiftingConv(1, 4, 3, "p4m")
    data = grid_to_data(torch.randn(1, 6, 6))
    explain = torch._dynamo.explain(conv)(data.x, data.edge_index, data.edge_offset)
    assert explain.graph_break_count == 0
    assert explain.graph_count == 1
    torch._dynamo.reset()


def test_fast_path_output_is_a_view_of_conv2d():
    # the pixel rows are read as a channels-last image and the conv2d output
    # (channels-last, channel h * O + o) is the lifted layout without a copy
    torch.manual_seed(0)
    conv = LiftingConv(3, 4, 3, "p4m", bias=False).double()
    img = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    data = grid_to_data(img, batched=True)
    out = conv(data.x, data.edge_index, data.edge_offset, grid_shape=data.grid_shape)
    assert out._base is not None and out.is_contiguous()
    ref = dense_lifting(img, conv.weight, None, DihedralGroup(4))
    assert torch.allclose(out, ref, atol=1e-10, rtol=0)
