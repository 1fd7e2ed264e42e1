import pytest
import torch
from torch_geometric.data import Batch, Data

from gdl_pyg.groups import GaugeGroup, Permutations, TimeWarping, gauge_matrix, permute_nodes


def _graph(n, e, seed):
    gen = torch.Generator().manual_seed(seed)
    return Data(x=torch.randn(n, 3, generator=gen), pos=torch.randn(n, 3, generator=gen),
                edge_index=torch.randint(0, n, (2, e), generator=gen),
                edge_attr=torch.randn(e, 2, generator=gen), y=torch.tensor([1]))


def test_permutations_stay_within_graphs():
    batch = Batch.from_data_list([_graph(5, 9, 0), _graph(7, 4, 1), _graph(3, 3, 2)])
    P = Permutations()
    perm = P.sample(batch, generator=torch.Generator().manual_seed(0))
    assert torch.equal(batch.batch[perm], batch.batch)
    assert sorted(perm.tolist()) == list(range(batch.num_nodes))
    out = P.act(perm, batch)
    assert torch.equal(out.x, batch.x[perm])
    assert torch.equal(out.y, batch.y)           # graph-level: untouched
    assert torch.equal(out.edge_attr, batch.edge_attr)  # edge order kept
    # relabelled edges connect the same features
    assert torch.equal(out.x[out.edge_index[0]], batch.x[batch.edge_index[0]])


def test_permute_nodes_checks_length():
    with pytest.raises(ValueError, match="permutation of 5 nodes"):
        permute_nodes(_graph(5, 3, 0), torch.arange(4))


def test_permutations_refuse_fibre_representations():
    d = _graph(4, 3, 0)
    with pytest.raises(ValueError, match="trivially"):
        Permutations().act(torch.arange(4), d, fields={"x": "vector"})


def test_gauge_action_composes_and_preserves_vectors():
    n = 6
    gen = torch.Generator().manual_seed(0)
    normalize = torch.nn.functional.normalize
    e1 = normalize(torch.randn(n, 3, generator=gen, dtype=torch.float64), dim=-1)
    e2 = normalize(torch.cross(e1, torch.randn(n, 3, generator=gen, dtype=torch.float64),
                               dim=-1), dim=-1)
    edge_index = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 4]])
    coeffs = torch.randn(n, 2, generator=gen, dtype=torch.float64)
    data = Data(frame=torch.stack([e1, e2], 1), edge_index=edge_index,
                edge_logmap=torch.rand(4, 2, generator=gen, dtype=torch.float64),
                edge_connection=torch.randn(4, generator=gen, dtype=torch.float64),
                v=coeffs, num_nodes=n)
    G = GaugeGroup()
    th = G.sample(data, generator=gen)
    out = G.act(th, data, fields={"v": "gauge:1"})
    # the tangent vector itself (coefficients times frame) does not change
    vec = torch.einsum("nc,ncd->nd", coeffs, data.frame)
    vec2 = torch.einsum("nc,ncd->nd", out.v, out.frame)
    assert torch.allclose(vec, vec2, atol=1e-12)
    src, dst = edge_index
    assert torch.allclose(out.edge_connection, data.edge_connection + th[src] - th[dst])
    assert torch.allclose(out.edge_logmap[:, 1], data.edge_logmap[:, 1] - th[dst])
    assert torch.equal(out.edge_logmap[:, 0], data.edge_logmap[:, 0])
    # acting twice adds the angles
    th2 = G.sample(data, generator=gen)
    twice = G.act(th2, out, fields={"v": "gauge:1"})
    once = G.act(th + th2, data, fields={"v": "gauge:1"})
    assert torch.allclose(twice.v, once.v, atol=1e-12)
    assert torch.allclose(twice.frame, once.frame, atol=1e-12)


def test_gauge_matrix_blocks():
    a = torch.tensor([0.3, -1.2], dtype=torch.float64)
    M = gauge_matrix(a, (0, 2))
    assert M.shape == (2, 3, 3)
    assert torch.allclose(M[:, 0, 0], torch.ones(2, dtype=torch.float64))
    assert torch.allclose(M[:, 1, 1], torch.cos(2 * a))
    assert torch.allclose(M[:, 2, 1], torch.sin(2 * a))
    with pytest.raises(ValueError, match="gauge representation"):
        GaugeGroup().act(torch.zeros(2), Data(v=torch.zeros(2, 2), num_nodes=2),
                         fields={"v": "gauge:a,b"})


def test_time_warping_repeats_steps_and_rebuilds_path():
    x = torch.arange(6.).view(-1, 1)
    batch = torch.tensor([0, 0, 0, 1, 1, 1])
    from gdl_pyg.groups.time_warping import path_edge_index
    data = Data(x=x, batch=batch, edge_index=path_edge_index(batch), y=torch.tensor([0, 1]))
    W = TimeWarping(max_repeat=3)
    counts = torch.tensor([1, 2, 3, 1, 1, 2])
    out = W.act(counts, data)
    assert out.x.view(-1).tolist() == [0, 1, 1, 2, 2, 2, 3, 4, 5, 5]
    assert out.batch.tolist() == [0] * 6 + [1] * 4
    assert out.edge_index.size(1) == 5 + 3
    assert bool((out.edge_index[1] - out.edge_index[0] == 1).all())
    assert torch.equal(out.y, data.y)
    with pytest.raises(ValueError, match="repeat counts"):
        W.act(torch.zeros(6, dtype=torch.long), data)
    with pytest.raises(ValueError, match="max_repeat"):
        TimeWarping(0)


def test_permutations_relabel_faces_and_index_tensors():
    gen = torch.Generator().manual_seed(5)
    pos = torch.randn(6, 3, generator=gen)
    face = torch.tensor([[0, 1, 2], [2, 3, 4], [4, 5, 0]]).T
    lap_index = torch.tensor([[0, 1, 2], [1, 2, 0]])
    data = Data(pos=pos, face=face, laplacian_index=lap_index,
                laplacian_weight=torch.randn(3, generator=gen),
                face_area=torch.rand(3, generator=gen))
    perm = Permutations().sample(data, generator=gen)
    out = Permutations().act(perm, data)
    assert torch.equal(out.pos[out.face], data.pos[data.face])
    assert torch.equal(out.pos[out.laplacian_index], data.pos[data.laplacian_index])
    assert torch.equal(out.face_area, data.face_area)
    assert torch.equal(out.laplacian_weight, data.laplacian_weight)
