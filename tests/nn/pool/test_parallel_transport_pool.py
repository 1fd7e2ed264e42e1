import numpy as np
import pytest
import torch
import trimesh
from torch_geometric.data import Batch, Data
from torch_geometric.utils import scatter

from gdl_pyg.domains import mesh_to_data
from gdl_pyg.groups import GaugeGroup, gauge_matrix
from gdl_pyg.nn.pool.parallel_transport_pool import (ParallelTransportPool,
                                                     ParallelTransportUnpool)
from gdl_pyg.testing import assert_equivariant
from gdl_pyg.transforms.mesh_hierarchy import MeshHierarchy

ORDERS = (0, 1, 2)
HIER = MeshHierarchy(ratios=(0.25,))


def bumpy_mesh(subdivisions=2, seed=0):
    rng = np.random.default_rng(seed)
    m = trimesh.creation.icosphere(subdivisions=subdivisions)
    v = np.asarray(m.vertices)
    k = rng.normal(size=(3, 3)) * 2.0
    bump = sum(np.sin(v @ k[i] + i) for i in range(3))
    v = v * (1 + 0.06 * bump)[:, None]
    return torch.tensor(v), torch.tensor(np.asarray(m.faces).T.copy())


def mesh_with_field(seed=0, channels=3):
    data = mesh_to_data(*bumpy_mesh(seed=seed))
    gen = torch.Generator().manual_seed(seed)
    data.x = torch.randn(data.num_nodes, channels, 5, generator=gen, dtype=torch.float64)
    return data


def pooled(module, data):
    r"""Pools ``data.x`` with the hierarchy of ``data`` (recomputed, so that it
    sees the gauge) and places the coarse features on the fine vertices they
    were chosen from: the gauge group then rotates them by the coarse angles."""
    h = HIER(data)
    xc = module(data.x, h.pool_cluster_1, h.pool_transport_1, h.num_nodes_1)
    out = Data(num_nodes=data.num_nodes)
    out.x = xc.new_zeros((data.num_nodes,) + xc.shape[1:])
    out.x[h.pool_index_1] = xc
    return out


def unpooled(module, data):
    r"""Unpools a coarse field read at the kept vertices of ``data.x``."""
    h = HIER(data)
    return module(data.x[h.pool_index_1], h.pool_cluster_1, h.pool_transport_1)


def test_repr_and_group():
    assert str(ParallelTransportPool()) == "ParallelTransportPool()"
    assert str(ParallelTransportUnpool()) == "ParallelTransportUnpool()"
    assert ParallelTransportPool.group_name == GaugeGroup.name


def test_shapes_and_order_zero_is_mean_pooling():
    data = mesh_with_field()
    h = HIER(data)
    pool, unpool = ParallelTransportPool(), ParallelTransportUnpool()
    xc = pool(data.x, h.pool_cluster_1, h.pool_transport_1, h.num_nodes_1)
    assert xc.shape == (h.num_nodes_1, 3, 5)
    # default num_coarse: cluster.max() + 1
    assert torch.equal(pool(data.x, h.pool_cluster_1, h.pool_transport_1), xc)
    ref = scatter(data.x[..., 0], h.pool_cluster_1, 0, reduce="mean")
    assert torch.allclose(xc[..., 0], ref, atol=1e-14)
    # the transport is a rotation: the norm of every order is preserved by unpooling
    xf = unpool(xc, h.pool_cluster_1, h.pool_transport_1)
    assert xf.shape == data.x.shape
    for m in (1, 2):
        sl = slice(2 * m - 1, 2 * m + 1)
        assert torch.allclose(xf[..., sl].norm(dim=-1), xc[h.pool_cluster_1][..., sl].norm(dim=-1),
                              atol=1e-13)
    # without channels too: [N, 2M+1]
    assert pool(data.x[:, 0], h.pool_cluster_1, h.pool_transport_1).shape == (h.num_nodes_1, 5)


def test_manual_transport_matches_gauge_matrix():
    data = mesh_with_field()
    h = HIER(data)
    rot = gauge_matrix(h.pool_transport_1, ORDERS)  # [N, 5, 5]
    ref = scatter(torch.einsum("npq,ncq->ncp", rot, data.x), h.pool_cluster_1, 0,
                  reduce="mean")
    out = ParallelTransportPool()(data.x, h.pool_cluster_1, h.pool_transport_1, h.num_nodes_1)
    assert torch.allclose(out, ref, atol=1e-13)


def test_gauge_equivariance():
    data = mesh_with_field()
    fields = {"x": ORDERS}
    res = assert_equivariant(ParallelTransportPool(), data, GaugeGroup(), fields=fields,
                             out_fields=fields, forward=pooled, output_keys=["x"])
    assert res.error < 1e-9
    assert_equivariant(ParallelTransportUnpool(), data, GaugeGroup(), fields=fields,
                       out_fields={"out": ORDERS}, forward=unpooled)


def test_checker_fails_without_transport():
    data = mesh_with_field()
    fields = {"x": ORDERS}

    def broken(module, data):  # averages the raw coefficients of different frames
        h = HIER(data)
        xc = module(data.x, h.pool_cluster_1, torch.zeros_like(h.pool_transport_1),
                    h.num_nodes_1)
        out = Data(num_nodes=data.num_nodes)
        out.x = xc.new_zeros((data.num_nodes,) + xc.shape[1:])
        out.x[h.pool_index_1] = xc
        return out

    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(ParallelTransportPool(), data, GaugeGroup(), fields=fields,
                           out_fields=fields, forward=broken, output_keys=["x"])

    def broken_unpool(module, data):  # copies coarse coefficients without transport
        h = HIER(data)
        return module(data.x[h.pool_index_1], h.pool_cluster_1,
                      torch.zeros_like(h.pool_transport_1))

    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(ParallelTransportUnpool(), data, GaugeGroup(), fields=fields,
                           out_fields={"out": ORDERS}, forward=broken_unpool)


def test_flat_mesh_constant_vector_field_is_preserved():
    r"""A constant tangent vector field of the plane, written in the local
    frames, pools to the same field written in the coarse frames."""
    rng = np.random.default_rng(0)
    n = 8
    xs, ys = np.meshgrid(np.arange(n, dtype=float), np.arange(n, dtype=float))
    P = np.stack([xs.ravel(), ys.ravel(), np.zeros(n * n)], -1)
    P[:, :2] += rng.uniform(-0.2, 0.2, size=(n * n, 2))
    F = [[i * n + j, i * n + j + 1, (i + 1) * n + j + 1] for i in range(n - 1)
         for j in range(n - 1)]
    F += [[i * n + j, (i + 1) * n + j + 1, (i + 1) * n + j] for i in range(n - 1)
          for j in range(n - 1)]
    data = mesh_to_data(torch.tensor(P), torch.tensor(np.array(F).T.copy()))
    h = HIER(data)
    u = torch.tensor([0.6, -0.8, 0.0], dtype=torch.float64)

    def field(frame):  # order 1 coefficients of u in the frames, order 0 = 1
        return torch.stack([torch.ones(frame.size(0), dtype=torch.float64),
                            frame[:, 0] @ u, frame[:, 1] @ u], -1).unsqueeze(1)

    xc = ParallelTransportPool()(field(data.frame), h.pool_cluster_1, h.pool_transport_1,
                                 h.num_nodes_1)
    assert torch.allclose(xc, field(h.frame_1), atol=1e-12)
    xf = ParallelTransportUnpool()(xc, h.pool_cluster_1, h.pool_transport_1)
    assert torch.allclose(xf, field(data.frame), atol=1e-12)


def test_batch_equals_separate_calls():
    d1 = mesh_with_field(seed=0)
    d2 = mesh_to_data(*bumpy_mesh(subdivisions=1, seed=1))
    d2.x = torch.randn(d2.num_nodes, 3, 5, dtype=torch.float64)
    h1, h2 = HIER(d1), HIER(d2)
    b = Batch.from_data_list([h1, h2])
    pool, unpool = ParallelTransportPool(), ParallelTransportUnpool()
    n1 = int(b.batch_1.numel())
    xb = pool(b.x, b.pool_cluster_1, b.pool_transport_1, n1)
    x1 = pool(h1.x, h1.pool_cluster_1, h1.pool_transport_1, h1.num_nodes_1)
    x2 = pool(h2.x, h2.pool_cluster_1, h2.pool_transport_1, h2.num_nodes_1)
    assert torch.allclose(xb, torch.cat([x1, x2]), atol=1e-14)
    ub = unpool(xb, b.pool_cluster_1, b.pool_transport_1)
    assert torch.allclose(ub, torch.cat([unpool(x1, h1.pool_cluster_1, h1.pool_transport_1),
                                         unpool(x2, h2.pool_cluster_1, h2.pool_transport_1)]),
                          atol=1e-14)


def test_errors():
    data = mesh_with_field()
    h = HIER(data)
    pool = ParallelTransportPool()
    with pytest.raises(ValueError, match="2M\\+1"):
        pool(data.x[..., :4], h.pool_cluster_1, h.pool_transport_1)
    with pytest.raises(ValueError, match="'cluster' of shape"):
        pool(data.x, h.pool_cluster_1[:-1], h.pool_transport_1)
    with pytest.raises(ValueError, match="'transport' of shape"):
        ParallelTransportUnpool()(data.x[:10], h.pool_cluster_1, h.pool_transport_1[:3])
    with pytest.raises(TypeError, match="integer 'cluster'"):
        pool(data.x, h.pool_cluster_1.double(), h.pool_transport_1)


def test_compiles_without_graph_breaks():
    data = mesh_with_field()
    h = HIER(data)
    explain = torch._dynamo.explain(ParallelTransportPool())(
        data.x, h.pool_cluster_1, h.pool_transport_1, h.num_nodes_1)
    assert explain.graph_break_count == 0
