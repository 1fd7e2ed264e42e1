r"""Shared helpers of :mod:`gdl_pyg.ops`: input validation, batch vectors,
backend dispatch, block planning and deterministic smallest-:math:`k`
selection."""
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from gdl_pyg import typing as gdl_typing

#: Default upper bound on the number of pairwise distances held in memory at
#: once by the pure-torch neighbour searches (64M, i.e. 256 MB in float32).
DEFAULT_BLOCK_SIZE = 2**26

BACKENDS = ("auto", "torch", "cluster")

#: Backends of the neighbour searches (:func:`knn`, :func:`knn_graph`,
#: :func:`nearest`, :func:`radius`, :func:`radius_graph`).
NEIGHBOR_BACKENDS = ("auto", "torch", "scipy", "cluster")

#: ``backend="auto"`` uses the KD-tree (``"scipy"``) backend on CPU for at
#: most this many dimensions and the blocked brute force above: KD-trees
#: degrade towards brute force in high dimension. Measured with
#: ``scripts/bench_ops.py --dims`` (k=16, standard normal points, 2 loaded
#: cores): torch/scipy time 7.8x at D=6, 2.4x at D=8, 0.9x at D=10, 0.4x at
#: D=12 and 0.1x at D=16 for N=20000. Data of lower intrinsic dimension
#: favours the tree; pass ``backend="scipy"`` explicitly there.
SCIPY_MAX_DIM = 8


def resolve_backend(backend: str, fn: str) -> str:
    r"""Maps ``backend`` (``"auto"``, ``"torch"`` or ``"cluster"``) to the
    implementation that runs: ``"cluster"`` (:obj:`torch_cluster`) or
    ``"torch"`` (pure torch)."""
    if backend not in BACKENDS:
        raise ValueError(f"'{fn}' expected 'backend' to be one of {BACKENDS} "
                         f"(got {backend!r})")
    if backend == "cluster":
        if not gdl_typing.WITH_TORCH_CLUSTER:
            raise ImportError(f"'{fn}' with backend='cluster' requires "
                              f"'torch-cluster'; use backend='torch' or "
                              f"backend='auto' instead")
        return "cluster"
    if backend == "auto" and gdl_typing.WITH_TORCH_CLUSTER:
        return "cluster"
    return "torch"


def resolve_neighbor_backend(backend: str, fn: str, x: Tensor,
                             cosine: bool = False) -> str:
    r"""Maps ``backend`` of a neighbour search to the implementation that
    runs: ``"cluster"`` (:obj:`torch_cluster`), ``"scipy"``
    (:class:`scipy.spatial.cKDTree`) or ``"torch"`` (blocked brute force).

    ``"auto"`` picks :obj:`torch_cluster` when it is installed (except for
    cosine searches of CPU tensors, which its CPU kernel does not support),
    else the KD-tree for Euclidean searches of CPU tensors with at most
    :obj:`SCIPY_MAX_DIM` dimensions, else the torch backend."""
    if backend not in NEIGHBOR_BACKENDS:
        raise ValueError(f"'{fn}' expected 'backend' to be one of "
                         f"{NEIGHBOR_BACKENDS} (got {backend!r})")
    if cosine and x.device.type == "cpu":
        if backend == "cluster":
            raise ValueError(f"'{fn}' with backend='cluster' supports "
                             f"cosine=True on CUDA only (torch_cluster's CPU "
                             f"kernel has no cosine distance); use "
                             f"backend='torch' or backend='auto'")
        if backend == "auto":
            return "torch"
    if backend == "scipy":
        if cosine:
            raise ValueError(f"'{fn}' with backend='scipy' supports the "
                             f"Euclidean distance only (got cosine=True); "
                             f"use backend='torch' or backend='auto'")
        return "scipy"
    if backend == "auto" and not gdl_typing.WITH_TORCH_CLUSTER:
        if x.device.type == "cpu" and not cosine and \
                x.size(-1) <= SCIPY_MAX_DIM:
            return "scipy"
        return "torch"
    return resolve_backend(backend, fn)


#: Dtypes the ops compute in float32 (:func:`torch.cdist` and friends have
#: no half-precision CPU kernels, and half distances lose ties).
LOW_PRECISION = (torch.float16, torch.bfloat16)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    r"""The dtype the ops compute in for inputs of :obj:`dtype`: float32 for
    half / bfloat16, float64 for integer positions (exact up to
    :math:`2^{53}`), :obj:`dtype` itself otherwise."""
    if dtype in LOW_PRECISION:
        return torch.float32
    if not dtype.is_floating_point:
        return torch.float64
    return dtype


def upcast(x: Tensor) -> Tensor:
    r""":obj:`x` in :func:`compute_dtype` (no copy when it already is)."""
    return x.to(compute_dtype(x.dtype))


def check_points(x: Tensor, name: str, fn: str,
                 allow_integer: bool = False) -> Tensor:
    r"""Validates a point / feature matrix and returns it as ``[N, D]``
    (a 1-D input is read as ``[N, 1]``, as in :obj:`torch_cluster`).
    Floating point dtypes (half and bfloat16 included) are accepted, integer
    ones too if :obj:`allow_integer`."""
    if not isinstance(x, Tensor):
        raise TypeError(f"'{fn}' expected '{name}' to be a torch.Tensor "
                        f"(got {type(x).__name__})")
    integer = not (x.is_floating_point() or x.is_complex()
                   or x.dtype == torch.bool)
    if not (x.is_floating_point() or (allow_integer and integer)):
        kind = "a floating point or integer" if allow_integer else \
            "a floating point"
        raise TypeError(f"'{fn}' expected '{name}' to be {kind} tensor "
                        f"(got dtype {x.dtype}); convert it with "
                        f"{name}.float()")
    if x.dim() == 1:
        x = x.view(-1, 1)
    if x.dim() != 2:
        raise ValueError(f"'{fn}' expected '{name}' with shape [num_points, "
                         f"num_dims] (got {list(x.shape)})")
    if x.numel() > 0 and not bool(torch.isfinite(x).all()):
        raise ValueError(f"'{fn}' found NaN or infinite coordinates in "
                         f"'{name}'")
    return x


def check_positive_int(value, name: str, fn: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"'{fn}' expected '{name}' to be an int "
                        f"(got {type(value).__name__})")
    if value <= 0:
        raise ValueError(f"'{fn}' expected '{name}' > 0 (got {value})")
    return value


def check_batch(batch: Optional[Tensor], num_points: int, name: str,
                fn: str, device: torch.device) -> Optional[Tensor]:
    r"""Validates a batch vector: 1-D integer, one entry per point,
    non-negative and sorted (as produced by PyG's :class:`Batch`)."""
    if batch is None:
        return None
    if not isinstance(batch, Tensor):
        raise TypeError(f"'{fn}' expected '{name}' to be a torch.Tensor "
                        f"(got {type(batch).__name__})")
    if batch.is_floating_point() or batch.is_complex() or \
            batch.dtype == torch.bool:
        raise TypeError(f"'{fn}' expected '{name}' to be an integer tensor "
                        f"(got dtype {batch.dtype})")
    if batch.dim() != 1 or batch.numel() != num_points:
        raise ValueError(f"'{fn}' expected '{name}' with shape "
                         f"[{num_points}] (got {list(batch.shape)})")
    batch = batch.to(device=device, dtype=torch.long)
    if batch.numel() > 0:
        if int(batch.min()) < 0:
            raise ValueError(f"'{fn}' expected non-negative entries in "
                             f"'{name}' (got {int(batch.min())})")
        if bool((batch[1:] < batch[:-1]).any()):
            raise ValueError(f"'{fn}' expected '{name}' to be sorted in "
                             f"ascending order (as PyG's Batch builds it)")
    return batch


def batch_to_ptr(batch: Optional[Tensor], num_points: int,
                 batch_size: int) -> List[int]:
    r"""Returns the CSR pointer of a sorted batch vector as a Python list of
    length ``batch_size + 1``."""
    if batch is None:
        return [0, num_points]
    counts = torch.bincount(batch, minlength=batch_size)[:batch_size]
    ptr = [0]
    for c in counts.tolist():
        ptr.append(ptr[-1] + c)
    return ptr


def infer_batch_size(fn: str, batch_size: Optional[int],
                     *batches: Optional[Tensor]) -> int:
    if batch_size is not None:
        check_positive_int(batch_size, "batch_size", fn)
    found = 1 if all(b is None for b in batches) else 0
    for b in batches:
        if b is not None and b.numel() > 0:
            found = max(found, int(b.max()) + 1)
    if batch_size is None:
        return found
    if found > batch_size:
        raise ValueError(f"'{fn}' got batch_size={batch_size} but the batch "
                         f"vectors hold {found} examples")
    return batch_size


def plan_blocks(ptr_x: List[int], ptr_y: List[int],
                block_size: int) -> List[Tuple[int, int, int, int, bool]]:
    r"""Splits the query rows into blocks whose distance matrix against the
    matching range of :obj:`x` holds at most ``block_size`` entries (a single
    row is always allowed).

    Consecutive small examples are grouped (cross-example pairs are masked),
    a large example is split into row chunks. Returns tuples
    ``(y_start, y_end, x_start, x_end, single_example)``."""
    blocks = []
    num_examples = len(ptr_y) - 1
    b = 0
    while b < num_examples:
        ny = ptr_y[b + 1] - ptr_y[b]
        nx = ptr_x[b + 1] - ptr_x[b]
        if ny == 0 or nx == 0:
            b += 1
            continue
        if ny * nx >= block_size:  # Split this example by rows.
            rows = max(1, block_size // nx)
            for s in range(ptr_y[b], ptr_y[b + 1], rows):
                blocks.append((s, min(s + rows, ptr_y[b + 1]), ptr_x[b],
                               ptr_x[b + 1], True))
            b += 1
            continue
        e = b + 1  # Greedily group the following examples.
        while e < num_examples:
            rows = ptr_y[e + 1] - ptr_y[b]
            cols = ptr_x[e + 1] - ptr_x[b]
            if rows * cols > block_size:
                break
            e += 1
        blocks.append((ptr_y[b], ptr_y[e], ptr_x[b], ptr_x[e], e == b + 1))
        b = e
    return blocks


def pairwise_distance(y: Tensor, x: Tensor, cosine: bool = False) -> Tensor:
    r"""Distances ``[M, N]`` between the rows of ``y [M, D]`` and ``x [N, D]``.

    Euclidean distances with :math:`D \leq 8` use the exact difference-based
    kernel of :func:`torch.cdist` (no :math:`\|a\|^2 + \|b\|^2 - 2ab`
    cancellation); larger :math:`D` centre the block first and use the matrix
    product form. ``cosine=True`` returns :math:`1 - \cos(y_i, x_j)`."""
    if cosine:
        yn = torch.nn.functional.normalize(y, dim=-1)
        xn = torch.nn.functional.normalize(x, dim=-1)
        return 1.0 - yn @ xn.t()
    if x.size(1) <= 8:
        return torch.cdist(y.unsqueeze(0), x.unsqueeze(0),
                           compute_mode="donot_use_mm_for_euclid_dist")[0]
    center = x.mean(dim=0, keepdim=True)
    return torch.cdist((y - center).unsqueeze(0), (x - center).unsqueeze(0),
                       compute_mode="use_mm_for_euclid_dist")[0]


def smallest_k(dist: Tensor, k: int) -> Tuple[Tensor, Tensor]:
    r"""The ``k`` smallest entries of each row of ``dist [R, C]`` (``k <= C``),
    sorted by value with ties broken by the lower column index, independent
    of :func:`torch.topk`'s internal order. Returns ``(values, index)``."""
    if k < dist.size(1):
        # One extra value tells whether the k-th is tied with an unselected
        # entry: such rows need a full stable sort to keep the lowest indices.
        # Infinite k-th values (masked entries) are dropped by the callers,
        # so they are never ambiguous.
        vals, idx = dist.topk(k + 1, dim=1, largest=False, sorted=True)
        ambiguous = (vals[:, k] == vals[:, k - 1]) & torch.isfinite(vals[:, k])
        vals, idx = vals[:, :k].contiguous(), idx[:, :k].contiguous()
    else:
        vals, idx = dist.sort(dim=1, stable=True)
        ambiguous = torch.zeros(dist.size(0), dtype=torch.bool,
                                device=dist.device)
    if bool(ambiguous.any()):
        rows = ambiguous.nonzero().view(-1)
        s_vals, s_idx = dist[rows].sort(dim=1, stable=True)
        vals[rows] = s_vals[:, :k]
        idx[rows] = s_idx[:, :k]
    # Canonical order inside the selection: by value, ties by index.
    idx, perm = idx.sort(dim=1)
    vals = vals.gather(1, perm)
    vals, perm = vals.sort(dim=1, stable=True)
    idx = idx.gather(1, perm)
    return vals, idx


def drop_self_and_cap(query: Tensor, cand: Tensor,
                      cap: int) -> Tuple[Tensor, Tensor]:
    r"""Removes the pairs ``query == cand`` and keeps the first :obj:`cap`
    remaining pairs of each query, in the given order (used on
    :obj:`torch_cluster`'s results, searched with one spare slot for the
    self match: :obj:`torch_cluster` 1.6.3's graph functions drop the self
    match afterwards and so return :obj:`cap` + 1 neighbours when it was not
    among those found)."""
    mask = query != cand
    query, cand = query[mask], cand[mask]
    if query.numel() == 0:
        return query, cand
    order = torch.sort(query, stable=True).indices
    query, cand = query[order], cand[order]
    first = torch.searchsorted(query, query)  # Start of each query's run.
    keep = torch.arange(query.numel(), device=query.device) - first < cap
    return query[keep], cand[keep]


def num_samples(deg: Tensor, ratio: float) -> Tensor:
    r"""``ceil(ratio * deg)`` computed in float32, exactly as
    :obj:`torch_cluster.fps` does."""
    r = torch.tensor(ratio, dtype=torch.float32, device=deg.device)
    return (deg.to(torch.float32) * r).ceil().to(torch.long)


__all__ = ["DEFAULT_BLOCK_SIZE", "BACKENDS", "NEIGHBOR_BACKENDS",
           "SCIPY_MAX_DIM", "resolve_backend", "resolve_neighbor_backend",
           "LOW_PRECISION", "compute_dtype", "upcast", "check_points",
           "check_positive_int", "check_batch",
           "batch_to_ptr", "infer_batch_size", "plan_blocks",
           "pairwise_distance", "smallest_k", "drop_self_and_cap",
           "num_samples"]
