import math
import os

import pytest
import torch
import trimesh
from torch_geometric.data import Batch

from gdl_pyg.domains import mesh_to_data
from gdl_pyg.groups import GaugeGroup, Permutations, gauge_matrix
from gdl_pyg.io import read_mesh
from gdl_pyg.nn import GEMConv, RegularNonlinearity
from gdl_pyg.nn.conv.gem_conv import gem_kernel_basis, self_interaction_basis, transport
from gdl_pyg.testing import assert_equivariant

DT = torch.float64


def freqs(order):
    return tuple(range(order + 1))


def mesh(kind="icosphere", **kw):
    if kind == "icosphere":
        m = trimesh.creation.icosphere(subdivisions=kw.get("subdivisions", 1))
    elif kind == "torus":
        m = trimesh.creation.torus(major_radius=1.0, minor_radius=0.4, major_sections=12,
                                   minor_sections=8)
    else:
        raise ValueError(kind)
    return torch.tensor(m.vertices, dtype=DT), torch.tensor(m.faces.T.copy(), dtype=torch.long)


def with_x(data, channels, order, seed=0):
    gen = torch.Generator().manual_seed(seed)
    data.x = torch.randn(data.num_nodes, channels, 2 * order + 1, generator=gen, dtype=DT)
    return data


def call(conv, d):
    return conv(d.x, d.edge_index, d.edge_logmap, d.edge_connection)


def kernel_at(C, phi):
    r"""K_b(phi) [B, P, I] for a scalar angle from the [B, T, P, I] basis."""
    F = (C.size(1) - 1) // 2
    trig = [torch.ones((), dtype=DT)]
    for f in range(1, F + 1):
        trig += [torch.cos(f * phi), torch.sin(f * phi)]
    return torch.einsum("t,btpi->bpi", torch.stack(trig), C)


# ---------------------------------------------------------------------------
def test_shapes_and_repr():
    pos, face = mesh()
    data = with_x(mesh_to_data(pos, face), 4, 2)
    conv = GEMConv(4, 6, in_order=2, out_order=1, num_rings=3, max_radius=0.8).double()
    out = call(conv, data)
    assert out.shape == (data.num_nodes, 6, 3)
    # basis: (2*2+1)*(2*1+1)=15 angular x 3 rings, self-interaction 1 + 2
    assert str(conv) == "GEMConv(4, 6, in_order=2, out_order=1, num_rings=3, basis=45+3)"
    assert GEMConv.group_name == "SO(2)^N"
    assert GEMConv(2, 2, 0, 0, self_interaction=False).__repr__().endswith("basis=2)")
    before = conv.weight.clone()
    conv.reset_parameters()
    assert not torch.equal(before, conv.weight)
    # bias acts on order 0 only
    conv2 = GEMConv(4, 6, 2, 1, bias=True).double()
    with torch.no_grad():
        conv2.bias.fill_(0)
    base = call(conv2, data)
    with torch.no_grad():
        conv2.bias.fill_(1.5)
    diff = call(conv2, data) - base
    assert torch.allclose(diff[..., 0], torch.full_like(diff[..., 0], 1.5))
    assert diff[..., 1:].abs().max() == 0
    # float32 works too
    out32 = GEMConv(4, 6, 2, 1)(data.x.float(), data.edge_index, data.edge_logmap.float(),
                                data.edge_connection.float())
    assert out32.dtype == torch.float32 and out32.shape == (data.num_nodes, 6, 3)


@pytest.mark.parametrize("M,N", [(0, 0), (0, 2), (2, 0), (1, 1), (2, 3), (3, 2)])
def test_kernel_basis_constraint_and_completeness(M, N):
    C, info = gem_kernel_basis(M, N)
    d_in, d_out = 2 * M + 1, 2 * N + 1
    assert C.shape == (d_in * d_out, 2 * (M + N) + 1, d_out, d_in)
    assert all(f in (abs(n - m), n + m) for m, n, f in info)
    gen = torch.Generator().manual_seed(M * 10 + N)
    for _ in range(5):
        phi, theta = (torch.rand(2, generator=gen, dtype=DT) * 2 - 1) * 4 * math.pi
        K1 = kernel_at(C, phi - theta)
        R_out = gauge_matrix(-theta.view(1), freqs(N))[0]
        R_in = gauge_matrix(theta.view(1), freqs(M))[0]
        K2 = R_out @ kernel_at(C, phi) @ R_in
        assert (K1 - K2).abs().max() < 1e-12
    # complete: the basis spans every K(phi) = rho_out(phi) K0 rho_in(-phi); its
    # values at phi = 0 are linearly independent and span all [d_out, d_in] matrices
    K0 = kernel_at(C, torch.zeros((), dtype=DT)).reshape(C.size(0), -1)
    assert torch.linalg.matrix_rank(K0) == d_in * d_out
    # the self-interaction basis commutes with every rotation
    S = self_interaction_basis(M, N)
    assert S.size(0) == 1 + 2 * min(M, N)
    theta = torch.tensor([0.7], dtype=DT)
    R_out, R_in = gauge_matrix(theta, freqs(N))[0], gauge_matrix(theta, freqs(M))[0]
    assert (R_out @ S - S @ R_in).abs().max() < 1e-14


def test_transport_matches_gauge_matrix():
    x = torch.randn(7, 3, 5, dtype=DT)
    a = torch.randn(7, dtype=DT)
    expected = torch.einsum("eij,ecj->eci", gauge_matrix(a, (0, 1, 2)), x)
    assert (transport(x, a) - expected).abs().max() < 1e-14


@pytest.mark.parametrize("kind", ["icosphere", "torus"])
@pytest.mark.parametrize("M,N", [(0, 2), (2, 1), (1, 3)])
def test_gauge_equivariance_generated(kind, M, N):
    data = with_x(mesh_to_data(*mesh(kind)), 3, M)
    conv = GEMConv(3, 4, M, N, num_rings=3, max_radius=1.0, aggr="mean")
    res = assert_equivariant(conv, data, GaugeGroup(), fields={"x": freqs(M)},
                             out_fields={"out": freqs(N)})
    assert res.error < 1e-9


@pytest.mark.parametrize("path", ["datasets/deform/raw/pose_003.ply",
                                  "datasets/shapes/raw/torus/torus_01.ply",
                                  "tests/data/pybullet/bunny.obj"])  # a real scan, not ours
def test_gauge_equivariance_shipped_mesh(path):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))
    m = read_mesh(os.path.join(root, path), dtype=DT, clean=True)
    data = with_x(mesh_to_data(m.pos, m.face), 2, 2)
    r = float(data.edge_logmap[:, 0].mean())
    conv = GEMConv(2, 3, 2, 2, num_rings=2, max_radius=3 * r)
    assert_equivariant(conv, data, GaugeGroup(), fields={"x": freqs(2)},
                       out_fields={"out": freqs(2)}, num_samples=2)


def trig(phi, F):
    cols = [torch.ones_like(phi)]
    for f in range(1, F + 1):
        cols += [torch.cos(f * phi), torch.sin(f * phi)]
    return torch.stack(cols, dim=-1)  # [E, T]


class ExplicitGEMConv(GEMConv):
    r"""Builds every edge's kernel from the full angular basis ``self.basis``
    (the slow reference path); ``broken=True`` drops the sine part of one
    basis element, which makes it non-equivariant."""

    def __init__(self, *args, broken=False, **kwargs):
        super().__init__(*args, **kwargs)
        basis = self.basis.clone()
        if broken:
            b = next(i for i in range(basis.size(0)) if basis[i, 2::2].abs().sum() > 0)
            basis[b, 2::2] = 0
        self.register_buffer("ref_basis", basis, persistent=False)

    def message(self, x_j, radial, phi, edge_connection, weight):
        F = (self.ref_basis.size(1) - 1) // 2
        # e: edge, t: angular function, b: basis element, p/i: out/in component
        Kb = torch.einsum("et,btpi->ebpi", trig(phi, F), self.ref_basis.to(x_j.dtype))
        K = torch.einsum("ocbk,ek,ebpi->eopci", self.weight, radial, Kb)
        return torch.einsum("eopci,eci->eop", K, transport(x_j, edge_connection))


def test_checker_fails_on_broken_basis():
    data = with_x(mesh_to_data(*mesh()), 2, 1)
    kw = dict(fields={"x": freqs(1)}, out_fields={"out": freqs(2)})
    conv = GEMConv(2, 3, 1, 2).double()
    explicit = ExplicitGEMConv(2, 3, 1, 2).double()
    broken = ExplicitGEMConv(2, 3, 1, 2, broken=True).double()
    explicit.load_state_dict(conv.state_dict())
    broken.load_state_dict(conv.state_dict())
    # the reference path equals the fused one and passes the check ...
    assert (call(explicit, data) - call(conv, data)).abs().max() < 1e-12
    assert_equivariant(explicit, data, GaugeGroup(), **kw)
    # ... one perturbed basis function fails it
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(broken, data, GaugeGroup(), **kw)


def test_checker_fails_without_transport():
    class NoTransport(GEMConv):
        def message(self, x_j, radial, phi, edge_connection, weight):
            return super().message(x_j, radial, phi, torch.zeros_like(edge_connection), weight)

    data = with_x(mesh_to_data(*mesh()), 2, 1)
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(NoTransport(2, 2, 1, 1), data, GaugeGroup(),
                           fields={"x": freqs(1)}, out_fields={"out": freqs(1)})


def _random_orthogonal(gen):
    Q, R = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=DT))
    Q = Q * torch.sign(torch.diagonal(R))
    if torch.det(Q) > 0:  # include a reflection
        Q = Q * torch.tensor([1., 1., -1.], dtype=DT)
    return Q


@pytest.mark.parametrize("method", ["intrinsic", "extrinsic"])
def test_rigid_motion_invariance(method):
    pos, face = mesh("torus")
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(pos.size(0), 3, 1, generator=gen, dtype=DT)  # order 0: no gauge
    conv = GEMConv(3, 4, 0, 2, num_rings=3, max_radius=1.0).double()
    d1 = mesh_to_data(pos, face, method=method)
    Q = _random_orthogonal(gen)
    d2 = mesh_to_data(pos @ Q.t() + torch.randn(3, generator=gen, dtype=DT), face,
                      method=method)
    out1 = conv(x, d1.edge_index, d1.edge_logmap, d1.edge_connection)
    out2 = conv(x, d2.edge_index, d2.edge_logmap, d2.edge_connection)
    assert (out1[..., 0] - out2[..., 0]).abs().max() < 1e-9
    # a stack GEMConv -> GEMConv back to order 0 is invariant as well
    conv2 = GEMConv(4, 2, 2, 0, num_rings=3, max_radius=1.0).double()
    y1 = conv2(out1, d1.edge_index, d1.edge_logmap, d1.edge_connection)
    y2 = conv2(out2, d2.edge_index, d2.edge_logmap, d2.edge_connection)
    assert (y1 - y2).abs().max() < 1e-9


def test_vertex_renumbering():
    pos, face = mesh("icosphere", subdivisions=2)
    N = pos.size(0)
    gen = torch.Generator().manual_seed(5)
    perm = torch.randperm(N, generator=gen)  # new vertex i is old vertex perm[i]
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(N)
    x = torch.randn(N, 2, 1, generator=gen, dtype=DT)
    d1 = mesh_to_data(pos, face)
    d2 = mesh_to_data(pos[perm], inv[face])
    conv1 = GEMConv(2, 3, 0, 1, num_rings=2, max_radius=0.5).double()
    conv2 = GEMConv(3, 2, 1, 0, num_rings=2, max_radius=0.5).double()

    def run(d, x):
        h = conv1(x, d.edge_index, d.edge_logmap, d.edge_connection)
        return h, conv2(h, d.edge_index, d.edge_logmap, d.edge_connection)

    h1, y1 = run(d1, x)
    h2, y2 = run(d2, x[perm])
    assert (h1[perm][..., 0] - h2[..., 0]).abs().max() < 1e-9
    assert (y1[perm] - y2).abs().max() < 1e-9
    # the order-1 part differs by a gauge change (reference neighbours differ)
    assert (h1[perm][..., 1:] - h2[..., 1:]).abs().max() > 1e-3


def test_permutation_equivariance():
    data = with_x(mesh_to_data(*mesh()), 2, 1)
    conv = GEMConv(2, 3, 1, 2)
    assert_equivariant(conv, data, Permutations())


def test_bad_input():
    data = with_x(mesh_to_data(*mesh()), 2, 1)
    conv = GEMConv(2, 3, 1, 1).double()
    ei, lm, cn = data.edge_index, data.edge_logmap, data.edge_connection
    with pytest.raises(ValueError, match=r"GEMConv.*\[num_nodes, 2, 3\].*in_order=1.*\[42, 2, 5\]"):
        conv(torch.randn(42, 2, 5, dtype=DT), ei, lm, cn)
    with pytest.raises(ValueError, match=r"\[num_nodes, 2, 3\]"):
        conv(torch.randn(42, 4, 3, dtype=DT), ei, lm, cn)
    with pytest.raises(ValueError, match=r"\[num_nodes, 2, 3\]"):
        conv(torch.randn(42, 6, dtype=DT), ei, lm, cn)
    with pytest.raises(ValueError, match="MeshGeometry"):
        conv(data.x, ei, None, cn)
    with pytest.raises(ValueError, match="mesh_to_data"):
        conv(data.x, ei, lm, None)
    with pytest.raises(ValueError, match="NaN or infinite"):
        x = data.x.clone()
        x[3, 0, 1] = float("nan")
        conv(x, ei, lm, cn)
    with pytest.raises(ValueError, match="edge_logmap"):
        conv(data.x, ei, lm[:, :1], cn)
    with pytest.raises(ValueError, match="edge_connection"):
        conv(data.x, ei, lm, cn[:-1])
    with pytest.raises(ValueError, match="'aggr' to be 'add' or 'mean'"):
        GEMConv(2, 3, 1, 1, aggr="max")
    with pytest.raises(ValueError, match="'in_order' to be an integer >= 0"):
        GEMConv(2, 3, -1, 1)
    with pytest.raises(ValueError, match="max_radius"):
        GEMConv(2, 3, 1, 1, max_radius=0.0)


def test_gradient_flows():
    data = with_x(mesh_to_data(*mesh()), 2, 1)
    conv = GEMConv(2, 3, 1, 1).double()
    x = data.x.clone().requires_grad_()
    call_out = conv(x, data.edge_index, data.edge_logmap, data.edge_connection)
    call_out.pow(2).sum().backward()
    for p in (x, conv.weight, conv.self_weight, conv.bias):
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert torch.autograd.gradcheck(
        lambda v: conv(v, data.edge_index, data.edge_logmap, data.edge_connection),
        (torch.randn(42, 2, 3, dtype=DT, requires_grad=True),))


@pytest.mark.parametrize("aggr", ["add", "mean"])
def test_batching_equals_separate(aggr):
    d1 = with_x(mesh_to_data(*mesh("icosphere")), 2, 2, seed=1)
    d2 = with_x(mesh_to_data(*mesh("torus")), 2, 2, seed=2)
    conv = GEMConv(2, 3, 2, 1, num_rings=2, aggr=aggr).double()
    batch = Batch.from_data_list([d1, d2])
    out = call(conv, batch)
    expected = torch.cat([call(conv, d1), call(conv, d2)])
    assert (out - expected).abs().max() < 1e-12


@pytest.mark.parametrize("aggr", ["add", "mean"])
def test_equals_explicit_kernel(aggr):
    r"""The fused computation equals an explicit per-edge kernel."""
    data = with_x(mesh_to_data(*mesh()), 2, 1)
    conv = GEMConv(2, 3, 1, 2, num_rings=2, self_interaction=False, bias=False,
                   aggr=aggr).double()
    src, dst = data.edge_index
    r, phi = data.edge_logmap[:, 0], data.edge_logmap[:, 1]
    g = conv.radial(r)  # [E, R]
    expected = torch.zeros(data.num_nodes, 3, 5, dtype=DT)
    for e in range(0, data.num_edges):
        Kb = kernel_at(conv.basis.double(), phi[e])  # [B, P, I]
        K = torch.einsum("ocbk,k,bpi->opci", conv.weight, g[e], Kb)
        xt = gauge_matrix(data.edge_connection[e:e + 1], (0, 1))[0] @ data.x[src[e]].t()
        expected[dst[e]] += torch.einsum("opci,ic->op", K, xt)
    if aggr == "mean":
        deg = torch.bincount(dst, minlength=data.num_nodes).clamp_min(1).to(DT)
        expected = expected / deg.view(-1, 1, 1)
    assert (call(conv, data) - expected).abs().max() < 1e-12


def test_stack_with_regular_nonlinearity_discrete_gauge():
    data = with_x(mesh_to_data(*mesh()), 2, 1)
    S = 9

    class Stack(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = GEMConv(2, 4, 1, 2, num_rings=2)
            self.act = RegularNonlinearity(2, num_samples=S)
            self.conv2 = GEMConv(4, 3, 2, 1, num_rings=2)

        def forward(self, x, edge_index, edge_logmap, edge_connection):
            h = self.act(self.conv1(x, edge_index, edge_logmap, edge_connection))
            return self.conv2(h, edge_index, edge_logmap, edge_connection)

    model = Stack()
    kw = dict(fields={"x": freqs(1)}, out_fields={"out": freqs(1)})
    assert_equivariant(model, data, GaugeGroup(num_angles=S), **kw)
    # under continuous gauges the sampled nonlinearity is only approximate
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(model, data, GaugeGroup(), **kw)


def test_compile_no_graph_breaks():
    data = with_x(mesh_to_data(*mesh()), 2, 1)
    conv = GEMConv(2, 3, 1, 1).double()
    torch._dynamo.reset()
    explain = torch._dynamo.explain(conv)(data.x, data.edge_index, data.edge_logmap,
                                          data.edge_connection)
    assert explain.graph_break_count == 0, explain.break_reasons
