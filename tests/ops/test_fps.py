import math

import numpy as np
import pytest
import torch

from gdl_pyg import typing as gdl_typing
from gdl_pyg.ops.fps import fps
from gdl_pyg.testing import with_package


def make_batch(sizes):
    return torch.repeat_interleave(torch.arange(len(sizes)),
                                   torch.tensor(sizes))


def ref_fps(x, start, m):
    r"""Plain farthest point sampling loop (numpy, float64)."""
    x = x.double().numpy()
    out = [start]
    dist = np.full(len(x), np.inf)
    for _ in range(m - 1):
        dist = np.minimum(dist, ((x - x[out[-1]]) ** 2).sum(1))
        out.append(int(np.argmax(dist)))
    return out


def ref_count(n, ratio):
    return int(math.ceil(np.float32(n) * np.float32(ratio)))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("ratio", [0.1, 0.25, 0.5, 1.0])
def test_fps_deterministic_start_matches_reference(dtype, ratio):
    gen = torch.Generator().manual_seed(0)
    sizes = [37, 1, 0, 64, 10]
    x = torch.rand(sum(sizes), 3, generator=gen, dtype=torch.float64)
    batch = make_batch(sizes)
    out = fps(x.to(dtype), batch, ratio=ratio, random_start=False)
    expected, offset = [], 0
    for n in sizes:
        if n > 0:
            idx = ref_fps(x[offset:offset + n], 0, ref_count(n, ratio))
            expected += [offset + i for i in idx]
        offset += n
    assert out.dtype == torch.long
    assert out.tolist() == expected
    counts = torch.bincount(batch[out], minlength=len(sizes))
    assert counts.tolist() == [ref_count(n, ratio) for n in sizes]


def test_fps_sample_counts_use_float32_ceil():
    # 0.3 * 10 is 3.0000000000000004 in float64 but 3 in float32.
    x = torch.rand(10, 2)
    assert fps(x, ratio=0.3).numel() == 3
    assert fps(x, ratio=0.31).numel() == 4
    assert fps(x, ratio=1.0).numel() == 10


def test_fps_random_start():
    gen = torch.Generator().manual_seed(1)
    sizes = [50, 80]
    x = torch.rand(sum(sizes), 2, generator=gen, dtype=torch.float64)
    batch = make_batch(sizes)
    starts = set()
    for seed in range(6):
        torch.manual_seed(seed)
        out = fps(x, batch, ratio=0.2)
        first0, first1 = int(out[0]), int(out[10])
        assert 0 <= first0 < 50 and 50 <= first1 < 130
        # Each example continues farthest-point from its random start.
        assert out[:10].tolist() == ref_fps(x[:50], first0, 10)
        assert (out[10:] - 50).tolist() == ref_fps(x[50:], first1 - 50, 16)
        starts.add(first0)
        torch.manual_seed(seed)  # Reproducible under torch.manual_seed.
        assert torch.equal(fps(x, batch, ratio=0.2), out)
    assert len(starts) > 1


def test_fps_samples_are_spread():
    # On a dense square, the first samples hit the corners.
    g = torch.linspace(0, 1, 11, dtype=torch.float64)
    x = torch.cartesian_prod(g, g)
    out = fps(x, ratio=0.05, random_start=False)
    corners = {0, 10, 110, 120}
    assert set(out[:4].tolist()) == corners
    assert out.unique().numel() == out.numel()


def test_fps_relabelling():
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(40, 3, generator=gen, dtype=torch.float64)
    perm = torch.randperm(40, generator=gen)
    perm = torch.cat([torch.tensor([0]), perm[perm != 0]])  # Keep start.
    out = fps(x, ratio=0.5, random_start=False)
    out_perm = fps(x[perm], ratio=0.5, random_start=False)
    assert perm[out_perm].tolist() == out.tolist()


def test_fps_empty_and_tiny():
    assert fps(torch.empty(0, 3)).shape == (0,)
    assert fps(torch.rand(1, 3)).tolist() == [0]


@pytest.mark.parametrize("call, err, match", [
    (lambda x, b: fps(x, ratio=0.0), ValueError, r"\(0, 1\]"),
    (lambda x, b: fps(x, ratio=1.5), ValueError, r"\(0, 1\]"),
    (lambda x, b: fps(x, ratio="half"), TypeError, "ratio"),
    (lambda x, b: fps(x.view(2, 5, 3)), ValueError, "shape"),
    (lambda x, b: fps(x, b[:-1]), ValueError, "shape"),
    (lambda x, b: fps(x, b.flip(0)), ValueError, "sorted"),
    (lambda x, b: fps(x, b, backend="x"), ValueError, "backend"),
])
def test_bad_input(call, err, match):
    x = torch.rand(10, 3)
    b = make_batch([5, 5])
    with pytest.raises(err, match=match):
        call(x, b)


def test_nan_coordinates():
    x = torch.rand(10, 3)
    x[2, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        fps(x)


@pytest.mark.skipif(gdl_typing.WITH_TORCH_CLUSTER,
                    reason="torch_cluster is installed")
def test_cluster_backend_requires_torch_cluster():
    with pytest.raises(ImportError, match="torch-cluster"):
        fps(torch.rand(5, 3), backend="cluster")


@with_package("torch_cluster")
def test_agrees_with_torch_cluster():
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(100, 3, generator=gen)
    batch = make_batch([40, 60])
    a = fps(x, batch, 0.3, random_start=False, backend="torch")
    b = fps(x, batch, 0.3, random_start=False, backend="cluster")
    assert torch.equal(a, b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="requires CUDA")
def test_fps_cuda_matches_cpu():
    gen = torch.Generator().manual_seed(4)
    x = torch.rand(300, 3, generator=gen, dtype=torch.float64)
    batch = make_batch([100, 200])
    cpu = fps(x, batch, 0.25, random_start=False)
    gpu = fps(x.cuda(), batch.cuda(), 0.25, random_start=False)
    assert gpu.is_cuda and torch.equal(gpu.cpu(), cpu)
