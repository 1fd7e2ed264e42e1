import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch_geometric.nn import global_mean_pool

from gdl_pyg.domains.grid import grid_to_data
from gdl_pyg.domains.lifted_grid import lift_grid
from gdl_pyg.groups import CyclicGroup, DihedralGroup, permute_nodes
from gdl_pyg.nn.conv.group_conv import GroupConv
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


def dense_group_conv(img, weight, bias, group):
    r"""Reference: ``img [B, C, |G|, H, W]``, ``weight [O, C, |G|, k, k]``;
    out[:, :, h] = sum_h' conv2d(img[:, :, h'], h . weight[:, :, h^-1 h']).
    Returns the lifted layout ``[B * H * W * |G|, O]``."""
    r = weight.size(-1) // 2
    outs = []
    for h in range(group.order):
        acc = 0
        for hp in range(group.order):
            rel = group.compose(group.inverse(h), hp)
            acc = acc + F.conv2d(img[:, :, hp], _transform_image(weight[:, :, rel], group, h),
                                 padding=r)
        outs.append(acc)
    out = torch.stack(outs, dim=2).permute(0, 3, 4, 2, 1).reshape(-1, weight.size(0))
    return out + bias if bias is not None else out


def to_lifted(img):
    # [B, C, G, H, W] -> rows (b, pixel, h)
    return img.permute(0, 3, 4, 2, 1).reshape(-1, img.size(1))


def digits(num=4):
    images = torch.tensor(load_digits().images[:num], dtype=torch.float64) / 16.0
    return grid_to_data(images.unsqueeze(1), batched=True)


def lifted_digits(group, channels=3, num=4, seed=0):
    r"""Lifted digits with ``channels`` features per node: the digit
    intensity scaled by a fixed random factor per (element, channel)."""
    data = lift_grid(digits(num), group)
    G = group.order if not isinstance(group, str) else GROUPS[group].order
    gen = torch.Generator().manual_seed(seed)
    scale = torch.randn(G, channels, generator=gen, dtype=torch.float64)
    pix = digits(num).x.repeat_interleave(G, 0)  # [N * G, 1]
    data.x = pix * scale.repeat(pix.size(0) // G, 1) + 0.1 * torch.randn(
        pix.size(0), channels, generator=gen, dtype=torch.float64)
    return data


def same_domain(fast=False):
    def run(module, data):
        out = data.clone()
        out.x = module(data.x, data.edge_index, data.edge_offset, data.group_elem,
                       grid_shape=data.grid_shape if fast else None)
        return out
    return run


def test_shapes_repr_and_attributes():
    conv = GroupConv(8, 4, kernel_size=3, group="p4m")
    assert str(conv) == "GroupConv(8, 4, kernel_size=3, group=p4m)"
    assert str(GroupConv(1, 2, 5, group=CyclicGroup(4))) == \
        "GroupConv(1, 2, kernel_size=5, group=p4)"
    assert "p4m" in GroupConv.group_name
    assert isinstance(conv.group, DihedralGroup) and conv.order == 8
    assert conv.weight.shape == (4, 8, 8, 3, 3)
    assert conv.bias.shape == (4,)
    assert GroupConv(1, 2, 3, bias=False).bias is None
    assert set(conv.state_dict()) == {"weight", "bias"}
    assert conv.expanded_weight().shape == (4 * 8, 8 * 8, 3, 3)

    data = lift_grid(grid_to_data(torch.randn(2, 1, 5, 6), batched=True), "p4m")
    x = torch.randn(data.num_nodes, 8)
    out = conv(x, data.edge_index, data.edge_offset, data.group_elem)
    assert out.shape == (2 * 5 * 6 * 8, 4)
    assert conv(x, data.edge_index, data.edge_offset, data.group_elem,
                grid_shape=data.grid_shape).shape == out.shape

    old = conv.weight.detach().clone()
    conv.reset_parameters()
    assert not torch.equal(old, conv.weight)


@pytest.mark.parametrize("group", [CyclicGroup(4), DihedralGroup(4), CyclicGroup(2),
                                   DihedralGroup(1)], ids=lambda g: g.name)
@pytest.mark.parametrize("kernel_size", [1, 3, 5])
def test_matches_dense_reference(group, kernel_size):
    torch.manual_seed(0)
    G = group.order
    img = torch.randn(2, 3, G, 6, 5, dtype=torch.float64)
    data = lift_grid(grid_to_data(torch.randn(2, 1, 6, 5), batched=True), group,
                     radius=max(1, kernel_size // 2))
    x = to_lifted(img)
    conv = GroupConv(3, 2, kernel_size, group).double()
    ref = dense_group_conv(img, conv.weight, conv.bias, group)
    general = conv(x, data.edge_index, data.edge_offset, data.group_elem)
    fast = conv(x, data.edge_index, data.edge_offset, data.group_elem,
                grid_shape=data.grid_shape)
    assert torch.allclose(general, ref, atol=1e-10, rtol=0)
    assert torch.allclose(fast, ref, atol=1e-10, rtol=0)
    g1 = torch.autograd.grad(general.square().sum(), conv.weight)[0]
    g2 = torch.autograd.grad(fast.square().sum(), conv.weight)[0]
    assert torch.allclose(g1, g2, atol=1e-10, rtol=0)


def test_general_path_any_node_order_and_wide_stencil():
    torch.manual_seed(1)
    data = lift_grid(grid_to_data(torch.randn(1, 5, 5)), "p4")
    x = torch.randn(data.num_nodes, 2, dtype=torch.float64)
    conv = GroupConv(2, 3, 3, "p4").double()
    ref = conv(x, data.edge_index, data.edge_offset, data.group_elem, grid_shape=(5, 5))
    wide = lift_grid(grid_to_data(torch.randn(1, 5, 5)), "p4", radius=2)
    out = conv(x, wide.edge_index, wide.edge_offset, wide.group_elem)
    assert torch.allclose(out, ref, atol=1e-10, rtol=0)
    data.x = x
    perm = torch.randperm(data.num_nodes, generator=torch.Generator().manual_seed(0))
    shuffled = permute_nodes(data, perm)
    out = conv(shuffled.x, shuffled.edge_index, shuffled.edge_offset, shuffled.group_elem)
    assert torch.allclose(out, ref[perm], atol=1e-10, rtol=0)


@pytest.mark.parametrize("name", ["p4", "p4m"])
@pytest.mark.parametrize("fast", [False, True], ids=["general", "fast"])
def test_equivariant_on_digits(name, fast):
    torch.manual_seed(0)
    group = GROUPS[name]
    conv = GroupConv(3, 4, 3, group=name)
    res = assert_equivariant(conv, lifted_digits(name, num=2), group, forward=same_domain(fast),
                             output_keys=["x"])
    assert res.num_elements == group.order
    assert res.error < 1e-9


def test_checker_fails_on_broken_variant():
    torch.manual_seed(0)
    # a kernel indexed by the absolute element h' instead of h^{-1} h'
    broken = GroupConv(3, 4, 3, group="p4")
    broken.group_index.copy_(torch.arange(4).expand(4, 4))
    data = lifted_digits("p4", num=2)
    with pytest.raises(AssertionError, match="not equivariant to C4"):
        assert_equivariant(broken, data, GROUPS["p4"], forward=same_domain(),
                           output_keys=["x"])
    # un-rotated spatial kernels
    broken = GroupConv(3, 4, 3, group="p4")
    broken.kernel_index.copy_(torch.arange(9).expand(4, 9))
    with pytest.raises(AssertionError, match="not equivariant to C4"):
        assert_equivariant(broken, data, GROUPS["p4"], forward=same_domain(True),
                           output_keys=["x"])


class GCNN(torch.nn.Module):
    r"""LiftingConv -> ReLU -> GroupConv -> ReLU -> GroupPool -> global mean."""

    def __init__(self, group, pool_group=True):
        super().__init__()
        self.group = group
        self.pool_group = pool_group
        self.lift = LiftingConv(1, 4, 3, group)
        self.conv = GroupConv(4, 5, 3, group)
        self.pool = GroupPool("max")

    def forward(self, data):
        lifted = lift_grid(data, self.group)
        x = self.lift(data.x, data.edge_index, data.edge_offset).relu()
        lifted.x = self.conv(x, lifted.edge_index, lifted.edge_offset,
                             lifted.group_elem).relu()
        if self.pool_group:
            pix = self.pool(lifted)
            return global_mean_pool(pix.x, pix.batch)
        # broken: keep the group axis as channels (orientation-dependent)
        G = self.conv.order
        return global_mean_pool(lifted.x.view(-1, G * 5), lifted.batch[::G])


@pytest.mark.parametrize("name", ["p4", "p4m"])
def test_gcnn_stack_is_invariant(name):
    torch.manual_seed(0)
    group = GROUPS[name]
    data = digits(2)
    res = assert_equivariant(GCNN(name), data, group, output_keys=["out"])
    assert res.error < 1e-9
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(GCNN(name, pool_group=False), data, group, output_keys=["out"])
    if name == "p4":  # a p4 network is not invariant to reflections
        with pytest.raises(AssertionError, match="not equivariant to D4"):
            assert_equivariant(GCNN(name), data, DihedralGroup(4), output_keys=["out"])


def test_batching():
    torch.manual_seed(0)
    conv = GroupConv(3, 2, 3, "p4").double()
    data = lifted_digits("p4", num=3)
    out = conv(data.x, data.edge_index, data.edge_offset, data.group_elem)
    for b in range(3):
        single = lift_grid(grid_to_data(torch.zeros(1, 8, 8)), "p4")
        x = data.x[data.batch == b]
        one = conv(x, single.edge_index, single.edge_offset, single.group_elem)
        assert torch.allclose(out.view(3, -1, 2)[b], one, atol=1e-12, rtol=0)


def test_bad_inputs():
    with pytest.raises(ValueError, match="odd"):
        GroupConv(1, 4, 2)
    with pytest.raises(ValueError, match="out_channels"):
        GroupConv(1, 0, 3)
    with pytest.raises(ValueError, match="N in"):
        GroupConv(1, 4, 3, group=DihedralGroup(3))
    with pytest.raises(TypeError, match="grid group"):
        GroupConv(1, 4, 3, group=4)
    conv = GroupConv(2, 4, 3, "p4")
    data = lift_grid(grid_to_data(torch.randn(1, 4, 4)), "p4")
    with pytest.raises(ValueError, match=r"\[num_nodes \* 4, 2\]"):
        conv(torch.randn(data.num_nodes, 3), data.edge_index, data.edge_offset,
             data.group_elem)
    with pytest.raises(ValueError, match="rows per pixel"):
        conv(torch.randn(data.num_nodes - 1, 2), data.edge_index, data.edge_offset,
             data.group_elem, grid_shape=(4, 4))
    with pytest.raises(ValueError, match="whole number"):
        conv(torch.randn(data.num_nodes, 2), data.edge_index, data.edge_offset,
             data.group_elem, grid_shape=(3, 3))


def test_compile_general_path():
    torch._dynamo.reset()
    conv = GroupConv(2, 3, 3, "p4m")
    data = lift_grid(grid_to_data(torch.randn(1, 5, 5)), "p4m")
    x = torch.randn(data.num_nodes, 2)
    explain = torch._dynamo.explain(conv)(x, data.edge_index, data.edge_offset,
                                          data.group_elem)
    assert explain.graph_break_count == 0
    assert explain.graph_count == 1
    torch._dynamo.reset()


@pytest.mark.parametrize("name", ["p4", "p4m"])
def test_fast_path_filter_is_expanded_weight_reordered(name):
    # the fast path's filter (element outside the channel) holds the entries of
    # expanded_weight (channel outside the element), nothing else
    conv = GroupConv(3, 2, 3, name).double()
    G = conv.order
    ref = conv.expanded_weight().view(2, G, 3, G, 3, 3).permute(1, 0, 3, 2, 4, 5)
    assert torch.equal(conv._grid_weight(), ref.reshape(G * 2, G * 3, 3, 3))


def test_fast_path_reads_nodes_as_channels_last_image():
    # no copy of input or output on the fast path: the output is a view of
    # conv2d's channels-last result, and gradients reach a non-contiguous input
    torch.manual_seed(0)
    conv = GroupConv(3, 2, 3, "p4").double()
    data = lift_grid(grid_to_data(torch.randn(2, 1, 5, 6), batched=True), "p4")
    x = torch.randn(3, data.num_nodes, dtype=torch.float64)
    out = conv(x.t(), data.edge_index, data.edge_offset, data.group_elem,
               grid_shape=data.grid_shape)
    ref = conv(x.t().contiguous(), data.edge_index, data.edge_offset, data.group_elem)
    assert torch.allclose(out, ref, atol=1e-12, rtol=0)
    conv.bias = None
    out = conv(x.t().contiguous(), data.edge_index, data.edge_offset, data.group_elem,
               grid_shape=data.grid_shape)
    assert out._base is not None and out.is_contiguous()  # a view, rows (b, pixel, h)
