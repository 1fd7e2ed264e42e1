import itertools
import math

import pytest
import torch
from torch_geometric.data import Batch, Data

from gdl_pyg.domains.grid import data_to_grid, grid_graph, grid_shape_of, grid_to_data
from gdl_pyg.groups import Permutations
from gdl_pyg.groups.base import permute_nodes


@pytest.mark.parametrize("shape", [(3, 4, 5), (2, 3, 4, 5), (1, 1, 1), (2, 1, 7)])
def test_round_trip(shape):
    image = torch.randn(*shape)
    data = grid_to_data(image)
    assert torch.equal(data_to_grid(data), image)
    C, spatial = shape[0], shape[1:]
    n = math.prod(spatial)
    assert data.x.shape == (n, C) and data.pos.shape == (n, len(spatial))
    assert data.grid_shape.tolist() == [list(spatial)]
    assert "batch" not in data
    # row-major pixels, pos = coordinates
    for i, p in zip([0, n - 1], [(0, ) * len(spatial), tuple(s - 1 for s in spatial)]):
        assert data.pos[i].tolist() == list(p)
        assert torch.equal(data.x[i], image[(slice(None), ) + p])


@pytest.mark.parametrize("shape", [(3, 2, 4, 5), (2, 2, 3, 2, 4), (1, 1, 1, 1)])
def test_round_trip_batched(shape):
    images = torch.randn(*shape)
    data = grid_to_data(images, batched=True)
    B, n = shape[0], math.prod(shape[2:])
    assert torch.equal(data_to_grid(data), images)
    assert torch.equal(data.batch, torch.arange(B).repeat_interleave(n))
    assert data.grid_shape.shape == (B, len(shape) - 2)
    assert data.num_edges == B * grid_to_data(images[0]).num_edges
    # the same as PyG's batching of the single grids
    batch = Batch.from_data_list([grid_to_data(im) for im in images])
    for key in ("x", "pos", "edge_index", "edge_offset", "grid_shape", "batch"):
        assert torch.equal(data[key], batch[key]), key


@pytest.mark.parametrize("batched", [False, True])
def test_round_trip_after_node_permutation(batched):
    images = torch.randn(2, 3, 4, 5)
    data = grid_to_data(images if batched else images[0], batched=batched, periodic=True)
    perm = Permutations().sample(data, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(perm, torch.arange(perm.numel()))
    shuffled = permute_nodes(data, perm)
    assert torch.equal(data_to_grid(shuffled), images if batched else images[0])
    shuffled.y = torch.arange(shuffled.num_nodes).double()
    y = data_to_grid(shuffled, key="y")  # a 1-D attribute comes back with one channel
    assert y.shape == ((2, 1, 4, 5) if batched else (1, 4, 5))
    assert torch.equal(y.flatten(), perm.argsort().double())


def test_integer_images_and_dtypes():
    image = torch.randint(0, 255, (3, 4, 4), dtype=torch.uint8)
    data = grid_to_data(image)
    assert data.x.dtype == torch.uint8 and data.pos.dtype == torch.get_default_dtype()
    assert torch.equal(data_to_grid(data), image)
    data = grid_to_data(torch.randn(1, 3, 3, dtype=torch.float64))
    assert data.pos.dtype == torch.float64 and data.edge_offset.dtype == torch.long


@pytest.mark.parametrize("shape,radius", [((4, 5), 1), ((3, 6), 2), ((2, 3, 4), 1),
                                          ((1, 5), 1)])
def test_grid_graph_bounded(shape, radius):
    edge_index, edge_offset = grid_graph(shape, radius)
    coords = torch.tensor(list(itertools.product(*[range(s) for s in shape])))
    src, dst = edge_index
    assert torch.equal(coords[src] - coords[dst], edge_offset)
    assert int(edge_offset.abs().max()) == min(radius, max(shape) - 1)
    # every pair within Chebyshev distance r, once, self loops included
    cheb = (coords[:, None] - coords[None]).abs().max(-1).values
    assert edge_index.size(1) == int((cheb <= radius).sum())
    assert len(set(map(tuple, edge_index.t().tolist()))) == edge_index.size(1)
    assert bool((src == dst).any())
    # sorted by offset, then by target
    offsets = [tuple(o) for o in edge_offset.tolist()]
    keys = list(zip(offsets, dst.tolist()))
    assert keys == sorted(keys)


@pytest.mark.parametrize("shape,radius", [((4, 5), 1), ((5, 6), 2), ((2, 3), 1),
                                          ((1, 1), 1), ((3, 2, 4), 1)])
def test_grid_graph_periodic(shape, radius):
    edge_index, edge_offset = grid_graph(shape, radius, periodic=True)
    coords = torch.tensor(list(itertools.product(*[range(s) for s in shape])))
    n, d = coords.size(0), len(shape)
    assert edge_index.size(1) == n * (2 * radius + 1) ** d  # the full stencil everywhere
    src, dst = edge_index
    size = torch.tensor(shape)
    assert torch.equal((coords[dst] + edge_offset) % size, coords[src])
    assert int(edge_offset.abs().max()) == radius
    # every node receives exactly one edge per offset
    assert torch.equal(torch.bincount(dst, minlength=n),
                       torch.full((n, ), (2 * radius + 1) ** d))


def test_grid_to_data_radius_and_periodic():
    image = torch.randn(2, 5, 4)
    for radius, periodic in ((0, False), (1, True), (2, False)):
        data = grid_to_data(image, radius=radius, periodic=periodic)
        ei, off = grid_graph((5, 4), radius, periodic)
        assert torch.equal(data.edge_index, ei) and torch.equal(data.edge_offset, off)
    assert grid_to_data(image, radius=0).num_edges == 20  # self loops only


def test_grid_shape_of():
    data = grid_to_data(torch.randn(2, 3, 4, 5), batched=True)
    assert grid_shape_of(data) == (4, 5)
    mixed = Batch.from_data_list([grid_to_data(torch.randn(1, 2, 2)),
                                  grid_to_data(torch.randn(1, 2, 3))])
    with pytest.raises(ValueError, match="grids of one size"):
        grid_shape_of(mixed)
    with pytest.raises(ValueError, match="grid_shape"):
        grid_shape_of(Data(x=torch.randn(4, 1)))


def test_grid_to_data_errors():
    with pytest.raises(TypeError, match="expected a torch.Tensor \\(got list\\)"):
        grid_to_data([[1.0, 2.0]])
    with pytest.raises(TypeError, match="ndarray"):
        grid_to_data(torch.randn(1, 2, 2).numpy())
    with pytest.raises(ValueError, match="\\[C, H, W\\] or \\[C, D, H, W\\]"):
        grid_to_data(torch.randn(4, 4))
    with pytest.raises(ValueError, match="got shape \\[1, 2, 3, 4, 5\\]"):
        grid_to_data(torch.randn(1, 2, 3, 4, 5))
    with pytest.raises(ValueError, match="\\[B, C, H, W\\]"):
        grid_to_data(torch.randn(3, 4, 4), batched=True)
    with pytest.raises(ValueError, match="empty grid"):
        grid_to_data(torch.randn(3, 0, 4))
    with pytest.raises(ValueError, match="empty grid"):
        grid_to_data(torch.randn(0, 3, 4, 4), batched=True)
    for bad in (float("nan"), float("inf"), -float("inf")):
        image = torch.randn(2, 3, 3)
        image[1, 2, 0] = bad
        with pytest.raises(ValueError, match="NaN or infinite"):
            grid_to_data(image)
    with pytest.raises(ValueError, match="non-negative stencil radius"):
        grid_to_data(torch.randn(1, 3, 3), radius=-1)
    with pytest.raises(ValueError, match="non-empty grid shape"):
        grid_graph((3, 0))


def test_data_to_grid_errors():
    data = grid_to_data(torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match="tensor attribute 'h'"):
        data_to_grid(data, key="h")
    data.h = torch.randn(12, 2, 2)
    with pytest.raises(ValueError, match="'h' of shape \\[num_nodes, C\\]"):
        data_to_grid(data, key="h")
    partial = Data(x=data.x[:-1], pos=data.pos[:-1], grid_shape=data.grid_shape)
    with pytest.raises(ValueError, match="full grid"):
        data_to_grid(partial)
    flat = Data(x=data.x, pos=data.pos[:, :1], grid_shape=data.grid_shape)
    with pytest.raises(ValueError, match="'pos' with 2 coordinates"):
        data_to_grid(flat)
