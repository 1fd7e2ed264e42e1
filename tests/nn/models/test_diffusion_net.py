import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial import cKDTree
from torch_geometric.data import Batch, Data

from gdl_pyg.domains import mesh_to_data, points_to_data
from gdl_pyg.groups import E3, GaugeGroup, Permutations
from gdl_pyg.nn.models import DiffusionNet
from gdl_pyg.nn.models.diffusion_net import SpatialGradientFeatures
from gdl_pyg.testing import assert_equivariant
from gdl_pyg.transforms import LaplacianEigenbasis, PointCloudLaplacian, SpatialGradient


def bumpy_mesh(subdivisions=2, seed=0, amplitude=0.05):
    m = trimesh.creation.icosphere(subdivisions)
    V = np.asarray(m.vertices)
    rng = np.random.default_rng(seed)
    V = V * (1 + amplitude * rng.uniform(-1, 1, size=(len(V), 1)))
    return torch.from_numpy(V), torch.from_numpy(np.asarray(m.faces).T.copy())


def prepare(data, k=16):
    return SpatialGradient()(LaplacianEigenbasis(k=k)(data))


def surface(subdivisions=2, seed=0, channels=3, k=16):
    pos, face = bumpy_mesh(subdivisions, seed)
    data = prepare(mesh_to_data(pos, face), k)
    data.x = torch.randn(data.num_nodes, channels, dtype=torch.float64,
                         generator=torch.Generator().manual_seed(seed))
    return data


def model(method="spectral", level="node", seed=0, **kwargs):
    torch.manual_seed(seed)
    net = DiffusionNet(3, 16, 5, num_blocks=2, method=method, level=level, **kwargs).double()
    for block in net.blocks:  # non-trivial diffusion times
        block.diffusion.diffusion_time.data.uniform_(0.01, 0.2)
    return net


def test_shapes_repr_and_checks():
    data = surface()
    net = model()
    assert net(data).shape == (162, 5) and net.num_classes == 5
    assert model(level="graph")(data).shape == (1, 5)
    assert str(net) == "DiffusionNet(3, 16, 5, num_blocks=2, method='spectral', level='node')"
    assert str(SpatialGradientFeatures(4)) == "SpatialGradientFeatures(4)"
    plain = DiffusionNet(3, 8, 2, with_gradient_features=False).double()
    del data.grad_index, data.grad_weight
    assert plain(data).shape == (162, 2)
    with pytest.raises(ValueError, match=r"\['grad_index', 'grad_weight'\].*'SpatialGradient'"):
        net(data)
    with pytest.raises(ValueError, match="'level' in"):
        DiffusionNet(3, 8, 2, level="edge")
    with pytest.raises(ValueError, match="'method' in"):
        DiffusionNet(3, 8, 2, method="implicit")
    with pytest.raises(ValueError, match="'num_blocks' to be an integer >= 1"):
        DiffusionNet(3, 8, 2, num_blocks=0)
    with pytest.raises(ValueError, match=r"dropout in \[0, 1\)"):
        DiffusionNet(3, 8, 2, dropout=1.5)
    with pytest.raises(TypeError, match="'Data' or 'Batch'"):
        net(data.x)


def test_bad_input():
    net = model()
    data = surface()
    bad = data.clone()
    bad.x[5, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        net(bad)
    bad = data.clone()
    bad.x = bad.x[:, :2]
    with pytest.raises(ValueError, match=r"'x' of shape \[num_nodes, 3\]"):
        net(bad)
    bad = data.clone()
    del bad.evals
    with pytest.raises(ValueError, match="'LaplacianEigenbasis'"):
        net(bad)
    bare = mesh_to_data(*bumpy_mesh(1))
    bare.x = torch.randn(42, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="'SpatialGradient'"):
        model("chebyshev")(bare)


@pytest.mark.parametrize("level", ["node", "graph"])
def test_spectral_compiles_without_graph_breaks(level, compile_one_graph):
    # the finiteness check of 'x' is skipped when compiling, like the layers' checks
    net, data = model("spectral", level), surface(1)
    ref = net(data)
    assert (compile_one_graph(net, data) - ref).abs().max() < 1e-12


def test_chebyshev_matches_spectral_with_full_basis():
    data = surface(2, k=162)
    spec = model("spectral")
    cheb = model("chebyshev")
    cheb.load_state_dict(spec.state_dict())
    err = ((cheb(data) - spec(data)).abs().max() / spec(data).abs().max()).item()
    assert err < 1e-9


def test_batching_equals_separate_calls():
    a, b = surface(1, seed=1), surface(2, seed=2)
    batch = Batch.from_data_list([a, b])
    for level in ("node", "graph"):
        for method in ("spectral", "chebyshev"):
            net = model(method, level)
            out = net(batch)
            sep = torch.cat([net(a), net(b)])
            assert (out - sep).abs().max() < 1e-10


def _recomputed(data):
    geo = prepare(mesh_to_data(data.pos, data.face))
    geo.x = data.x
    return geo


@pytest.mark.parametrize("level", ["node", "graph"])
def test_invariances(level):
    pos, face = bumpy_mesh(2)
    data = Data(pos=pos, face=face, x=torch.randn(162, 3, dtype=torch.float64))
    net = model(level=level)
    # rigid motions (including reflections) and renumbering, geometry recomputed
    assert_equivariant(net, data, E3(), forward=lambda m, d: m(_recomputed(d)))
    assert_equivariant(net, data, Permutations(), forward=lambda m, d: m(_recomputed(d)))
    # renumbering of a prepared Data (the group moves the geometry)
    assert_equivariant(net, _recomputed(data), Permutations())
    # tangent frames: the gradient operator is recomputed from the rotated frames
    geo = _recomputed(data)
    assert_equivariant(net, geo, GaugeGroup(), forward=lambda m, d: m(SpatialGradient()(d)))


class RawGradientFeatures(SpatialGradientFeatures):
    r"""Broken: reads the first frame component of the gradients."""
    def forward(self, grad):
        return torch.tanh(grad[:, 0] + self.lin_re(grad[:, 1]))


def test_checker_fails_on_frame_dependent_features():
    data = _recomputed(Data(pos=bumpy_mesh(2)[0], face=bumpy_mesh(2)[1],
                            x=torch.randn(162, 3, dtype=torch.float64)))
    net = model()
    for block in net.blocks:
        block.gradient_features = RawGradientFeatures(16).double()
    with pytest.raises(AssertionError):
        assert_equivariant(net, data, GaugeGroup(), forward=lambda m, d: m(SpatialGradient()(d)))


def test_discretization_agnostic():
    r"""One random model on three discretisations of the unit sphere: an
    icosphere, a UV sphere and a random point cloud, with x = xyz."""
    ico = trimesh.creation.icosphere(3)
    uv = trimesh.creation.uv_sphere(count=[32, 32])
    uv.merge_vertices()
    datas = []
    for m in (ico, uv):
        datas.append(mesh_to_data(torch.from_numpy(np.asarray(m.vertices, dtype=np.float64)),
                                  torch.from_numpy(np.asarray(m.faces).T.copy())))
    rng = np.random.default_rng(0)
    P = rng.normal(size=(1500, 3))
    P /= np.linalg.norm(P, axis=1, keepdims=True)
    datas.append(PointCloudLaplacian(k=30)(points_to_data(torch.from_numpy(P), k=8)))
    datas = [prepare(d, k=36) for d in datas]
    net = model()
    outs = []
    for d in datas:
        d.x = d.pos.clone()
        outs.append(net(d).detach())
    ref = outs[0]
    rel = []
    for d, out in zip(datas[1:], outs[1:]):
        _, nn = cKDTree(d.pos.numpy()).query(datas[0].pos.numpy())
        rel.append(((out[nn] - ref).norm() / ref.norm()).item())
    print(f"relative difference to the icosphere: UV sphere {rel[0]:.3f}, "
          f"point cloud {rel[1]:.3f}")
    assert max(rel) < 0.1
    # and the graph-level outputs (area-weighted means)
    g = [model(level="graph")(d).detach() for d in datas]
    assert max(((gi - g[0]).norm() / g[0].norm()).item() for gi in g[1:]) < 0.1


def test_learns_a_segmentation():
    r"""60 Adam steps learn to separate the upper from the lower hemisphere
    of a bumpy sphere from x = xyz."""
    data = surface(3, seed=0)
    data.x = data.pos.clone()
    y = (data.pos[:, 2] > 0).long()
    net = DiffusionNet(3, 16, 2, num_blocks=2).double()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(data), y)
        loss.backward()
        opt.step()
    acc = (net(data).argmax(-1) == y).double().mean().item()
    assert acc > 0.95
