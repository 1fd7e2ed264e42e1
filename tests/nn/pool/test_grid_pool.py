import math

import pytest
import torch
import torch.nn.functional as F
from torch_geometric.data import Batch, Data

from gdl_pyg.domains.grid import data_to_grid, grid_to_data
from gdl_pyg.groups import CyclicGroup, DihedralGroup, Permutations, Translations
from gdl_pyg.groups.base import permute_nodes
from gdl_pyg.nn.pool.grid_pool import GridPool
from gdl_pyg.testing import assert_equivariant

DTYPE = torch.float64


def reference(img, k, reduce, ceil_mode):
    d = img.dim() - 2
    if reduce == "max":
        fn = F.max_pool2d if d == 2 else F.max_pool3d
    else:
        fn = F.avg_pool2d if d == 2 else F.avg_pool3d
    return fn(img, k, stride=k, ceil_mode=ceil_mode)


def lifted(img, pairs="all", periodic=False):
    r"""A lifted grid ``Data`` from ``img [B, G, C, H, W]``: node
    ``(b * n + pixel) * G + h``, edges :math:`(j, h') \to (i, h)` for the
    pixel edges of the 3x3 stencil and the element pairs ``(h, h')`` in
    ``pairs`` ("all" or "same"), ordered by ``h``, ``h'``, pixel edge."""
    B, G, C = img.shape[:3]
    shape = tuple(img.shape[3:])
    n = math.prod(shape)
    x = img.permute(0, 3, 4, 1, 2).reshape(B * n * G, C)
    pixels = grid_to_data(torch.zeros(B, 1, *shape), batched=True, periodic=periodic)
    ei, off = pixels.edge_index, pixels.edge_offset
    if pairs == "all":
        h, h_src = torch.meshgrid(torch.arange(G), torch.arange(G), indexing="ij")
        h, h_src = h.reshape(-1, 1), h_src.reshape(-1, 1)
    else:
        h = h_src = torch.arange(G).view(-1, 1)
    return Data(x=x, pos=pixels.pos.repeat_interleave(G, dim=0),
                edge_index=torch.stack([(ei[0] * G + h_src).reshape(-1),
                                        (ei[1] * G + h).reshape(-1)]),
                edge_offset=off.repeat(h.numel(), 1),
                grid_shape=pixels.grid_shape, batch=pixels.batch.repeat_interleave(G),
                group_elem=torch.arange(G).repeat(B * n))


def unlift(x, B, G, shape):
    return x.view(B, *shape, G, -1).permute(0, 3, 4, 1, 2)


def test_repr():
    assert str(GridPool()) == "GridPool(kernel_size=2, reduce=max, ceil_mode=False)"
    assert str(GridPool((2, 3), "mean", True)) == \
        "GridPool(kernel_size=(2, 3), reduce=mean, ceil_mode=True)"
    pool = GridPool()
    pool.reset_parameters()
    assert len(list(pool.parameters())) == 0


@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("reduce", ["max", "mean"])
def test_equals_max_pool2d_avg_pool2d(reduce, ceil_mode):
    for shape, k in (((8, 6), 2), ((7, 5), 2), ((5, 9), 3), ((3, 3), 2), ((6, 7), (2, 3)),
                     ((1, 5), (1, 2))):
        img = torch.randn(3, 4, *shape, dtype=DTYPE)
        expected = reference(img, k, reduce, ceil_mode)
        pool = GridPool(k, reduce, ceil_mode)
        data = grid_to_data(img, batched=True)
        for dense in (None, False):
            out = pool(data, dense=dense)
            assert torch.allclose(data_to_grid(out), expected, atol=1e-12, rtol=0)
        assert pool.output_shape(shape) == tuple(expected.shape[2:])
        single = pool(grid_to_data(img[0]))
        assert "batch" not in single
        assert torch.allclose(data_to_grid(single), expected[0], atol=1e-12, rtol=0)


@pytest.mark.parametrize("reduce", ["max", "mean"])
def test_equals_pool3d(reduce):
    for shape, ceil_mode in (((4, 6, 2), False), ((5, 3, 4), True), ((5, 3, 4), False)):
        img = torch.randn(2, 3, *shape, dtype=DTYPE)
        data = grid_to_data(img, batched=True)
        expected = reference(img, 2, reduce, ceil_mode)
        pool = GridPool(2, reduce, ceil_mode)
        for dense in (None, False):
            assert torch.allclose(data_to_grid(pool(data, dense=dense)), expected, atol=1e-12)


@pytest.mark.parametrize("radius,periodic", [(1, False), (1, True), (2, False), (2, True)])
def test_coarse_structure_is_the_grid_of_the_pooled_image(radius, periodic):
    img = torch.randn(2, 3, 9, 8, dtype=DTYPE)
    data = grid_to_data(img, batched=True, radius=radius, periodic=periodic)
    data.y = torch.tensor([0, 1])
    out = GridPool(2, ceil_mode=True)(data)
    expected = grid_to_data(reference(img, 2, "max", True), batched=True, radius=radius,
                            periodic=periodic)
    assert set(out.keys()) == set(expected.keys()) | {"y"}
    for key in expected.keys():
        assert torch.equal(out[key], expected[key]), key
    assert torch.equal(out.y, data.y)
    # the constructor overrides what is detected from the edges
    forced = GridPool(2, ceil_mode=True, periodic=not periodic, radius=radius + 1)(data)
    expected = grid_to_data(expected.x.view(2, 5, 4, 3).permute(0, 3, 1, 2), batched=True,
                            radius=radius + 1, periodic=not periodic)
    assert torch.equal(forced.edge_index, expected.edge_index)
    assert torch.equal(forced.edge_offset, expected.edge_offset)


def test_pyg_batch_and_no_edges():
    imgs = [torch.randn(2, 4, 6, dtype=DTYPE) for _ in range(3)]
    batch = Batch.from_data_list([grid_to_data(im) for im in imgs])
    out = GridPool(2)(batch)
    expected = reference(torch.stack(imgs), 2, "max", False)
    assert torch.equal(data_to_grid(out), expected)
    assert torch.equal(out.grid_shape, torch.tensor([[2, 3]] * 3))
    bare = Data(x=batch.x, pos=batch.pos, grid_shape=batch.grid_shape, batch=batch.batch)
    out = GridPool(2)(bare)
    assert "edge_index" not in out and torch.equal(data_to_grid(out), expected)


def test_any_node_order_gives_the_canonical_result():
    img = torch.randn(2, 3, 7, 6, dtype=DTYPE)
    data = grid_to_data(img, batched=True, periodic=True)
    pool = GridPool(2, "mean", ceil_mode=True)
    out = pool(data)
    perm = Permutations().sample(data, generator=torch.Generator().manual_seed(0))
    shuffled = permute_nodes(data, perm)
    assert not pool.is_canonical(shuffled, (7, 6), 2, 1)
    with pytest.raises(ValueError, match="not in the canonical"):
        pool(shuffled, dense=True)
    out_shuffled = pool(shuffled)  # falls back to the scatter path
    for key in out.keys():
        assert torch.allclose(out[key], out_shuffled[key], atol=1e-12), key


@pytest.mark.parametrize("pairs", ["all", "same"])
def test_lifted_grid(pairs):
    B, G, C, shape = 2, 4, 3, (5, 6)
    img = torch.randn(B, G, C, *shape, dtype=DTYPE)
    data = lifted(img, pairs)
    for reduce, ceil_mode in (("max", False), ("mean", True)):
        pool = GridPool(2, reduce, ceil_mode)
        expected = reference(img.reshape(B * G, C, *shape), 2, reduce, ceil_mode)
        out_shape = tuple(expected.shape[2:])
        expected = expected.view(B, G, C, *out_shape)
        for dense in (None, False):
            out = pool(data, dense=dense)
            assert torch.allclose(unlift(out.x, B, G, out_shape), expected, atol=1e-12)
        # the coarse grid is lifted in the same way
        ref = lifted(expected, pairs)
        for key in ref.keys():
            assert torch.equal(out[key], ref[key]), key


@pytest.mark.parametrize("periodic", [False, True])
def test_lifted_layout_of_lift_grid(periodic):
    lifted_grid = pytest.importorskip("gdl_pyg.domains.lifted_grid")
    img = torch.randn(2, 3, 6, 4, dtype=DTYPE)
    for group in ("p4", "p4m"):
        data = lifted_grid.lift_grid(grid_to_data(img, batched=True, periodic=periodic), group)
        G = int(data.group_elem.max()) + 1
        data.x = torch.randn(data.num_nodes, 2, dtype=DTYPE)
        out = GridPool(2)(data)
        expected = lifted_grid.lift_grid(grid_to_data(reference(img, 2, "max", False),
                                                      batched=True, periodic=periodic), group)
        for key in expected.keys():
            assert torch.equal(out[key], expected[key]), key
        x = unlift(data.x, 2, G, (6, 4)).reshape(2 * G, 2, 6, 4)
        assert torch.equal(unlift(out.x, 2, G, (3, 2)),
                           reference(x, 2, "max", False).view(2, G, 2, 3, 2))


@pytest.mark.parametrize("group", [CyclicGroup(4), DihedralGroup(4)])
def test_max_pool_commutes_with_rotations_and_flips(group):
    pool = GridPool(2)
    data = grid_to_data(torch.randn(2, 3, 6, 6), batched=True)
    res = assert_equivariant(pool, data, group, forward=lambda m, d: m(d),
                             output_keys=["x"])
    assert res.num_elements == group.order
    assert_equivariant(pool, data, group, forward=lambda m, d: m(d, dense=False),
                       output_keys=["x"])
    volume = grid_to_data(torch.randn(2, 4, 4, 6), periodic=True)
    assert_equivariant(GridPool(2, "mean"), volume, group, forward=lambda m, d: m(d),
                       output_keys=["x"])
    # lifted grid: pooled per group element, which the group permutes
    img = torch.randn(1, group.order, 2, 4, 4)
    assert_equivariant(pool, lifted(img), group, forward=lambda m, d: m(d),
                       output_keys=["x"])


def test_max_pool_commutes_with_translations_by_the_window():
    data = grid_to_data(torch.randn(2, 3, 6, 4, dtype=DTYPE), batched=True, periodic=True)
    pool, T = GridPool(2), Translations()
    out = pool(data)
    for t in ((2, 0), (4, 2), (0, 2)):
        shifted = pool(T.act(t, data))
        assert torch.equal(shifted.x, T.act((t[0] // 2, t[1] // 2), out).x)
    # a shift by one pixel changes the windows
    assert not torch.allclose(pool(T.act((1, 0), data)).x, out.x)


def test_checker_fails_on_odd_grid_in_floor_mode():
    data = grid_to_data(torch.randn(2, 3, 5, 5), batched=True)
    with pytest.raises(AssertionError, match="'GridPool' is not equivariant to C4"):
        assert_equivariant(GridPool(2), data, CyclicGroup(4), forward=lambda m, d: m(d),
                           output_keys=["x"])
    # keeping the partial windows does not help: they sit on one side only
    with pytest.raises(AssertionError, match="not equivariant to C4"):
        assert_equivariant(GridPool(2, ceil_mode=True), data, CyclicGroup(4),
                           forward=lambda m, d: m(d), output_keys=["x"])
    # a 3x3 window tiles the 6x6 grid symmetrically again
    assert_equivariant(GridPool(3), grid_to_data(torch.randn(3, 6, 6)), CyclicGroup(4),
                       forward=lambda m, d: m(d), output_keys=["x"])


def test_errors():
    data = grid_to_data(torch.randn(3, 4, 4))
    with pytest.raises(TypeError, match="expected a grid 'Data'"):
        GridPool()(data.x)
    with pytest.raises(ValueError, match="grid_shape"):
        GridPool()(Data(x=data.x, pos=data.pos))
    with pytest.raises(ValueError, match="3-D kernel"):
        GridPool((2, 2, 2))(data)
    with pytest.raises(ValueError, match="floor mode"):
        GridPool(5)(data)
    with pytest.raises(ValueError, match="reduce 'max' or 'mean'"):
        GridPool(reduce="sum")
    with pytest.raises(ValueError, match="kernel_size"):
        GridPool(0)
    with pytest.raises(ValueError, match="radius"):
        GridPool(radius=-1)
    with pytest.raises(ValueError, match="full grid"):
        GridPool()(Data(x=data.x[:-1], pos=data.pos[:-1], grid_shape=data.grid_shape))
