import pytest
import torch
from torch_geometric.data import Batch, Data

from gdl_pyg.domains.sphere import icosphere
from gdl_pyg.groups import IcosahedralGroup
from gdl_pyg.nn.models import SphericalCNN
from gdl_pyg.nn.pool import SpherePool, icosphere_level
from gdl_pyg.testing import assert_equivariant, equivariance_error


def sphere_signal(s=2, channels=1, seed=0, dtype=torch.float64):
    d = icosphere(s, dtype=dtype)
    gen = torch.Generator().manual_seed(seed)
    return Data(x=torch.randn(d.num_nodes, channels, generator=gen, dtype=dtype), pos=d.pos,
                edge_index=d.edge_index, mass=d.mass)


def test_shapes_and_repr():
    model = SphericalCNN(1, 8, 10, num_layers=3, lmax=4, num_coarsenings=2)
    assert str(model) == ("SphericalCNN(1, 8, 10, num_layers=3, kernel='harmonic', lmax=4, "
                          "num_coarsenings=2, pooling='mean_max')")
    data = sphere_signal(2, dtype=torch.float32)
    out = model(data)
    assert out.shape == (1, 10) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model = SphericalCNN(2, 4, 3, num_layers=2, kernel="isotropic", num_coarsenings=0,
                         pooling="max")
    assert "kernel='isotropic', num_rings=2" in str(model)
    assert model(sphere_signal(1, channels=2, dtype=torch.float32)).shape == (1, 3)
    # mass is optional (uniform quadrature)
    data = sphere_signal(1, channels=2, dtype=torch.float32)
    del data.mass
    assert model(data).shape == (1, 3)
    before = model.mlp[0].weight.clone()
    model.reset_parameters()
    assert not torch.equal(before, model.mlp[0].weight)


@pytest.mark.parametrize("kernel", ["harmonic", "isotropic"])
@pytest.mark.parametrize("pooling", ["mean", "mean_max"])
def test_icosahedral_invariance(kernel, pooling):
    data = sphere_signal(2, channels=2)
    model = SphericalCNN(2, 6, 5, num_layers=3, kernel=kernel, lmax=3, num_coarsenings=2,
                         pooling=pooling)
    res = assert_equivariant(model, data, IcosahedralGroup())
    assert res.num_elements == 60 and res.error < 1e-9


def test_checker_fails_on_a_non_invariant_readout():
    class FirstVertex(SphericalCNN):  # reads out vertex 0 instead of pooling over the sphere
        def _readout(self, x, mass, batch, B):
            return torch.cat([x[:1], x[:1]], dim=-1)
    model = FirstVertex(1, 4, 3, num_layers=2, lmax=2, num_coarsenings=1)
    assert equivariance_error(model, sphere_signal(1), IcosahedralGroup()).error > 1e-4
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(model, sphere_signal(1), IcosahedralGroup())


@pytest.mark.parametrize("kernel", ["harmonic", "isotropic"])
def test_batching_equals_separate_calls(kernel):
    graphs = [sphere_signal(2, seed=i) for i in range(3)]
    model = SphericalCNN(1, 5, 4, num_layers=3, kernel=kernel, lmax=3,
                         num_coarsenings=2).double()
    out = model(Batch.from_data_list(graphs))
    sep = torch.cat([model(g) for g in graphs])
    assert out.shape == (3, 4) and (out - sep).abs().max() < 1e-12


def test_sphere_pool():
    assert [icosphere_level(n) for n in (12, 42, 162, 2562, 13, 100)] == \
        [0, 1, 2, 4, None, None]
    fine, coarse = icosphere(2), icosphere(1)
    data = sphere_signal(2, channels=3)
    for reduce in ("mean", "max"):
        pool = SpherePool(reduce)
        assert str(pool) == f"SpherePool(reduce={reduce!r})"
        x, pos, edge_index, mass, batch = pool(data.x, data.pos, data.edge_index, data.mass)
        assert x.shape == (42, 3) and torch.equal(pos, coarse.pos)
        assert torch.equal(edge_index, coarse.edge_index)
        assert torch.equal(batch, torch.zeros(42, dtype=torch.long))
        assert torch.allclose(mass, coarse.mass)
        # by hand at vertex 0: the closed 1-ring of the fine mesh
        nb = torch.cat([torch.tensor([0]), fine.edge_index[0][fine.edge_index[1] == 0]])
        if reduce == "mean":
            w = fine.mass[nb]
            ref = (w.unsqueeze(-1) * data.x[nb]).sum(0) / w.sum()
        else:
            ref = data.x[nb].max(0).values
        assert (x[0] - ref).abs().max() < 1e-12

        def forward(module, d):
            x, pos, ei, m, _ = module(d.x, d.pos, d.edge_index, d.mass)
            return Data(x=x, pos=pos, edge_index=ei, mass=m)
        assert assert_equivariant(pool, data, IcosahedralGroup(), forward=forward).error < 1e-12
    # a batch of two spheres: graph by graph, edges offset per graph
    batch = Batch.from_data_list([sphere_signal(2, seed=1), sphere_signal(2, seed=2)])
    x, pos, edge_index, mass, b = SpherePool()(batch.x, batch.pos, batch.edge_index,
                                               batch.mass, batch.batch)
    assert x.shape == (84, 1) and edge_index.shape == (2, 2 * coarse.edge_index.size(1))
    assert torch.equal(edge_index[:, coarse.edge_index.size(1):], coarse.edge_index + 42)
    assert torch.equal(b, torch.arange(2).repeat_interleave(42))
    one = SpherePool()(batch.x[162:], batch.pos[162:], batch.edge_index[:, 960:] - 162,
                       batch.mass[162:])
    assert (x[42:] - one[0]).abs().max() < 1e-12
    # the number of graphs given rather than read from 'batch': the same output
    given = SpherePool()(batch.x, batch.pos, batch.edge_index, batch.mass, batch.batch, 2)
    for u, v in zip(given, (x, pos, edge_index, mass, b)):
        assert torch.equal(u, v)
    # a wrong one is caught in eager mode
    with pytest.raises(ValueError, match="10 \\* 4\\^s \\+ 2 vertices"):
        SpherePool()(batch.x, batch.pos, batch.edge_index, batch.mass, batch.batch, 1)


@pytest.mark.parametrize("kernel", ["isotropic", "harmonic"])
def test_compile_without_graph_breaks(kernel, compile_one_graph):
    # a Batch knows its number of graphs: the model passes it to the layers and
    # the pools, so nothing reads 'batch' (the coarse levels are cached by the
    # first, eager call)
    batch = Batch.from_data_list([sphere_signal(2, seed=i) for i in range(3)])
    model = SphericalCNN(1, 5, 4, num_layers=3, kernel=kernel, lmax=3, num_coarsenings=2)
    model = model.double()
    ref = model(batch)
    assert (compile_one_graph(model, batch) - ref).abs().max() < 1e-12
    if kernel == "harmonic":  # equal icospheres: the batched products, not the gather
        graph = torch._dynamo.explain(model)(batch).graphs[0]
        assert sum("bmm" in str(node.target) for node in graph.graph.nodes) == 2 * 3
        torch._dynamo.reset()
    pool = SpherePool()
    args = (batch.x, batch.pos, batch.edge_index, batch.mass, batch.batch, 3)
    ref = pool(*args)
    assert all(torch.equal(u, v) for u, v in zip(compile_one_graph(pool, *args), ref))


def test_bad_input():
    with pytest.raises(ValueError, match="'num_coarsenings' must be at most"):
        SphericalCNN(1, 4, 2, num_layers=2, num_coarsenings=2)
    with pytest.raises(ValueError, match="pooling 'mean', 'max' or 'mean_max'"):
        SphericalCNN(1, 4, 2, pooling="sum")
    with pytest.raises(ValueError, match="'hidden_channels'"):
        SphericalCNN(1, 0, 2)
    with pytest.raises(ValueError, match="kernel 'isotropic' or 'harmonic'"):
        SphericalCNN(1, 4, 2, kernel="zonal")
    model = SphericalCNN(1, 4, 2, num_layers=3, num_coarsenings=2)
    with pytest.raises(ValueError, match="icosphere of level >= 2"):
        model(sphere_signal(1, dtype=torch.float32))
    with pytest.raises(ValueError, match=r"'x' of shape \[num_nodes, 1\]"):
        model(sphere_signal(2, channels=3, dtype=torch.float32))
    with pytest.raises(TypeError, match="'Data' / 'Batch'"):
        model(torch.zeros(3))
    with pytest.raises(ValueError, match="with 'pos'"):
        model(Data(x=torch.zeros(162, 1), edge_index=torch.zeros(2, 0, dtype=torch.long)))
    with pytest.raises(ValueError, match="reduce 'mean' or 'max'"):
        SpherePool("sum")
    with pytest.raises(ValueError, match="10 \\* 4\\^s \\+ 2 vertices"):
        d = sphere_signal(1)
        SpherePool()(d.x[:40], d.pos[:40], d.edge_index[:, :10])
