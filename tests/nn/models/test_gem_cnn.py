import math

import numpy as np
import pytest
import torch
import trimesh
from torch_geometric.data import Batch, Data

from gdl_pyg.domains import mesh_to_data
from gdl_pyg.groups import E3, GaugeGroup, Permutations
from gdl_pyg.nn.models.gem_cnn import GEMCNN
from gdl_pyg.nn.pool.parallel_transport_pool import ParallelTransportPool
from gdl_pyg.testing import assert_equivariant
from gdl_pyg.transforms import MeshGeometry
from gdl_pyg.transforms.mesh_hierarchy import MeshHierarchy

HIER = MeshHierarchy(ratios=(0.25, 0.3))
S = 5  # angles of the regular nonlinearity (max_order 2 needs >= 5)


def bumpy_mesh(subdivisions=2, seed=0):
    rng = np.random.default_rng(seed)
    m = trimesh.creation.icosphere(subdivisions=subdivisions)
    v = np.asarray(m.vertices)
    k = rng.normal(size=(3, 3)) * 2.0
    bump = sum(np.sin(v @ k[i] + i) for i in range(3))
    v = v * (1 + 0.08 * bump)[:, None]
    return torch.tensor(v), torch.tensor(np.asarray(m.faces).T.copy())


def mesh(seed=0, subdivisions=2, channels=2):
    pos, face = bumpy_mesh(subdivisions, seed)
    data = mesh_to_data(pos, face)
    gen = torch.Generator().manual_seed(seed)
    data.x = torch.randn(data.num_nodes, channels, generator=gen, dtype=torch.float64)
    return data


def model(level="node", pooling=True, seed=0, **kw):
    torch.manual_seed(seed)
    kw.setdefault("max_radius", 0.3)
    return GEMCNN(2, 4, 3, num_layers=1, max_order=2, level=level, pooling=pooling,
                  num_samples=S, **kw).double().eval()


def with_hierarchy(module, data):
    r"""Runs the model on ``data`` with its hierarchy recomputed (so that a
    group acting on the mesh acts on the hierarchy too)."""
    return module(HIER(data))


def test_repr_and_attributes():
    m = model()
    assert str(m) == ("GEMCNN(2, 4, 3, num_layers=1, max_order=2, level='node', "
                      "pooling=True, num_levels=2)")
    assert m.num_classes == 3
    assert m.max_radius == [0.3, 0.6, 1.2]
    assert len(m.decoder) == 2
    assert len(model(level="graph").decoder) == 0


@pytest.mark.parametrize("level", ["node", "graph"])
@pytest.mark.parametrize("pooling", [False, True])
def test_output_shapes(level, pooling):
    data = HIER(mesh())
    out = model(level, pooling)(data)
    assert out.shape == ((data.num_nodes, 3) if level == "node" else (1, 3))
    assert bool(torch.isfinite(out).all())


def test_constant_input_without_x():
    data = HIER(mesh())
    data.x = None
    m = GEMCNN(1, 4, 2, num_layers=1, max_order=1, pooling=True, max_radius=0.3).double()
    assert m(data).shape == (data.num_nodes, 2)
    with pytest.raises(ValueError, match="in_channels=1"):
        model()(data)


def test_errors():
    with pytest.raises(ValueError, match="level"):
        GEMCNN(2, 4, 3, level="edge")
    with pytest.raises(ValueError, match="one 'max_radius' per level"):
        GEMCNN(2, 4, 3, pooling=True, max_radius=(0.1, 0.2))
    with pytest.raises(ValueError, match="num_samples"):
        GEMCNN(2, 4, 3, max_order=2, num_samples=4)
    with pytest.raises(TypeError, match="pooling"):
        GEMCNN(2, 4, 3, pooling="yes")
    data = mesh()
    with pytest.raises(ValueError, match="MeshHierarchy"):
        model()(data)
    with pytest.raises(ValueError, match=r"\[num_nodes, 2\]"):
        model(pooling=False)(Data(x=torch.randn(5, 3), edge_index=data.edge_index,
                                  edge_logmap=data.edge_logmap,
                                  edge_connection=data.edge_connection))
    with pytest.raises(ValueError, match="MeshGeometry"):
        model(pooling=False)(Data(x=torch.randn(5, 2)))


@pytest.mark.parametrize("level", ["node", "graph"])
def test_batch_equals_separate_runs(level):
    d1, d2 = HIER(mesh(0)), HIER(mesh(1, subdivisions=1))
    m = model(level)
    batch = Batch.from_data_list([d1, d2])
    out = m(batch)
    ref = torch.cat([m(d1), m(d2)])
    assert out.shape == ref.shape
    assert torch.allclose(out, ref, atol=1e-12)


@pytest.mark.parametrize("level", ["node", "graph"])
def test_gauge_invariance(level):
    data = mesh()
    res = assert_equivariant(model(level), data, GaugeGroup(num_angles=S),
                             forward=with_hierarchy, num_samples=3)
    assert res.error < 1e-9


def test_gauge_check_fails_without_transport():
    class NoTransportPool(ParallelTransportPool):
        def forward(self, x, cluster, transport, num_coarse=None):
            return super().forward(x, cluster, torch.zeros_like(transport), num_coarse)

    m = model("graph")
    m.pool = NoTransportPool()
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(m, mesh(), GaugeGroup(num_angles=S), forward=with_hierarchy,
                           num_samples=3)


def test_permutation_equivariance():
    res = assert_equivariant(model("node"), mesh(), Permutations(), forward=with_hierarchy,
                             num_samples=2)
    assert res.error < 1e-9


@pytest.mark.parametrize("level", ["node", "graph"])
def test_rigid_motion_invariance(level):
    pos, face = bumpy_mesh()
    x = torch.randn(pos.size(0), 2, generator=torch.Generator().manual_seed(0),
                    dtype=torch.float64)

    def recompute(module, data):  # the geometry of the moved mesh
        return module(HIER(MeshGeometry()(Data(pos=data.pos, face=data.face, x=data.x))))

    res = assert_equivariant(model(level), Data(pos=pos, face=face, x=x), E3(),
                             forward=recompute, num_samples=2)
    assert res.error < 1e-9


def test_loss_decreases_on_a_tiny_segmentation():
    r"""Learns the hemisphere (z > 0) of every vertex from its height."""
    pos, face = bumpy_mesh(subdivisions=2)
    data = HIER(MeshGeometry()(Data(pos=pos.float(), face=face)))
    data.x = data.pos[:, 2:].clone()
    y = (data.pos[:, 2] > 0).long()
    torch.manual_seed(0)
    m = GEMCNN(1, 8, 2, num_layers=1, max_order=1, pooling=True, max_radius=0.3)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(m(data), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert math.isfinite(losses[-1])
