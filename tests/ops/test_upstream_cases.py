r"""The cases of torch_cluster's own test files (test/test_knn.py,
test_radius.py, test_fps.py, test_grid.py, test_nearest.py of
rusty1s/pytorch_cluster 1.6.3), re-expressed as tests of our torch and scipy
backends, over the dtypes upstream tests: half, bfloat16, float32, float64
(and int32 / int64 positions for the grid)."""
import pytest
import torch

from gdl_pyg.ops import (fps, grid_cluster, knn, knn_graph, nearest, radius,
                         radius_graph, voxel_grid)

FLOATS = [torch.half, torch.bfloat16, torch.float32, torch.float64]
NEIGHBOR_BACKENDS = ["torch", "scipy"]


def as_set(edge_index):
    return set(map(tuple, edge_index.t().tolist()))


def square(dtype, scale=(1, 1)):
    r"""The square corners of the upstream tests, twice (optionally scaled
    per copy)."""
    pts = [[-1, -1], [-1, 1], [1, 1], [1, -1]]
    return torch.tensor([[c * scale[0] for c in p] for p in pts] +
                        [[c * scale[1] for c in p] for p in pts], dtype=dtype)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("backend", NEIGHBOR_BACKENDS)
def test_knn_upstream(dtype, backend):
    x = square(dtype)
    y = torch.tensor([[1, 0], [-1, 0]], dtype=dtype)
    out = knn(x, y, 2, backend=backend)
    assert out.dtype == torch.long
    assert as_set(out) == {(0, 2), (0, 3), (1, 0), (1, 1)}
    bx = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    by = torch.tensor([0, 1])
    assert as_set(knn(x, y, 2, bx, by, backend=backend)) == \
        {(0, 2), (0, 3), (1, 4), (1, 5)}
    # Skipping an example.
    assert as_set(knn(x, y, 2, bx * 2, by * 2, backend=backend)) == \
        {(0, 2), (0, 3), (1, 4), (1, 5)}


@pytest.mark.parametrize("dtype", FLOATS)
def test_knn_cosine_upstream(dtype):
    x = square(dtype)
    y = torch.tensor([[1, 0], [-1, 0]], dtype=dtype)
    bx = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    by = torch.tensor([0, 1])
    assert as_set(knn(x, y, 2, bx, by, cosine=True, backend="torch")) == \
        {(0, 2), (0, 3), (1, 4), (1, 5)}


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("backend", NEIGHBOR_BACKENDS)
def test_knn_graph_upstream(dtype, backend):
    x = square(dtype)[:4]
    ring = {(0, 1), (0, 3), (1, 0), (1, 2), (2, 1), (2, 3), (3, 0), (3, 2)}
    assert as_set(knn_graph(x, 2, flow="target_to_source",
                            backend=backend)) == ring
    assert as_set(knn_graph(x, 2, flow="source_to_target",
                            backend=backend)) == {(j, i) for i, j in ring}


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("backend", NEIGHBOR_BACKENDS)
def test_radius_upstream(dtype, backend):
    x = square(dtype)
    y = torch.tensor([[0, 0], [0, 1]], dtype=dtype)
    out = radius(x, y, 2, max_num_neighbors=4, backend=backend)
    assert out.dtype == torch.long
    assert as_set(out) == {(0, 0), (0, 1), (0, 2), (0, 3), (1, 1), (1, 2),
                           (1, 5), (1, 6)}
    bx = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    by = torch.tensor([0, 1])
    expected = {(0, 0), (0, 1), (0, 2), (0, 3), (1, 5), (1, 6)}
    assert as_set(radius(x, y, 2, bx, by, max_num_neighbors=4,
                         backend=backend)) == expected
    assert as_set(radius(x, y, 2, bx * 2, by * 2, max_num_neighbors=4,
                         backend=backend)) == expected


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("backend", NEIGHBOR_BACKENDS)
def test_radius_graph_upstream(dtype, backend):
    x = square(dtype)[:4]
    ring = {(0, 1), (0, 3), (1, 0), (1, 2), (2, 1), (2, 3), (3, 0), (3, 2)}
    assert as_set(radius_graph(x, 2.5, flow="target_to_source",
                               backend=backend)) == ring
    assert as_set(radius_graph(x, 2.5, flow="source_to_target",
                               backend=backend)) == {(j, i) for i, j in ring}
    # max_num_neighbors=1: every node keeps exactly one neighbour, also when
    # all points coincide and per example.
    for pts, batch in [(x, None), (torch.full((4, 2), -1, dtype=dtype), None),
                       (square(dtype), torch.tensor([0] * 4 + [1] * 4))]:
        out = radius_graph(pts, 100.0, batch, max_num_neighbors=1,
                           backend=backend)
        assert torch.bincount(out[1]).tolist() == [1] * pts.size(0)
        if batch is not None:
            assert (out[0] // 4).tolist() == batch.tolist()


@pytest.mark.parametrize("dtype", FLOATS)
def test_fps_upstream(dtype):
    x = torch.tensor([[-1, -1], [-1, 1], [1, 1], [1, -1],
                      [-2, -2], [-2, 2], [2, 2], [2, -2]], dtype=dtype)
    batch = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    kw = dict(random_start=False, backend="torch")
    assert fps(x, batch, **kw).tolist() == [0, 2, 4, 6]
    assert fps(x, batch, ratio=0.5, **kw).tolist() == [0, 2, 4, 6]
    assert fps(x, batch, ratio=torch.tensor(0.5), **kw).tolist() == \
        [0, 2, 4, 6]
    assert fps(x, ptr=[0, 4, 8], ratio=0.5, **kw).tolist() == [0, 2, 4, 6]
    assert fps(x, ptr=torch.tensor([0, 4, 8]), ratio=0.5, **kw).tolist() == \
        [0, 2, 4, 6]
    assert fps(x, batch, ratio=torch.tensor([0.5, 0.5]), **kw).tolist() == \
        [0, 2, 4, 6]
    for ratio in [None, 0.5, torch.tensor(0.5), torch.tensor([0.5])]:
        assert sorted(fps(x, ratio=ratio, **kw).tolist()) == [0, 5, 6, 7]


def test_fps_random_upstream():
    torch.manual_seed(0)
    n = 1024
    for _ in range(2):
        pos = torch.randn(2 * n, 3)
        batch = torch.repeat_interleave(torch.arange(2), n)
        idx = fps(pos, batch, ratio=0.5, backend="torch")
        assert idx.numel() == n
        assert int(idx.min()) >= 0 and int(idx.max()) < 2 * n
        assert (idx[:n // 2] < n).all() and (idx[n // 2:] >= n).all()


GRID_CASES = [
    dict(pos=[2, 6], size=[5], cluster=[0, 0]),
    dict(pos=[2, 6], size=[5], start=[0], cluster=[0, 1]),
    dict(pos=[[0, 0], [11, 9], [2, 8], [2, 2], [8, 3]], size=[5, 5],
         cluster=[0, 5, 3, 0, 1]),
    dict(pos=[[0, 0], [11, 9], [2, 8], [2, 2], [8, 3]], size=[5, 5],
         end=[19, 19], cluster=[0, 6, 4, 0, 1]),
]


@pytest.mark.parametrize("case", GRID_CASES)
@pytest.mark.parametrize("dtype", FLOATS + [torch.int32, torch.int64])
def test_grid_cluster_upstream(case, dtype):
    def t(v):
        return None if v is None else torch.tensor(v, dtype=dtype)

    out = grid_cluster(t(case["pos"]), t(case["size"]), t(case.get("start")),
                       t(case.get("end")), backend="torch")
    assert out.dtype == torch.long
    assert out.tolist() == case["cluster"]


@pytest.mark.parametrize("dtype", FLOATS + [torch.int32, torch.int64])
def test_voxel_grid_integer_and_half_positions(dtype):
    pos = torch.tensor([[0, 0], [11, 9], [2, 8], [2, 2], [8, 3], [0, 0]],
                       dtype=dtype)
    batch = torch.tensor([0, 0, 0, 0, 0, 1])
    ref = voxel_grid(pos.double(), 5, batch, backend="torch")
    out = voxel_grid(pos, 5, batch, backend="torch")
    assert out.dtype == torch.long and torch.equal(out, ref)
    # The two copies of (0, 0) lie in different examples.
    assert int(out[0]) != int(out[5])
    # A fractional size is not rounded to the integer dtype of pos.
    assert torch.equal(voxel_grid(pos, 2.5, batch, backend="torch"),
                       voxel_grid(pos.double(), 2.5, batch, backend="torch"))


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("backend", NEIGHBOR_BACKENDS)
def test_nearest_upstream(dtype, backend):
    x = torch.tensor([[-1, -1], [-1, 1], [1, 1], [1, -1],
                      [-2, -2], [-2, 2], [2, 2], [2, -2]], dtype=dtype)
    y = torch.tensor([[-1, 0], [1, 0], [-2, 0], [2, 0]], dtype=dtype)
    bx = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    by = torch.tensor([0, 0, 1, 1])
    expected = [0, 0, 1, 1, 2, 2, 3, 3]
    assert nearest(x, y, bx, by, backend=backend).tolist() == expected
    assert nearest(x, y, backend=backend).tolist() == expected
    # Example 1 only in batch_x.
    with pytest.raises(ValueError):
        nearest(x, y, bx, torch.tensor([0, 0, 0, 0]), backend=backend)
    with pytest.raises(ValueError):
        nearest(x, y, bx, None, backend=backend)
    # Example 2 (in the middle) only in batch_x.
    with pytest.raises(ValueError):
        nearest(x, y, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]),
                torch.tensor([0, 1, 3, 3]), backend=backend)
    # Unsorted batch vectors (the first also of the wrong length).
    with pytest.raises(ValueError):
        nearest(x, y, torch.tensor([0, 0, 1, 0, 0, 0, 0]), by,
                backend=backend)
    with pytest.raises(ValueError):
        nearest(x, y, bx, torch.tensor([0, 0, 1, 0]), backend=backend)
