import math

import pytest
import torch
from torch_geometric.data import Batch, Data

from gdl_pyg.domains.sphere import icosphere
from gdl_pyg.groups import IcosahedralGroup, Permutations
from gdl_pyg.nn.conv.sphere_conv import SphereConv
from gdl_pyg.ops import radius_graph
from gdl_pyg.testing import assert_equivariant, equivariance_error


def sphere_data(s=2, channels=3, seed=0, radius=None, dtype=torch.float64):
    d = icosphere(s, dtype=dtype)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(d.num_nodes, channels, generator=gen, dtype=dtype)
    if radius is not None:  # a 2-ring-ish neighbourhood instead of the mesh edges
        edge_index = radius_graph(d.pos, radius, max_num_neighbors=64)
    else:
        edge_index = d.edge_index
    return Data(x=x, pos=d.pos, edge_index=edge_index, mass=d.mass)


def reference_harmonic(conv, x, pos, mass, mix=None):
    r"""Slow reference of the harmonic path on one graph: the explicit
    quadrature matrix Y^T M, a loop over degrees l (and an optional
    (2l+1)x(2l+1) matrix mixing the orders m within degree l), synthesis."""
    from e3nn import o3
    L = conv.lmax
    Y = torch.cat([o3.spherical_harmonics(deg, pos, normalize=True, normalization="integral")
                   for deg in range(L + 1)], dim=1)  # [N, (L+1)^2]
    coeff = Y.t() @ torch.diag(mass) @ x  # [S, F_in]
    out = torch.zeros(x.size(0), conv.out_channels, dtype=x.dtype)
    start = 0
    for deg in range(L + 1):
        c = coeff[start:start + 2 * deg + 1]  # [2l+1, F_in]
        if mix is not None:
            c = mix[deg] @ c
        filtered = c @ conv.weight[deg].t()  # [2l+1, F_out]
        out = out + Y[:, start:start + 2 * deg + 1] @ filtered
        start += 2 * deg + 1
    if conv.bias is not None:
        out = out + conv.bias
    return out


class MixedOrders(torch.nn.Module):
    r"""A broken harmonic filter: it mixes the orders m of each degree with a
    random matrix, which does not commute with the Wigner matrices."""

    def __init__(self, conv, seed=0):
        super().__init__()
        self.conv = conv
        gen = torch.Generator().manual_seed(seed)
        self.mix = [torch.eye(2 * deg + 1, dtype=torch.float64)
                    + 0.5 * torch.randn(2 * deg + 1, 2 * deg + 1, generator=gen,
                                        dtype=torch.float64)
                    for deg in range(conv.lmax + 1)]

    def forward(self, x, pos, mass):
        return reference_harmonic(self.conv, x, pos, mass, mix=[m.to(x.dtype) for m in self.mix])


class ZWeightedConv(SphereConv):
    r"""A broken isotropic filter: each neighbour is also weighted by the
    difference of the z coordinates, so the filter points north."""

    def forward(self, x, pos, edge_index=None, mass=None, batch=None):
        self._z = pos[:, 2]
        return super().forward(x, pos, edge_index, mass, batch)

    def message(self, x_j, basis, edge_index_i, edge_index_j):
        tilt = 1.0 + (self._z[edge_index_j] - self._z[edge_index_i]).unsqueeze(-1)
        return super().message(x_j, basis * tilt)


def test_shapes_and_repr():
    data = sphere_data(2, channels=4, dtype=torch.float32)
    conv = SphereConv(4, 8)
    assert SphereConv.group_name == "SO(3)"
    assert str(conv) == "SphereConv(4, 8, kernel='isotropic', num_rings=2)"
    assert conv.weight.shape == (3, 8, 4)
    out = conv(data.x, data.pos, data.edge_index)
    assert out.shape == (162, 8) and out.dtype == torch.float32
    conv = SphereConv(4, 6, kernel="harmonic", lmax=3, bias=False)
    assert str(conv) == "SphereConv(4, 6, kernel='harmonic', lmax=3)"
    assert conv.weight.shape == (4, 6, 4) and conv.bias is None
    # the degree of each harmonic (l = 0, 1, 1, 1, 2, ...) is a buffer outside
    # the state dict: checkpoints hold the weights only
    assert conv._degrees.tolist() == [0] + [1] * 3 + [2] * 5 + [3] * 7
    assert list(conv.state_dict()) == ["weight"]
    assert conv(data.x, data.pos, mass=data.mass).shape == (162, 6)
    before = conv.weight.clone()
    conv.reset_parameters()
    assert not torch.equal(before, conv.weight)
    # gradients reach the weights of both kernels
    for conv in (SphereConv(4, 2, num_rings=3), SphereConv(4, 2, kernel="harmonic")):
        conv(data.x, data.pos, data.edge_index, data.mass).square().sum().backward()
        assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("num_rings", [1, 3])
def test_isotropic_icosahedral_equivariance(num_rings):
    # a radius graph: the neighbourhood of every vertex is a union of orbits
    data = sphere_data(2, radius=0.5)
    conv = SphereConv(3, 5, num_rings=num_rings, max_angle=0.5)
    res = assert_equivariant(conv, data, IcosahedralGroup())
    assert res.num_elements == 60 and res.error < 1e-9
    # the mesh edges and the largest edge angle as max_angle work as well
    data = sphere_data(2)
    assert assert_equivariant(SphereConv(3, 5, num_rings=num_rings), data,
                              IcosahedralGroup()).error < 1e-9


@pytest.mark.parametrize("lmax", [0, 2, 5])
def test_harmonic_icosahedral_equivariance(lmax):
    data = sphere_data(2)
    conv = SphereConv(3, 4, kernel="harmonic", lmax=lmax)
    res = assert_equivariant(conv, data, IcosahedralGroup())
    assert res.num_elements == 60 and res.error < 1e-9


def test_permutation_equivariance():
    data = sphere_data(1, radius=0.8)
    for conv in (SphereConv(3, 4, num_rings=2), SphereConv(3, 4, kernel="harmonic", lmax=3)):
        # mass rides along with the nodes (the input is a relabelled point set)
        assert assert_equivariant(conv, data, Permutations(), num_samples=3).error < 1e-9


def test_checker_fails_on_broken_variants():
    data = sphere_data(2, radius=0.5)
    broken = ZWeightedConv(3, 4, num_rings=2, max_angle=0.5)
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(broken, data, IcosahedralGroup())
    # the broken subclass really computes something else than the layer
    good = SphereConv(3, 4, num_rings=2, max_angle=0.5).double()
    broken = broken.double()
    good.load_state_dict(broken.state_dict())
    assert not torch.allclose(good(data.x, data.pos, data.edge_index),
                              broken(data.x, data.pos, data.edge_index))
    conv = SphereConv(3, 4, kernel="harmonic", lmax=3)
    mixed = MixedOrders(conv)
    res = equivariance_error(mixed, data, IcosahedralGroup())
    assert res.error > 1e-3
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(mixed, data, IcosahedralGroup())
    # with identity mixing the reference is equivariant again
    mixed.mix = [torch.eye(2 * deg + 1, dtype=torch.float64) for deg in range(4)]
    assert_equivariant(mixed, data, IcosahedralGroup())


def test_harmonic_equals_slow_reference():
    data = sphere_data(2, channels=3, seed=1)
    conv = SphereConv(3, 5, kernel="harmonic", lmax=4).double()
    torch.nn.init.normal_(conv.bias)
    out = conv(data.x, data.pos, mass=data.mass)
    ref = reference_harmonic(conv, data.x, data.pos, data.mass)
    assert (out - ref).abs().max() < 1e-12
    # the default mass is uniform, 4 pi / N
    uniform = torch.full((data.num_nodes,), 4 * math.pi / data.num_nodes, dtype=torch.float64)
    assert (conv(data.x, data.pos) - reference_harmonic(conv, data.x, data.pos, uniform)
            ).abs().max() < 1e-12
    # a band-limited signal of degree <= lmax passes through W_l: a constant is a
    # degree-0 function, so with W_0 = identity and no bias it is reproduced
    conv = SphereConv(1, 1, kernel="harmonic", lmax=2, bias=False).double()
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0] = 1.0
    ones = torch.ones(data.num_nodes, 1, dtype=torch.float64)
    assert (conv(ones, data.pos, mass=data.mass) - 1).abs().max() < 1e-12


def test_isotropic_equals_explicit_sum():
    data = sphere_data(1, channels=2, radius=0.9)
    conv = SphereConv(2, 3, num_rings=2, max_angle=0.9).double()
    out = conv(data.x, data.pos, data.edge_index)
    src, dst = data.edge_index
    ref = data.x @ conv.weight[0].t() + conv.bias
    delta = 0.9 / 2
    for i in range(data.num_nodes):
        nb = src[dst == i]
        theta = torch.arccos((data.pos[nb] @ data.pos[i]).clamp(-1, 1))
        for k in (1, 2):
            b = torch.exp(-0.5 * ((theta - k * delta) / (0.5 * delta)) ** 2)
            ref[i] += conv.weight[k] @ ((b.unsqueeze(-1) * data.x[nb]).sum(0) / b.sum())
    assert (out - ref).abs().max() < 1e-12


def test_batching_equals_separate_calls():
    for sizes in ((2, 2), (1, 2)):  # one level (batched products) and two levels (scatter)
        graphs = [sphere_data(s, seed=i) for i, s in enumerate(sizes)]
        batch = Batch.from_data_list(graphs)
        for conv in (SphereConv(3, 4, num_rings=2, max_angle=0.7),
                     SphereConv(3, 4, kernel="harmonic", lmax=3)):
            conv = conv.double()
            out = conv(batch.x, batch.pos, batch.edge_index, batch.mass, batch.batch)
            sep = torch.cat([conv(g.x, g.pos, g.edge_index, g.mass) for g in graphs])
            assert (out - sep).abs().max() < 1e-12
            # the number of graphs given rather than read from 'batch': the same result
            given = conv(batch.x, batch.pos, batch.edge_index, batch.mass, batch.batch, 2)
            assert torch.equal(given, out)


# one graph (batched products), equal sizes (batched products in eager mode,
# the scatter when compiled) and unequal sizes (the scatter), with and without
# 'mass'
COMPILE_CASES = [((2,), True), ((1, 1), True), ((1, 2), False)]


@pytest.mark.parametrize("sizes,with_mass", COMPILE_CASES)
@pytest.mark.parametrize("kernel", ["isotropic", "harmonic"])
def test_compile_no_graph_breaks_and_equal_to_eager(kernel, sizes, with_mass,
                                                    compile_one_graph):
    graphs = [sphere_data(s, seed=i) for i, s in enumerate(sizes)]
    data = Batch.from_data_list(graphs) if len(graphs) > 1 else graphs[0]
    batch = data.batch if len(graphs) > 1 else None
    conv = SphereConv(3, 4, kernel=kernel, lmax=3).double()
    args = (data.x, data.pos, data.edge_index, data.mass if with_mass else None, batch,
            len(graphs) if batch is not None else None)
    assert (compile_one_graph(conv, *args) - conv(*args)).abs().max() < 1e-12


def test_harmonic_without_batch_size_still_compiles_with_a_break():
    # reading the number of graphs from 'batch' needs its maximum: one graph
    # break, not an error
    batch = Batch.from_data_list([sphere_data(1), sphere_data(1, seed=1)])
    conv = SphereConv(3, 4, kernel="harmonic", lmax=2).double()
    args = (batch.x, batch.pos, None, batch.mass, batch.batch)
    torch._dynamo.reset()
    explain = torch._dynamo.explain(conv)(*args)
    assert explain.graph_break_count >= 1
    compiled = torch.compile(conv, backend="aot_eager")
    assert (compiled(*args) - conv(*args)).abs().max() < 1e-12


def test_bad_input():
    data = sphere_data(1)
    with pytest.raises(ValueError, match="kernel 'isotropic' or 'harmonic'"):
        SphereConv(3, 4, kernel="zonal")
    with pytest.raises(ValueError, match="positive integer 'in_channels'"):
        SphereConv(0, 4)
    with pytest.raises(ValueError, match="'lmax'"):
        SphereConv(3, 4, lmax=-1)
    with pytest.raises(ValueError, match="'max_angle'"):
        SphereConv(3, 4, max_angle=4.0)
    conv = SphereConv(3, 4)
    with pytest.raises(ValueError, match=r"'x' of shape \[num_nodes, 3\]"):
        conv(data.x[:, :2], data.pos, data.edge_index)
    with pytest.raises(ValueError, match=r"'pos' of shape \[42, 3\]"):
        conv(data.x, data.pos[:, :2], data.edge_index)
    with pytest.raises(ValueError, match="needs 'edge_index'"):
        conv(data.x, data.pos)
    with pytest.raises(ValueError, match=r"\[2, num_edges\]"):
        conv(data.x, data.pos, data.edge_index.t())
    with pytest.raises(ValueError, match="NaN"):
        conv(data.x * float("nan"), data.pos, data.edge_index)
    with pytest.raises(ValueError, match=r"'mass' of shape \[42\]"):
        SphereConv(3, 4, kernel="harmonic")(data.x, data.pos, mass=data.mass[:5])
    batch = torch.zeros(42, dtype=torch.long)
    batch[21:] = 1
    with pytest.raises(ValueError, match="'batch'"):  # a batch_size too small for 'batch'
        SphereConv(3, 4, kernel="harmonic")(data.x, data.pos, batch=batch, batch_size=1)


def _graph_has_bmm(conv, *args, **kwargs):
    torch._dynamo.reset()
    graph = torch._dynamo.explain(conv)(*args, **kwargs).graphs[0]
    return any("bmm" in str(node.target) for node in graph.graph.nodes)


def test_equal_graphs_takes_the_batched_products_when_compiled():
    # under torch.compile the layout test would read 'batch': 'equal_graphs'
    # says it, and the batched products replace the gather of [N, S, F_out]
    data = Batch.from_data_list([sphere_data(2, seed=i) for i in range(3)])
    conv = SphereConv(3, 4, kernel="harmonic", lmax=3).double()
    args = (data.x, data.pos, None, data.mass, data.batch, 3)
    eager = conv(*args)
    assert (conv(*args, equal_graphs=True) - eager).abs().max() == 0
    assert not _graph_has_bmm(conv, *args)
    assert _graph_has_bmm(conv, *args, equal_graphs=True)
    compiled = torch.compile(conv, backend="aot_eager", fullgraph=True)
    assert (compiled(*args, equal_graphs=True) - eager).abs().max() < 1e-12
    torch._dynamo.reset()


def test_equal_graphs_is_checked_in_eager_mode():
    data = Batch.from_data_list([sphere_data(1), sphere_data(2, seed=1)])
    conv = SphereConv(3, 4, kernel="harmonic", lmax=2).double()
    args = (data.x, data.pos, None, data.mass, data.batch, 2)
    with pytest.raises(ValueError, match="equal_graphs"):
        conv(*args, equal_graphs=True)
    conv(*args)  # the general path


def test_isotropic_ring_products_equal_the_gather(monkeypatch, product_at_any_size,
                                                  output_and_grads):
    # on the CPU the ring sums are sparse products over the edges' CSR, one
    # per ring: the output is the gather and scatter's bit for bit
    import gdl_pyg.nn.conv.sphere_conv as module
    calls = []
    original = module.edge_aggregate

    def spy(*args):
        calls.append(args[-1].shape)
        return original(*args)
    monkeypatch.setattr(module, "edge_aggregate", spy)
    data = Batch.from_data_list([sphere_data(2, seed=i) for i in range(2)])
    conv = SphereConv(3, 4, kernel="isotropic", num_rings=3).double()
    args = (data.pos, data.edge_index, None, data.batch, 2)
    out, grads = output_and_grads(conv, data.x, *args)
    assert calls == [(data.edge_index.size(1), 3)]
    monkeypatch.setattr(module, "eager_cpu_product", lambda *a, **k: False)
    ref, ref_grads = output_and_grads(conv, data.x, *args)
    assert len(calls) == 1
    assert torch.equal(out, ref)
    for a, b in zip(grads, ref_grads):
        assert a is None and b is None or (a - b).abs().max() < 1e-13
    # positions that need a gradient keep the gather (the weights need one)
    from gdl_pyg.nn.conv.message_passing_conv import eager_cpu_product
    monkeypatch.setattr(module, "eager_cpu_product", eager_cpu_product)
    conv(data.x, data.pos, data.edge_index)
    assert len(calls) == 2
    conv(data.x, data.pos.clone().requires_grad_(), data.edge_index)
    assert len(calls) == 2
