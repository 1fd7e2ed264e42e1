import pytest
import torch

from gdl_pyg.domains import data_to_grid, grid_to_data
from gdl_pyg.groups import CyclicGroup, DihedralGroup, Translations


def _ref(img, g, N=4, flips=False):
    k, s = g % N, g // N
    if s:
        img = torch.flip(img, dims=(-1,))
    return torch.rot90(img, k * 4 // N, dims=(-2, -1))


@pytest.mark.parametrize("shape", [(3, 5, 5), (2, 4, 7), (1, 1, 6)])
@pytest.mark.parametrize("group", [CyclicGroup(4), DihedralGroup(4), CyclicGroup(2)])
def test_grid_action_matches_rot90_and_flip(shape, group):
    img = torch.randn(*shape, dtype=torch.float64)
    data = grid_to_data(img)
    for g in group.elements():
        out = group.act(g, data)
        assert torch.equal(data_to_grid(out), _ref(img, g, group.N))
        src, dst = out.edge_index
        # edge offsets rotate with the grid and stay consistent with positions
        assert torch.equal((out.pos[src] - out.pos[dst]).long(), out.edge_offset)


def test_group_action_is_a_homomorphism():
    img = torch.randn(2, 6, 6, dtype=torch.float64)
    data = grid_to_data(img)
    G = DihedralGroup(4)
    for a in G.elements():
        for b in G.elements():
            lhs = G.act(a, G.act(b, data))
            rhs = G.act(G.compose(a, b), data)
            assert torch.equal(lhs.x, rhs.x)
            assert torch.equal(G.matrix(a) @ G.matrix(b), G.matrix(G.compose(a, b)))
        assert G.compose(a, G.inverse(a)) == G.identity()


def test_lifted_grid_action_moves_group_coordinate():
    G = DihedralGroup(4)
    pix = grid_to_data(torch.randn(1, 4, 4, dtype=torch.float64))
    n = pix.num_nodes
    from torch_geometric.data import Data
    lifted = Data(x=torch.randn(n * 8, 2, dtype=torch.float64), pos=pix.pos.repeat_interleave(8, 0),
                  group_elem=torch.arange(8).repeat(n), grid_shape=pix.grid_shape)
    c = torch.tensor([1.5, 1.5], dtype=torch.float64)
    for g in G.elements():
        out = G.act(g, lifted)
        assert torch.equal(out.group_elem, lifted.group_elem)  # canonical layout
        for node in (0, 13, 77):
            h = int(lifted.group_elem[node])
            new_pos = G.matrix(g) @ (lifted.pos[node] - c) + c
            match = (out.pos == new_pos).all(-1) & (out.group_elem == G.compose(g, h))
            assert int(match.sum()) == 1
            assert torch.equal(out.x[match][0], lifted.x[node])


def test_regular_and_vector_fibres():
    G = CyclicGroup(4)
    for g in G.elements():
        R = G.fiber_matrix(g, "regular", 8)
        assert torch.equal(R @ R.T, torch.eye(8, dtype=R.dtype))
    with pytest.raises(ValueError, match="divisible by 4"):
        G.fiber_matrix(1, "regular", 6)
    with pytest.raises(ValueError, match="representation"):
        G.fiber_matrix(1, "spinor", 2)


def test_continuous_action_on_planar_points():
    from torch_geometric.data import Data
    G = CyclicGroup(6)
    pos = torch.randn(10, 2, dtype=torch.float64)
    out = G.act(1, Data(pos=pos))
    angle = torch.atan2(out.pos[:, 1], out.pos[:, 0]) - torch.atan2(pos[:, 1], pos[:, 0])
    expected = torch.full((10,), torch.pi / 3, dtype=torch.float64)
    assert torch.allclose(torch.remainder(angle, 2 * torch.pi), expected)
    with pytest.raises(ValueError, match="exactly"):
        G.act(1, grid_to_data(torch.randn(1, 3, 3)))


def test_translations_roll_periodic_grids():
    img = torch.randn(2, 5, 6, dtype=torch.float64)
    data = grid_to_data(img, periodic=True)
    T = Translations()
    g = T.sample(data, generator=torch.Generator().manual_seed(0))
    assert torch.equal(data_to_grid(T.act(g, data)), torch.roll(img, g, dims=(-2, -1)))
    with pytest.raises(ValueError, match="grid"):
        from torch_geometric.data import Data
        T.act((1, 1), Data(x=torch.randn(3, 1)))


def test_bad_group_arguments():
    with pytest.raises(ValueError, match="positive integer"):
        CyclicGroup(0)
    with pytest.raises(ValueError, match="elements 0..7"):
        DihedralGroup(4).compose(8, 0)
    with pytest.raises(TypeError, match="mapping"):
        CyclicGroup(4).act(1, grid_to_data(torch.randn(1, 2, 2)), fields=["x"])


def test_rotations_act_on_dihedrally_lifted_grids():
    from torch_geometric.data import Data
    pix = grid_to_data(torch.randn(1, 4, 4, dtype=torch.float64))
    n = pix.num_nodes
    lifted = Data(x=torch.randn(n * 8, 1, dtype=torch.float64), pos=pix.pos.repeat_interleave(8, 0),
                  group_elem=torch.arange(8).repeat(n), grid_shape=pix.grid_shape)
    C4, D4 = CyclicGroup(4), DihedralGroup(4)
    for k in C4.elements():  # r^k in C4 is element k of D4
        assert torch.equal(C4.act(k, lifted).x, D4.act(k, lifted).x)
    p4_lifted = Data(x=torch.randn(n * 4, 1), pos=pix.pos.repeat_interleave(4, 0),
                     group_elem=torch.arange(4).repeat(n), grid_shape=pix.grid_shape)
    with pytest.raises(ValueError, match="lifted with 4"):
        D4.act(5, p4_lifted)


REGULAR_GROUPS = [CyclicGroup(1), CyclicGroup(3), CyclicGroup(4), CyclicGroup(5),
                  DihedralGroup(1), DihedralGroup(3), DihedralGroup(4)]


@pytest.mark.parametrize("G", REGULAR_GROUPS, ids=lambda G: G.name)
def test_regular_representation_is_the_left_regular_representation(G):
    n = G.order
    e = G.identity()
    R = {g: G.regular_matrix(g) for g in G.elements()}
    for g, M in R.items():
        assert M.shape == (n, n) and M.dtype == torch.float64
        # a permutation matrix: 0/1 entries, one 1 per row and per column
        assert set(M.unique().tolist()) <= {0.0, 1.0}
        assert torch.equal(M.sum(0), torch.ones(n, dtype=M.dtype))
        assert torch.equal(M.sum(1), torch.ones(n, dtype=M.dtype))
        # faithful, with the regular character: trace |G| at e, 0 elsewhere
        assert torch.equal(M, torch.eye(n, dtype=M.dtype)) == (g == e)
        assert int(M.trace()) == (n if g == e else 0)
        # it sends the basis vector of h to that of g h ...
        for h in G.elements():
            assert int(M[:, h].argmax()) == G.compose(g, h)
        # ... so it acts on functions f: G -> R by (g . f)(h) = f(g^-1 h)
        f = torch.randn(n, dtype=torch.float64)
        expected = torch.stack([f[G.compose(G.inverse(g), h)] for h in G.elements()])
        assert torch.equal(M @ f, expected)
    # a homomorphism: rho(a) rho(b) = rho(ab), rho(a^-1) = rho(a)^T
    for a in G.elements():
        for b in G.elements():
            assert torch.equal(R[a] @ R[b], R[G.compose(a, b)])
        assert torch.equal(R[G.inverse(a)], R[a].T)
    # the fibre matrix of C copies is block diagonal, and acts through Data
    from torch_geometric.data import Data
    x = torch.randn(5, 2 * n, dtype=torch.float64)
    for g in G.elements():
        out = G.act(g, Data(x=x, num_nodes=5), fields={"x": "regular"})
        assert torch.equal(out.x, x @ torch.block_diag(R[g], R[g]).T)


def test_dihedral_group_law():
    # the group law itself: associative, inverses, and D_N (N >= 3) not abelian
    for G in (CyclicGroup(5), DihedralGroup(3), DihedralGroup(4)):
        els = G.elements()
        for a in els:
            assert G.compose(a, G.identity()) == a == G.compose(G.identity(), a)
            assert G.compose(G.inverse(a), a) == G.identity()
            for b in els:
                for c in els:
                    assert G.compose(G.compose(a, b), c) == G.compose(a, G.compose(b, c))
    D = DihedralGroup(4)
    r, f = 1, D.N  # the quarter turn and the flip
    assert D.compose(r, f) != D.compose(f, r)
    assert D.compose(D.compose(f, r), f) == D.inverse(r)  # f r f = r^-1
