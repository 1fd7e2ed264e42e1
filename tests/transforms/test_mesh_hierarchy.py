import math

import numpy as np
import pytest
import torch
import trimesh
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra
from torch_geometric.data import Batch, Data

from gdl_pyg.domains import mesh_to_data
from gdl_pyg.groups import E3, GaugeGroup
from gdl_pyg.transforms import MeshGeometry
from gdl_pyg.transforms.mesh_hierarchy import MeshHierarchy, MeshHierarchyData

TWO_PI = 2 * math.pi


def wrap(x):
    return torch.remainder(x + math.pi, TWO_PI) - math.pi


def bumpy_sphere(subdivisions=3, seed=0):
    rng = np.random.default_rng(seed)
    m = trimesh.creation.icosphere(subdivisions=subdivisions)
    v = np.asarray(m.vertices)
    k = rng.normal(size=(4, 3)) * 2.0
    ph = rng.uniform(0, TWO_PI, size=4)
    bump = sum(np.sin(v @ k[i] + ph[i]) for i in range(4))
    v = v * (1 + 0.06 * bump)[:, None]
    return torch.tensor(v), torch.tensor(np.asarray(m.faces).T.copy())


def torus():
    m = trimesh.creation.torus(major_radius=1.0, minor_radius=0.4, major_sections=20,
                               minor_sections=12)
    return torch.tensor(np.asarray(m.vertices)), torch.tensor(np.asarray(m.faces).T.copy())


def flat_grid(n=9, seed=0):
    r"""A jittered triangulated square in the plane z = 0."""
    rng = np.random.default_rng(seed)
    xs, ys = np.meshgrid(np.arange(n, dtype=float), np.arange(n, dtype=float))
    P = np.stack([xs.ravel(), ys.ravel(), np.zeros(n * n)], -1)
    P[:, :2] += rng.uniform(-0.2, 0.2, size=(n * n, 2))
    F = []
    for i in range(n - 1):
        for j in range(n - 1):
            a, b, c, d = i * n + j, i * n + j + 1, (i + 1) * n + j, (i + 1) * n + j + 1
            F += [[a, b, d], [a, d, c]]
    return torch.tensor(P), torch.tensor(np.array(F).T.copy())


def levels(h):
    return sorted(int(k.split("_")[-1]) for k in h.keys() if k.startswith("pool_index_"))


def level_graph(h, level):
    r"""``(edge_index, edge_logmap, edge_connection)`` of a level."""
    if level == 0:
        return h.edge_index, h.edge_logmap, h.edge_connection
    return h[f"edge_index_{level}"], h[f"edge_logmap_{level}"], h[f"edge_connection_{level}"]


def test_repr_and_errors():
    assert str(MeshHierarchy()) == "MeshHierarchy(ratios=(0.25, 0.25))"
    assert str(MeshHierarchy(0.5)) == "MeshHierarchy(ratios=(0.5,))"
    with pytest.raises(ValueError, match="ratios"):
        MeshHierarchy(ratios=(0.0,))
    with pytest.raises(ValueError, match="ratios"):
        MeshHierarchy(ratios=())
    with pytest.raises(ValueError, match="sampling"):
        MeshHierarchy(sampling="random")
    with pytest.raises(ValueError, match="MeshGeometry"):
        MeshHierarchy()(Data(pos=torch.randn(4, 3)))


@pytest.mark.parametrize("mesh", ["bumpy", "torus", "flat"])
@pytest.mark.parametrize("sampling", ["geodesic", "euclidean"])
def test_levels_are_valid(mesh, sampling):
    pos, face = {"bumpy": bumpy_sphere, "torus": torus, "flat": flat_grid}[mesh]()
    data = mesh_to_data(pos, face)
    h = MeshHierarchy(ratios=(0.25, 0.3), sampling=sampling)(data)
    assert isinstance(h, MeshHierarchyData)
    assert levels(h) == [1, 2]
    n_prev = data.num_nodes
    for level in (1, 2):
        index, cluster = h[f"pool_index_{level}"], h[f"pool_cluster_{level}"]
        transport = h[f"pool_transport_{level}"]
        n = h[f"num_nodes_{level}"]
        assert n == math.ceil((0.25, 0.3)[level - 1] * n_prev) == index.numel()
        assert torch.equal(index, torch.unique(index))  # sorted, distinct
        assert cluster.shape == transport.shape == (n_prev,)
        assert torch.equal(cluster[index], torch.arange(n))  # coarse vertices lead
        assert torch.equal(torch.unique(cluster), torch.arange(n))  # no empty cluster
        assert float(transport[index].abs().max()) == 0.0
        assert torch.equal(h[f"batch_{level}"], torch.zeros(n, dtype=torch.long))
        ei, lm, con = level_graph(h, level)
        assert ei.dtype == torch.long and int(ei.max()) < n
        assert lm.shape == (ei.size(1), 2) and con.shape == (ei.size(1),)
        assert bool((ei[0] != ei[1]).all())
        assert bool((lm[:, 0] > 0).all())
        # symmetric and sorted by target, then source
        key = ei[1] * n + ei[0]
        assert bool((key[1:] > key[:-1]).all())
        assert set(map(tuple, ei.t().tolist())) == set(map(tuple, ei.flip(0).t().tolist()))
        # coarse vertices are neighbours exactly when their clusters touch
        fei = level_graph(h, level - 1)[0]
        a, b = cluster[fei[0]], cluster[fei[1]]
        touch = {(int(u), int(v)) for u, v in zip(a, b) if u != v}
        assert touch == set(map(tuple, ei.t().tolist()))
        # frames and positions of the coarse vertices are those they come from
        prev_frame = h.frame if level == 1 else h[f"frame_{level - 1}"]
        assert torch.equal(h[f"frame_{level}"], prev_frame[index])
        n_prev = n


def test_clusters_are_nearest_along_the_graph():
    pos, face = bumpy_sphere()
    data = mesh_to_data(pos, face)
    h = MeshHierarchy(ratios=(0.2,))(data)
    src, dst = data.edge_index.numpy()
    G = csr_matrix((data.edge_logmap[:, 0].numpy(), (dst, src)), shape=(len(pos),) * 2)
    D = dijkstra(G, indices=h.pool_index_1.numpy())  # [K, N]
    assigned = D[h.pool_cluster_1.numpy(), np.arange(len(pos))]
    assert np.abs(assigned - D.min(0)).max() < 1e-12
    # geodesic farthest point sampling spreads the coarse vertices: the
    # covering radius is at most the smallest distance between two of them
    dd = D[:, h.pool_index_1.numpy()]
    np.fill_diagonal(dd, np.inf)
    assert D.min(0).max() <= dd.min() + 1e-12


def test_flat_mesh_is_exact():
    r"""On a flat mesh the transport, exponential map and connection are exact:
    they agree with the embedding of the frames in the plane."""
    pos, face = flat_grid()
    data = mesh_to_data(pos, face)
    h = MeshHierarchy(ratios=(0.3, 0.4))(data)

    def angle_in(vec, frame):  # vec [E, 3] in frame [E, 2, 3]
        return torch.atan2((vec * frame[:, 1]).sum(-1), (vec * frame[:, 0]).sum(-1))

    prev_frame = data.frame
    for level in (1, 2):
        cl, t = h[f"pool_cluster_{level}"], h[f"pool_transport_{level}"]
        P, Fr = h[f"pos_{level}"], h[f"frame_{level}"]
        # e1 of v, seen in its parent's frame, is at angle t_v
        assert float(wrap(angle_in(prev_frame[:, 0], Fr[cl]) - t).abs().max()) < 1e-10
        ei, lm, con = level_graph(h, level)
        j, i = ei
        d = P[j] - P[i]
        assert float((lm[:, 0] - d.norm(dim=-1)).abs().max()) < 1e-10
        assert float(wrap(lm[:, 1] - angle_in(d, Fr[i])).abs().max()) < 1e-10
        assert float(wrap(con - angle_in(Fr[j, 0], Fr[i])).abs().max()) < 1e-10
        prev_frame = Fr


@pytest.mark.parametrize("mesh", ["bumpy", "torus"])
def test_gauge_covariance(mesh):
    r"""Recomputing the hierarchy after a gauge change gives the transformed
    hierarchy: t' = t + theta_v - theta_p, phi' = phi - theta_i,
    c' = c + theta_j - theta_i (coarse angles: those of the kept vertices)."""
    pos, face = {"bumpy": bumpy_sphere, "torus": torus}[mesh]()
    data = mesh_to_data(pos, face)
    group = GaugeGroup()
    tf = MeshHierarchy()
    h = tf(data)
    for seed in range(2):
        theta = group.sample(data, generator=torch.Generator().manual_seed(seed))
        hg = tf(group.act(theta, data))
        th = theta
        for level in (1, 2):
            for key in ("pool_index", "pool_cluster", "edge_index"):
                assert torch.equal(hg[f"{key}_{level}"], h[f"{key}_{level}"])
            cl = h[f"pool_cluster_{level}"]
            th_c = th[h[f"pool_index_{level}"]]
            t, tg = h[f"pool_transport_{level}"], hg[f"pool_transport_{level}"]
            assert float(wrap(tg - (t + th - th_c[cl])).abs().max()) < 1e-10
            j, i = h[f"edge_index_{level}"]
            lm, lmg = h[f"edge_logmap_{level}"], hg[f"edge_logmap_{level}"]
            assert float((lmg[:, 0] - lm[:, 0]).abs().max()) < 1e-12
            assert float(wrap(lmg[:, 1] - (lm[:, 1] - th_c[i])).abs().max()) < 1e-10
            c, cg = h[f"edge_connection_{level}"], hg[f"edge_connection_{level}"]
            assert float(wrap(cg - (c + th_c[j] - th_c[i])).abs().max()) < 1e-10
            th = th_c


def test_rigid_motion_invariance():
    pos, face = bumpy_sphere()
    tf = MeshHierarchy(ratios=(0.25, 0.25))
    h = tf(mesh_to_data(pos, face))
    group = E3()
    gen = torch.Generator().manual_seed(3)
    for _ in range(2):
        Q, t = group.sample(generator=gen)
        hm = tf(mesh_to_data(pos @ Q.T + t, face))
        for level in (1, 2):
            for key in ("pool_index", "pool_cluster", "edge_index"):
                assert torch.equal(hm[f"{key}_{level}"], h[f"{key}_{level}"])
            for key in ("pool_transport", "edge_connection"):
                assert float(wrap(hm[f"{key}_{level}"] - h[f"{key}_{level}"]).abs().max()) \
                    < 1e-9
            lm, lmm = h[f"edge_logmap_{level}"], hm[f"edge_logmap_{level}"]
            assert float((lmm[:, 0] - lm[:, 0]).abs().max()) < 1e-10
            assert float(wrap(lmm[:, 1] - lm[:, 1]).abs().max()) < 1e-9
            assert float((hm[f"pos_{level}"] - (h[f"pos_{level}"] @ Q.T + t)).abs().max()) \
                < 1e-10


def test_batching_shifts_every_level():
    d1 = mesh_to_data(*bumpy_sphere(subdivisions=2))
    d2 = mesh_to_data(*torus())
    tf = MeshHierarchy()
    h1, h2 = tf(d1), tf(d2)
    batch = Batch.from_data_list([h1, h2])
    n_prev = (h1.num_nodes, h2.num_nodes)
    for level in (1, 2):
        n = (h1[f"num_nodes_{level}"], h2[f"num_nodes_{level}"])
        ei = torch.cat([h1[f"edge_index_{level}"], h2[f"edge_index_{level}"] + n[0]], 1)
        assert torch.equal(batch[f"edge_index_{level}"], ei)
        cl = torch.cat([h1[f"pool_cluster_{level}"], h2[f"pool_cluster_{level}"] + n[0]])
        assert torch.equal(batch[f"pool_cluster_{level}"], cl)
        idx = torch.cat([h1[f"pool_index_{level}"], h2[f"pool_index_{level}"] + n_prev[0]])
        assert torch.equal(batch[f"pool_index_{level}"], idx)
        assert torch.equal(batch[f"batch_{level}"],
                           torch.repeat_interleave(torch.arange(2), torch.tensor(n)))
        for key in ("pool_transport", "edge_connection", "edge_logmap"):
            assert torch.equal(batch[f"{key}_{level}"],
                               torch.cat([h1[f"{key}_{level}"], h2[f"{key}_{level}"]]))
        n_prev = n
    # and it round-trips
    back = batch.get_example(1)
    assert torch.equal(back.edge_index_2, h2.edge_index_2)
    assert torch.equal(back.pool_cluster_1, h2.pool_cluster_1)


def test_compose_with_mesh_geometry_and_rerun():
    pos, face = bumpy_sphere(subdivisions=2)
    data = MeshGeometry()(Data(pos=pos, face=face))
    h = MeshHierarchy(ratios=(0.25, 0.25))(data)
    again = MeshHierarchy(ratios=(0.5,))(h)  # drops the old levels
    assert levels(again) == [1] and "edge_index_2" not in again
    assert again.num_nodes_1 == math.ceil(0.5 * data.num_nodes)


def test_disconnected_mesh_gets_a_coarse_vertex_per_component():
    p1, f1 = bumpy_sphere(subdivisions=1)
    p2, f2 = bumpy_sphere(subdivisions=1, seed=1)
    pos = torch.cat([p1, p2 + 5.0])
    face = torch.cat([f1, f2 + p1.size(0)], 1)
    h = MeshHierarchy(ratios=(0.02,))(mesh_to_data(pos, face))
    assert h.num_nodes_1 == 2
    comp = (torch.arange(pos.size(0)) >= p1.size(0)).long()
    assert torch.equal(h.pool_cluster_1, comp)
    assert h.edge_index_1.size(1) == 0


def test_validates_edge_index_and_edge_attributes():
    # issue 9: a malformed edge_index or misaligned edge attributes raise ValueError
    data = mesh_to_data(*bumpy_sphere(1))
    bad = data.clone()
    bad.edge_index = torch.cat([data.edge_index, data.edge_index[:1]])
    with pytest.raises(ValueError, match=r"'MeshHierarchy'.*size 2 in the first dimension"):
        MeshHierarchy()(bad)
    bad = data.clone()
    bad.edge_logmap = data.edge_logmap[:-1]
    with pytest.raises(ValueError, match=r"'MeshHierarchy' expected 'edge_logmap' of shape"):
        MeshHierarchy()(bad)
