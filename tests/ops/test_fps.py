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
        out = fps(x, batch, ratio=0.2, backend="torch")
        first0, first1 = int(out[0]), int(out[10])
        assert 0 <= first0 < 50 and 50 <= first1 < 130
        # Each example continues farthest-point from its random start.
        assert out[:10].tolist() == ref_fps(x[:50], first0, 10)
        assert (out[10:] - 50).tolist() == ref_fps(x[50:], first1 - 50, 16)
        starts.add(first0)
        torch.manual_seed(seed)  # Reproducible under torch.manual_seed.
        assert torch.equal(fps(x, batch, ratio=0.2, backend="torch"), out)
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
    (lambda x, b: fps(x.long()), TypeError, "floating point"),
    (lambda x, b: fps(x, b.float()), TypeError, "integer"),
    (lambda x, b: fps(x, b - 1), ValueError, "non-negative"),
    (lambda x, b: fps(x[0, 0]), ValueError, "shape"),
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


def test_fps_ptr_equals_batch():
    gen = torch.Generator().manual_seed(9)
    sizes = [12, 0, 30, 7]
    x = torch.rand(sum(sizes), 3, generator=gen, dtype=torch.float64)
    batch = make_batch(sizes)
    ptr = [0, 12, 12, 42, 49]
    ref = fps(x, batch, 0.4, random_start=False)
    assert torch.equal(fps(x, ptr=ptr, ratio=0.4, random_start=False), ref)
    assert torch.equal(fps(x, None, 0.4, False, None, torch.tensor(ptr)),
                       ref)
    # batch and ptr together must agree; batch_size must match ptr.
    assert torch.equal(fps(x, batch, 0.4, False, ptr=ptr), ref)
    with pytest.raises(ValueError, match="different examples"):
        fps(x, batch, 0.4, False, ptr=[0, 10, 12, 42, 49])
    with pytest.raises(ValueError, match="batch_size=3"):
        fps(x, None, 0.4, False, batch_size=3, ptr=ptr)


def test_fps_per_example_ratio():
    gen = torch.Generator().manual_seed(10)
    sizes = [20, 9, 0, 33]
    x = torch.rand(sum(sizes), 2, generator=gen, dtype=torch.float64)
    batch = make_batch(sizes)
    ratio = torch.tensor([0.1, 1.0, 0.5, 0.3])
    out = fps(x, batch, ratio, random_start=False)
    expected, offset = [], 0
    for n, r in zip(sizes, ratio.tolist()):
        if n > 0:
            m = ref_count(n, r)
            expected += [offset + i for i in ref_fps(x[offset:offset + n], 0,
                                                     m)]
        offset += n
    assert out.tolist() == expected
    # A trailing empty example needs batch_size (or ptr) to count.
    with pytest.raises(ValueError, match="num_examples=2"):
        fps(x[:29], batch[:29], ratio)
    assert torch.equal(fps(x[:29], batch[:29], ratio, False, batch_size=4),
                       out[:ref_count(20, 0.1) + 9])


def test_fps_ratio_tensor_dtype_follows_torch_cluster():
    # 25 * 0.28 is 7 in float32 but 7.000000000000001 in float64: a
    # float, a 0-dim tensor and a float32 tensor give 7 samples, a 1-D
    # float64 tensor promotes the product to float64 and gives 8, as in
    # torch_cluster.
    x = torch.rand(25, 2, dtype=torch.float64)
    assert fps(x, ratio=0.28).numel() == 7
    assert fps(x, ratio=torch.tensor(0.28, dtype=torch.float64)).numel() == 7
    assert fps(x, ratio=torch.tensor([0.28])).numel() == 7
    assert fps(x, ratio=torch.tensor([0.28], dtype=torch.float64)).numel() \
        == 8


@pytest.mark.parametrize("dtype", [torch.half, torch.bfloat16])
def test_fps_low_precision_is_sampled_in_float32(dtype):
    gen = torch.Generator().manual_seed(11)
    x = torch.rand(60, 3, generator=gen).to(dtype)
    batch = make_batch([25, 35])
    out = fps(x, batch, 0.3, random_start=False)
    assert out.dtype == torch.long
    assert torch.equal(out, fps(x.float(), batch, 0.3, random_start=False))


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(ptr=[0, 5]), ValueError, "end at"),
    (dict(ptr=[1, 10]), ValueError, "start at 0"),
    (dict(ptr=[0, 6, 4, 10]), ValueError, "non-decreasing"),
    (dict(ptr=[0]), ValueError, "at least 2"),
    (dict(ptr=torch.tensor([[0, 10]])), ValueError, "shape"),
    (dict(ptr=torch.tensor([0.0, 10.0])), TypeError, "integer"),
    (dict(ptr=[0, 5.0, 10]), TypeError, "list of ints"),
    (dict(ptr="0,10"), TypeError, "'ptr'"),
    (dict(ratio=torch.tensor([0.5, 0.0])), ValueError, r"\(0, 1\]"),
    (dict(ratio=torch.tensor([0.5, float("nan")])), ValueError, r"\(0, 1\]"),
    (dict(ratio=torch.tensor([1, 1])), TypeError, "floating point"),
    (dict(ratio=torch.ones(2, 1)), ValueError, "num_examples"),
    (dict(ratio=torch.tensor([0.5, 0.5, 0.5]), ptr=[0, 5, 10]), ValueError,
     "num_examples=2"),
    (dict(ratio=torch.empty(0)), ValueError, "empty"),
])
def test_bad_ptr_and_ratio(kwargs, err, match):
    with pytest.raises(err, match=match):
        fps(torch.rand(10, 3), **kwargs)
