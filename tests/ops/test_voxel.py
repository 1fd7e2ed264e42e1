import numpy as np
import pytest
import torch

from gdl_pyg import typing as gdl_typing
from gdl_pyg.ops.voxel import grid_cluster, voxel_grid
from gdl_pyg.testing import with_package


def ref_grid(pos, size, start=None, end=None):
    r"""numpy reference: floor division and first-dimension-fastest ids."""
    pos = np.asarray(pos)  # Computed in the dtype of pos, as the op is.
    size = np.broadcast_to(np.asarray(size, dtype=pos.dtype), pos.shape[1:])
    start = pos.min(0) if start is None else np.broadcast_to(start, size.shape)
    end = pos.max(0) if end is None else np.broadcast_to(end, size.shape)
    num = np.floor((end - start) / size).astype(np.int64) + 1
    stride = np.concatenate([[1], np.cumprod(num)[:-1]])
    cell = np.floor((pos - start) / size).astype(np.int64)
    return (cell * stride).sum(1)


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_grid_cluster_matches_numpy(dim, dtype):
    gen = torch.Generator().manual_seed(dim)
    pos = torch.rand(500, dim, generator=gen, dtype=torch.float64) * 10 - 3
    size = [0.7, 1.3, 0.5][:dim]
    out = grid_cluster(pos.to(dtype), torch.tensor(size, dtype=dtype))
    assert out.dtype == torch.long and out.shape == (500,)
    assert out.tolist() == ref_grid(pos.to(dtype).numpy(), size).tolist()


def test_grid_cluster_start_end_and_scalar_size():
    gen = torch.Generator().manual_seed(5)
    pos = torch.rand(300, 2, generator=gen, dtype=torch.float64) * 4
    out = grid_cluster(pos, 0.5, start=[-1.0, -2.0], end=5.0)
    assert out.tolist() == ref_grid(pos.numpy(), 0.5, np.array([-1., -2.]),
                                    np.array([5., 5.])).tolist()
    # Points in the same cell share an id, different cells differ.
    cell = torch.floor((pos - torch.tensor([-1.0, -2.0])) / 0.5).long()
    same = (cell[:, None] == cell[None]).all(-1)
    assert torch.equal(out[:, None] == out[None], same)


def test_voxel_grid_separates_examples():
    gen = torch.Generator().manual_seed(6)
    pos = torch.rand(200, 3, generator=gen, dtype=torch.float64)
    batch = torch.repeat_interleave(torch.arange(3),
                                    torch.tensor([50, 70, 80]))
    out = voxel_grid(pos, 0.25, batch)
    aug = np.concatenate([pos.numpy(), batch.numpy()[:, None]], 1)
    assert out.tolist() == ref_grid(aug, [0.25, 0.25, 0.25, 1.0]).tolist()
    # Identical points in different examples fall in different voxels.
    pos2 = torch.cat([pos[:50], pos[:50]])
    b2 = torch.repeat_interleave(torch.arange(2), 50)
    c = voxel_grid(pos2, 0.25, b2)
    assert not bool((c[:50][:, None] == c[50:][None]).any())
    assert torch.equal(voxel_grid(pos, 0.25), grid_cluster(
        torch.cat([pos, torch.zeros(200, 1, dtype=pos.dtype)], 1),
        [0.25, 0.25, 0.25, 1.0]))


def test_voxel_grid_start_end():
    gen = torch.Generator().manual_seed(7)
    pos = torch.rand(100, 2, generator=gen, dtype=torch.float64)
    batch = torch.repeat_interleave(torch.arange(2), 50)
    out = voxel_grid(pos, [0.2, 0.3], batch, start=0.0, end=1.0)
    aug = np.concatenate([pos.numpy(), batch.numpy()[:, None]], 1)
    assert out.tolist() == ref_grid(aug, [0.2, 0.3, 1.0],
                                    np.array([0.0, 0.0, 0.0]),
                                    np.array([1.0, 1.0, 1.0])).tolist()


def test_empty_inputs():
    assert grid_cluster(torch.empty(0, 3), 1.0).shape == (0,)
    assert voxel_grid(torch.empty(0, 3), 1.0).shape == (0,)


@pytest.mark.parametrize("call, err, match", [
    (lambda p: grid_cluster(p, 0.0), ValueError, "'size' > 0"),
    (lambda p: grid_cluster(p, [1.0, 2.0]), ValueError, "1 or 3 entries"),
    (lambda p: grid_cluster(p, "1"), TypeError, "'size'"),
    (lambda p: grid_cluster(p, 1.0, start=[0.0, 0.0]), ValueError,
     "'start'"),
    (lambda p: grid_cluster(p.view(2, 5, 3), 1.0), ValueError, "shape"),
    (lambda p: voxel_grid(p, 1.0, torch.tensor([1, 0] * 5)), ValueError,
     "sorted"),
    (lambda p: voxel_grid(p, float("nan")), ValueError, "finite"),
    (lambda p: grid_cluster(p > 0.5, 1.0), TypeError, "'pos'"),
    (lambda p: grid_cluster(p, torch.tensor([True])), TypeError, "'size'"),
    (lambda p: grid_cluster(p, [[1.0, 2.0]]), ValueError, "1 or 3 entries"),
    (lambda p: grid_cluster(p, ["a"]), TypeError, "'size'"),
    (lambda p: voxel_grid(p, 1.0, torch.zeros(9, dtype=torch.long)),
     ValueError, "'batch' with shape"),
    (lambda p: voxel_grid(p, 1.0, torch.zeros(10)), TypeError, "integer"),
    (lambda p: voxel_grid(p.view(1, 10, 3), 1.0), ValueError, "shape"),
])
def test_bad_input(call, err, match):
    with pytest.raises(err, match=match):
        call(torch.rand(10, 3))


def test_nan_coordinates():
    pos = torch.rand(10, 3)
    pos[1, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        grid_cluster(pos, 0.5)


@pytest.mark.skipif(gdl_typing.WITH_TORCH_CLUSTER,
                    reason="torch_cluster is installed")
def test_cluster_backend_requires_torch_cluster():
    with pytest.raises(ImportError, match="torch-cluster"):
        grid_cluster(torch.rand(5, 3), 0.5, backend="cluster")


@with_package("torch_cluster")
def test_agrees_with_torch_cluster():
    pos = torch.rand(100, 3)
    assert torch.equal(grid_cluster(pos, 0.2, backend="torch"),
                       grid_cluster(pos, 0.2, backend="cluster"))


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64])
def test_integer_positions_match_float64(dtype):
    gen = torch.Generator().manual_seed(8)
    pos = torch.randint(-50, 50, (400, 3), generator=gen)
    batch = torch.repeat_interleave(torch.arange(2), 200)
    for size in [3, 2.5, [4, 7, 1]]:
        out = grid_cluster(pos.to(dtype), size)
        assert out.dtype == torch.long
        assert out.tolist() == ref_grid(pos.double().numpy(), size).tolist()
        assert torch.equal(voxel_grid(pos.to(dtype), size, batch),
                           voxel_grid(pos.double(), size, batch))
    # Integer size / start / end tensors too (torch_cluster's test inputs).
    out = grid_cluster(pos.to(dtype), torch.tensor([5, 5, 5], dtype=dtype),
                       torch.tensor([-60, -60, -60], dtype=dtype),
                       torch.tensor([60, 60, 60], dtype=dtype))
    assert out.tolist() == ref_grid(pos.double().numpy(), 5.0,
                                    np.full(3, -60.0),
                                    np.full(3, 60.0)).tolist()


@pytest.mark.parametrize("dtype", [torch.half, torch.bfloat16])
def test_low_precision_positions_use_float32(dtype):
    gen = torch.Generator().manual_seed(9)
    pos = (torch.rand(300, 2, generator=gen) * 8).to(dtype)
    out = grid_cluster(pos, 0.7)
    assert out.dtype == torch.long
    assert torch.equal(out, grid_cluster(pos.float(), 0.7))


def test_grid_that_cannot_be_numbered_is_an_error():
    pos = torch.tensor([[0.0, 0.0, 0.0], [1e7, 1e7, 1e7]])
    with pytest.raises(ValueError, match="64-bit"):
        grid_cluster(pos, 1e-3)
    with pytest.raises(ValueError, match="'end' >= 'start'"):
        grid_cluster(pos, 1.0, start=5.0, end=1.0)
