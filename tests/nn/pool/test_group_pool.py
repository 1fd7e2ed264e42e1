import pytest
import torch
from sklearn.datasets import load_digits

from gdl_pyg.domains.grid import data_to_grid, grid_to_data
from gdl_pyg.domains.lifted_grid import lift_grid
from gdl_pyg.groups import CyclicGroup, DihedralGroup
from gdl_pyg.nn.pool.group_pool import GroupPool, group_pool
from gdl_pyg.testing import assert_equivariant

GROUPS = {"p4": CyclicGroup(4), "p4m": DihedralGroup(4)}


def lifted_digits(name, channels=3, num=2, seed=0):
    images = torch.tensor(load_digits().images[:num], dtype=torch.float64) / 16.0
    pix = grid_to_data(images.unsqueeze(1), batched=True)
    data = lift_grid(pix, name)
    G = GROUPS[name].order
    gen = torch.Generator().manual_seed(seed)
    scale = torch.randn(G, channels, generator=gen, dtype=torch.float64)
    data.x = pix.x.repeat_interleave(G, 0) * scale.repeat(pix.num_nodes, 1)
    return pix, data


@pytest.mark.parametrize("reduce", ["max", "mean", "sum"])
def test_group_pool_function(reduce):
    x = torch.randn(6 * 4, 5)
    out = group_pool(x, 4, reduce)
    assert out.shape == (6, 5)
    for i in range(6):
        block = x[4 * i:4 * i + 4]
        expected = {"max": block.max(0).values, "mean": block.mean(0),
                    "sum": block.sum(0)}[reduce]
        assert torch.allclose(out[i], expected)
    with pytest.raises(ValueError, match="multiple of 4"):
        group_pool(torch.randn(7, 5), 4)
    with pytest.raises(ValueError, match="reduce"):
        group_pool(x, 4, "median")
    with pytest.raises(ValueError, match="group order"):
        group_pool(x, 0)


@pytest.mark.parametrize("name", ["p4", "p4m"])
def test_recovers_the_pixel_grid(name):
    pix, data = lifted_digits(name, num=3)
    data.y = torch.tensor([1, 2, 3])
    out = GroupPool("mean")(data)
    G = GROUPS[name].order
    assert out.x.shape == (pix.num_nodes, 3)
    assert torch.allclose(out.x, data.x.view(-1, G, 3).mean(1))
    assert torch.equal(out.pos, pix.pos)
    assert torch.equal(out.batch, pix.batch)
    assert torch.equal(out.grid_shape, pix.grid_shape)
    assert torch.equal(out.edge_index, pix.edge_index)
    assert torch.equal(out.edge_offset, pix.edge_offset)
    assert torch.equal(out.y, data.y)
    assert "group_elem" not in out
    assert out.num_nodes == pix.num_nodes
    assert data_to_grid(out).shape == (3, 3, 8, 8)
    # after a group action the lifted edges are relabelled: still recovered
    moved = GROUPS[name].act(1, data)
    back = GroupPool()(moved)
    pix_g = GROUPS[name].act(1, pix)
    def edges(d):  # sorted (src, dst, offset) encoded as integers
        n, (src, dst), off = d.num_nodes, d.edge_index, d.edge_offset + 8
        return torch.sort(((src * n + dst) * 17 + off[:, 0]) * 17 + off[:, 1]).values
    assert torch.equal(edges(back), edges(pix_g))


@pytest.mark.parametrize("name", ["p4", "p4m"])
@pytest.mark.parametrize("reduce", ["max", "mean"])
def test_equivariant_on_digits(name, reduce):
    _, data = lifted_digits(name)
    group = GROUPS[name]
    res = assert_equivariant(GroupPool(reduce), data, group, output_keys=["x"])
    assert res.num_elements == group.order and res.error < 1e-9


def test_checker_fails_on_broken_variant():
    class FirstElement(torch.nn.Module):
        # "pooling" by keeping the identity element only: not invariant in the fibre
        def forward(self, data):
            out = GroupPool()(data)
            out.x = data.x[::4]
            return out
    _, data = lifted_digits("p4")
    with pytest.raises(AssertionError, match="not equivariant to C4"):
        assert_equivariant(FirstElement(), data, GROUPS["p4"], output_keys=["x"])


def test_repr_and_bad_inputs():
    assert str(GroupPool()) == "GroupPool(reduce='max')"
    assert str(GroupPool("mean")) == "GroupPool(reduce='mean')"
    assert "p4" in GroupPool.group_name
    with pytest.raises(ValueError, match="reduce"):
        GroupPool("median")
    pool = GroupPool()
    with pytest.raises(TypeError, match="Data"):
        pool(torch.randn(4, 2))
    pix = grid_to_data(torch.randn(1, 3, 3))
    with pytest.raises(ValueError, match="group_elem"):
        pool(pix)
    _, data = lifted_digits("p4", num=1)
    data.group_elem = data.group_elem.flip(0)
    with pytest.raises(ValueError, match="lifted layout"):
        pool(data)
