import pytest
import torch
from torch_geometric.data import Data

from gdl_pyg.domains.grid import grid_to_data
from gdl_pyg.domains.lifted_grid import (group_index_table, kernel_index_table, lift_grid,
                                         resolve_grid_group, wallpaper_name)
from gdl_pyg.groups import SO2, CyclicGroup, DihedralGroup, Translations, permute_nodes

GROUPS = [CyclicGroup(1), CyclicGroup(2), CyclicGroup(4), DihedralGroup(1),
          DihedralGroup(2), DihedralGroup(4)]


def _transform_image(img, group, h):
    # h = s * N + k is r^k f^s: flip first, then rotate (torch.flip / torch.rot90)
    k, s = h % group.N, h // group.N
    if s:
        img = torch.flip(img, dims=(-1,))
    return torch.rot90(img, k * 4 // group.N, dims=(-2, -1))


def _edge_set(data):
    # the sorted edges (src, dst, offset) encoded as one integer each
    n, (src, dst), off = data.num_nodes, data.edge_index, data.edge_offset.long() + 8
    return torch.sort(((src * n + dst) * 17 + off[:, 0]) * 17 + off[:, 1]).values


def test_layout_and_edges():
    img = torch.randn(3, 2, 5, 5)
    pix = grid_to_data(img, batched=True)
    pix.y = torch.tensor([0, 1, 2])
    for group in (CyclicGroup(4), DihedralGroup(4)):
        G = group.order
        lifted = lift_grid(pix, group)
        n = pix.num_nodes
        assert lifted.num_nodes == n * G
        assert "x" not in lifted
        assert torch.equal(lifted.pos, pix.pos.repeat_interleave(G, 0))
        assert torch.equal(lifted.group_elem, torch.arange(G).repeat(n))
        assert torch.equal(lifted.batch, pix.batch.repeat_interleave(G))
        assert torch.equal(lifted.grid_shape, pix.grid_shape)
        assert torch.equal(lifted.y, pix.y)
        E = pix.num_edges
        assert lifted.edge_index.shape == (2, E * G * G)
        assert lifted.edge_offset.shape == (E * G * G, 2)
        assert lifted.edge_offset.dtype == torch.long
        src, dst = lifted.edge_index
        # offsets are the pixel displacements; edges stay within a graph
        assert torch.equal(lifted.edge_offset, (lifted.pos[src] - lifted.pos[dst]).long())
        assert torch.equal(lifted.batch[src], lifted.batch[dst])
        # ordered by h, then h', then like the pixel graph
        h = lifted.group_elem[dst].view(G, G, E)
        hp = lifted.group_elem[src].view(G, G, E)
        assert torch.equal(h, torch.arange(G).view(G, 1, 1).expand(G, G, E))
        assert torch.equal(hp, torch.arange(G).view(1, G, 1).expand(G, G, E))
        assert torch.equal(lifted.edge_index[:, :E], pix.edge_index * G)
        # an interior node receives from the 3x3 stencil at every element
        deg = torch.bincount(dst, minlength=lifted.num_nodes)
        interior = ((lifted.pos > 0) & (lifted.pos < 4)).all(-1)
        assert bool((deg[interior] == 9 * G).all())
        assert int(deg.min()) == 4 * G  # corners


def test_radius_and_node_order():
    pix = grid_to_data(torch.randn(1, 6, 6), radius=1)
    group = DihedralGroup(4)
    wide = lift_grid(pix, group, radius=2)
    assert int(wide.edge_offset.abs().max()) == 2
    assert wide.num_edges == lift_grid(grid_to_data(torch.randn(1, 6, 6), radius=2),
                                       group).num_edges
    # a relabelled pixel Data: edges rebuilt from pos follow the relabelling
    perm = torch.randperm(pix.num_nodes, generator=torch.Generator().manual_seed(0))
    shuffled = permute_nodes(pix, perm)
    a = lift_grid(shuffled, group, radius=1)
    b = lift_grid(shuffled, group)  # reuses the (relabelled) pixel edges
    assert torch.equal(_edge_set(a), _edge_set(b))
    assert torch.equal(a.pos, shuffled.pos.repeat_interleave(group.order, 0))


def test_periodic_edges_are_reused():
    pix = grid_to_data(torch.randn(1, 4, 4), periodic=True)
    lifted = lift_grid(pix, "p4")
    assert lifted.num_edges == 16 * 9 * 16


@pytest.mark.parametrize("group", [CyclicGroup(4), DihedralGroup(4), DihedralGroup(2)])
def test_lifting_commutes_with_the_group(group):
    # lift(g . pixels) = g . lift(pixels): the lifted graph is a G-invariant domain
    pix = grid_to_data(torch.randn(2, 1, 5, 5), batched=True)
    lifted = lift_grid(pix, group)
    for g in group.elements():
        a = lift_grid(group.act(g, pix), group)
        b = group.act(g, lifted)
        assert torch.equal(a.pos, b.pos)
        assert torch.equal(a.group_elem, b.group_elem)
        assert torch.equal(a.batch, b.batch)
        assert torch.equal(_edge_set(a), _edge_set(b))


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.name)
def test_kernel_index_table_matches_rot90_and_flip(group):
    for k in (1, 3, 5):
        table = kernel_index_table(group, k)
        assert table.shape == (group.order, k * k)
        W = torch.randn(2, 3, k, k)
        for h in range(group.order):
            Wh = W.flatten(-2)[..., table[h]].view(2, 3, k, k)
            assert torch.equal(Wh, _transform_image(W, group, h))


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.name)
def test_group_index_table(group):
    table = group_index_table(group)
    G = group.order
    for h in range(G):
        for hp in range(G):
            M = group.matrix(h).inverse() @ group.matrix(hp)
            assert torch.allclose(group.matrix(int(table[h, hp])), M)


def test_resolve_grid_group():
    assert wallpaper_name(resolve_grid_group("p4")) == "p4"
    assert isinstance(resolve_grid_group("p4m"), DihedralGroup)
    assert resolve_grid_group("P4M").order == 8
    assert resolve_grid_group("C2").order == 2
    assert resolve_grid_group("d1").order == 2
    for name in ("p1", "p2", "p4", "pm", "pmm", "p4m"):
        assert wallpaper_name(resolve_grid_group(name)) == name
    g = CyclicGroup(4)
    assert resolve_grid_group(g) is g
    with pytest.raises(ValueError, match="Unknown grid group"):
        resolve_grid_group("p6")
    with pytest.raises(ValueError, match="N in"):
        resolve_grid_group(CyclicGroup(3))
    with pytest.raises(ValueError, match="N in"):
        resolve_grid_group(DihedralGroup(8))
    with pytest.raises(TypeError, match="Translations"):
        resolve_grid_group(Translations())
    with pytest.raises(TypeError, match="SO2"):
        resolve_grid_group(SO2())
    with pytest.raises(ValueError, match="odd"):
        kernel_index_table(g, 4)


def test_bad_inputs():
    pix = grid_to_data(torch.randn(1, 4, 4))
    with pytest.raises(TypeError, match="Data"):
        lift_grid(torch.randn(16, 1), "p4")
    with pytest.raises(ValueError, match="grid_shape"):
        lift_grid(Data(x=torch.randn(4, 1), pos=torch.randn(4, 2)), "p4")
    with pytest.raises(ValueError, match="already lifted"):
        lift_grid(lift_grid(pix, "p4"), "p4")
    with pytest.raises(ValueError, match="2-D"):
        lift_grid(grid_to_data(torch.randn(1, 3, 3, 3)), "p4")
    with pytest.raises(ValueError, match="N in"):
        lift_grid(pix, CyclicGroup(6))
    with pytest.raises(ValueError, match="radius"):
        lift_grid(pix, "p4", radius=-1)
    partial = pix.subgraph(torch.arange(10))
    with pytest.raises(ValueError, match="full grid"):
        lift_grid(partial, "p4")


def test_reused_edge_index_is_validated():
    # issue 9: a malformed pixel edge_index is rejected, not lifted into another graph
    pix = grid_to_data(torch.randn(1, 4, 4))
    bad = pix.clone()
    bad.edge_index = pix.edge_index.t().contiguous()
    with pytest.raises(ValueError, match=r"'lift_grid'.*data\.edge_index.*transposed"):
        lift_grid(bad, "p4")
    bad.edge_index = pix.edge_index.clone()
    bad.edge_index[0, 0] = 16
    with pytest.raises(ValueError, match=r"'lift_grid'.*index 16.*only 16 nodes"):
        lift_grid(bad, "p4")
    bad.edge_index = pix.edge_index.float()
    with pytest.raises(ValueError, match="integer type"):
        lift_grid(bad, "p4")
    assert lift_grid(pix, "p4").edge_index.size(1) == pix.edge_index.size(1) * 16
