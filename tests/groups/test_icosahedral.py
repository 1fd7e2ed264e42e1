import torch
from torch_geometric.data import Data

from gdl_pyg.domains.sphere import icosahedral_rotations, icosphere
from gdl_pyg.groups import IcosahedralGroup


def test_acts_as_a_group_on_signals():
    G = IcosahedralGroup()
    d = icosphere(2)
    d.x = torch.randn(d.num_nodes, 2, dtype=torch.float64)
    assert G.elements() == list(range(60)) and G.identity() == 0
    out = G.act(0, d)
    assert torch.equal(out.x, d.x) and torch.equal(out.pos, d.pos)
    R = icosahedral_rotations()
    # (g . x)(p) = x(R^T p): a signal that is a function of position rotates with R
    f = lambda p: p[:, :1] + 2 * p[:, 1:2] ** 2 - p[:, 2:]  # noqa: E731
    d.x = f(d.pos)
    for g in (1, 17, 59):
        out = G.act(g, d)
        assert torch.equal(out.pos, d.pos)
        assert (out.x - f(d.pos @ R[g])).abs().max() < 1e-14
        # the mesh is relabelled onto itself: the same set of faces
        assert set(map(tuple, torch.sort(out.face, 0).values.T.tolist())) == \
            set(map(tuple, torch.sort(d.face, 0).values.T.tolist()))
    # composition: acting twice equals acting by the product
    a, b = 5, 23
    prod = int(torch.argmin((R - R[a] @ R[b]).abs().flatten(1).sum(1)))
    two = G.act(a, G.act(b, d))
    assert (two.x - G.act(prod, d).x).abs().max() < 1e-14


def test_vector_fields_rotate():
    G = IcosahedralGroup()
    d = icosphere(1)
    d.v = d.pos.clone()  # the radial field is invariant as a vector field
    out = G.act(7, d, fields={"v": "vector"})
    assert (out.v - d.pos).abs().max() < 1e-14
    try:
        G.act(7, d, fields={"v": "1o"})
    except ValueError as e:
        assert "'trivial' and 'vector'" in str(e)
    else:
        raise AssertionError("expected a ValueError")
    try:
        G.act(1, Data(x=torch.ones(3, 1)))
    except ValueError as e:
        assert "'pos'" in str(e)
    else:
        raise AssertionError("expected a ValueError")
