r"""Farthest point sampling in pure torch, with the semantics of
:func:`torch_cluster.fps` / :func:`torch_geometric.nn.fps`."""
from typing import List, Optional, Union

import torch
from torch import Tensor

from gdl_pyg import typing as gdl_typing
from gdl_pyg.ops._utils import (LOW_PRECISION, batch_to_ptr, check_batch,
                                check_points, infer_batch_size, num_samples,
                                resolve_backend, upcast)
from gdl_pyg.utils import _eager

__all__ = ["fps"]


def _check_ratio(ratio, fn: str) -> Union[float, Tensor]:
    r"""A float in :math:`(0, 1]`, or a floating point tensor of such values
    with one entry or one per example (checked in :func:`_sample_counts`)."""
    if ratio is None:
        return 0.5
    if isinstance(ratio, Tensor):
        if not ratio.is_floating_point():
            raise TypeError(f"'{fn}' expected a floating point 'ratio' tensor "
                            f"(got dtype {ratio.dtype}); convert it with "
                            f"ratio.float()")
        if ratio.dim() > 1:
            raise ValueError(f"'{fn}' expected 'ratio' to be a float, a "
                             f"scalar tensor or a tensor of shape "
                             f"[num_examples] (got shape "
                             f"{list(ratio.shape)})")
        if ratio.numel() == 0:
            raise ValueError(f"'{fn}' expected 'ratio' with 1 or num_examples "
                             f"entries (got an empty tensor)")
        bad = ~((ratio > 0) & (ratio <= 1))
        if bool(bad.any()):
            raise ValueError(f"'{fn}' expected every 'ratio' in (0, 1] (got "
                             f"{ratio[bad].tolist()[:5]})")
        return ratio
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)):
        raise TypeError(f"'{fn}' expected 'ratio' to be a float or a tensor "
                        f"(got {type(ratio).__name__})")
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"'{fn}' expected 'ratio' in (0, 1] (got {ratio})")
    return float(ratio)


def _check_ptr(ptr, num_points: int, fn: str) -> List[int]:
    r"""Validates a CSR pointer (tensor or list of ints): 1-D, integer,
    starting at 0, non-decreasing and ending at :obj:`num_points`."""
    if isinstance(ptr, Tensor):
        if ptr.is_floating_point() or ptr.is_complex() or \
                ptr.dtype == torch.bool:
            raise TypeError(f"'{fn}' expected 'ptr' to be an integer tensor "
                            f"(got dtype {ptr.dtype}); convert it with "
                            f"ptr.long()")
        if ptr.dim() != 1:
            raise ValueError(f"'{fn}' expected 'ptr' with shape "
                             f"[num_examples + 1] (got {list(ptr.shape)})")
        values = ptr.tolist()
    elif isinstance(ptr, (list, tuple)):
        if not all(isinstance(v, int) and not isinstance(v, bool)
                   for v in ptr):
            raise TypeError(f"'{fn}' expected 'ptr' to be a list of ints "
                            f"(got {list(ptr)[:5]})")
        values = list(ptr)
    else:
        raise TypeError(f"'{fn}' expected 'ptr' to be a torch.Tensor or a "
                        f"list of ints (got {type(ptr).__name__})")
    if len(values) < 2:
        raise ValueError(f"'{fn}' expected 'ptr' with at least 2 entries, "
                         f"[0, ..., num_points] (got {values})")
    if values[0] != 0 or values[-1] != num_points:
        raise ValueError(f"'{fn}' expected 'ptr' to start at 0 and end at "
                         f"the number of points {num_points} (got "
                         f"ptr[0]={values[0]}, ptr[-1]={values[-1]}), e.g. "
                         f"batch=[0, 0, 1, 1, 1, 2] is ptr=[0, 2, 5, 6]")
    if any(b < a for a, b in zip(values[:-1], values[1:])):
        raise ValueError(f"'{fn}' expected 'ptr' to be non-decreasing (got "
                         f"{values[:10]}{'...' if len(values) > 10 else ''})")
    return values


def _sample_counts(deg: Tensor, ratio: Union[float, Tensor],
                   fn: str) -> Tensor:
    r"""``ceil(deg * ratio)`` per example, with :obj:`torch_cluster`'s
    arithmetic: the degrees in float32 times the ratio (a float becomes a
    0-dim tensor, so float32; a per-example float64 tensor promotes to
    float64)."""
    if isinstance(ratio, Tensor):
        if ratio.numel() not in (1, deg.numel()):
            raise ValueError(f"'{fn}' expected 'ratio' with 1 or "
                             f"num_examples={deg.numel()} entries (got "
                             f"{ratio.numel()}); pass 'batch_size' or 'ptr' "
                             f"if trailing examples are empty")
        r = ratio.to(deg.device)
        if ratio.dim() == 0 or r.dtype in LOW_PRECISION:
            r = r.to(torch.float32)
        return (deg.to(torch.float32) * r.reshape(-1)).ceil().to(torch.long)
    return num_samples(deg, ratio)


@torch.no_grad()
def _fps_torch(x: Tensor, ptr: List[int], deg: Tensor, n_out: Tensor,
               random_start: bool) -> Tensor:
    device = x.device
    num_examples = len(ptr) - 1
    max_deg, max_out = int(deg.max()), int(n_out.max())
    if max_out == 0:
        return torch.empty(0, dtype=torch.long, device=device)
    start_ptr = torch.tensor(ptr[:-1], dtype=torch.long, device=device)

    # Padded layout [B, D, max_deg] (the reduction over D is then a sum of
    # contiguous rows); padding gets distance -inf, never the arg-max.
    example = torch.repeat_interleave(
        torch.arange(num_examples, device=device), deg)
    local = torch.arange(x.size(0), device=device) - start_ptr[example]
    pos = x.new_zeros(num_examples, max_deg, x.size(1))
    pos[example, local] = x
    pos = pos.transpose(1, 2).contiguous()
    dist = x.new_full((num_examples, max_deg), float("-inf"))
    dist[example, local] = float("inf")

    if random_start:
        cur = (torch.rand(num_examples, device=device) * deg).long()
        cur = torch.minimum(cur, (deg - 1).clamp(min=0))
    else:
        cur = torch.zeros(num_examples, dtype=torch.long, device=device)
    out = torch.empty(num_examples, max_out, dtype=torch.long, device=device)
    out[:, 0] = cur
    arange = torch.arange(num_examples, device=device)
    for i in range(1, max_out):
        last = pos[arange, :, cur].unsqueeze(2)  # [B, D, 1]
        dist = torch.minimum(dist, (pos - last).pow_(2).sum(dim=1))
        cur = dist.argmax(dim=1)  # The first maximiser, as torch.argmax does.
        out[:, i] = cur
    keep = torch.arange(max_out, device=device).view(1, -1) < n_out.view(-1, 1)
    return (out + start_ptr.view(-1, 1))[keep]


@_eager
def fps(
    x: Tensor,
    batch: Optional[Tensor] = None,
    ratio: Optional[Union[float, Tensor]] = 0.5,
    random_start: bool = True,
    batch_size: Optional[int] = None,
    ptr: Optional[Union[Tensor, List[int]]] = None,
    *,
    backend: str = "auto",
) -> Tensor:
    r"""The farthest point sampling of `"PointNet++: Deep Hierarchical Feature
    Learning on Point Sets in a Metric Space"
    <https://arxiv.org/abs/1706.02413>`_, which iteratively samples the point
    farthest from the points sampled so far, separately in each example:

    .. math::
        s_1 \sim \mathcal{U}\{1, \ldots, n_b\}, \qquad
        s_{t+1} = \operatorname*{arg\,max}_{j} \min_{t' \leq t}
        \|\mathbf{x}_j - \mathbf{x}_{s_{t'}}\|_2,
        \qquad t < \lceil r_b \cdot n_b \rceil,

    as :func:`torch_cluster.fps`: :math:`\lceil r_b \cdot n_b \rceil`
    samples per example (with :obj:`torch_cluster`'s arithmetic: the sizes in
    float32 times the ratio, a per-example float64 :obj:`ratio` promoting to
    float64), squared distances, ties to the lowest index. The random start
    uses :func:`torch.rand` on the input's device (so
    :func:`torch.manual_seed` makes it reproducible; :obj:`torch_cluster`
    uses C's ``rand()``). All examples are processed together, one vectorised
    step per sample, in :math:`O(N \cdot \max_b \lceil r_b \cdot n_b
    \rceil)` time. Half and bfloat16 points are sampled in float32 (a float
    :obj:`ratio` is then rounded to float32, where :obj:`torch_cluster`
    rounds it to the dtype of :obj:`x`). Empty examples get no samples (they
    are dropped before dispatching to :obj:`torch_cluster`, whose kernel
    does not support them).

    Args:
        x (torch.Tensor): Node feature matrix
            :math:`\mathbf{X} \in \mathbb{R}^{N \times F}`.
        batch (torch.Tensor, optional): Sorted batch vector
            :math:`\mathbf{b} \in {\{ 0, \ldots, B-1\}}^N`.
            (default: :obj:`None`)
        ratio (float or torch.Tensor, optional): Sampling ratio in
            :math:`(0, 1]`, a float, a one-entry tensor or a tensor of shape
            :math:`[B]` with one ratio per example; :obj:`None` is
            :obj:`0.5`. (default: :obj:`0.5`)
        random_start (bool, optional): If :obj:`False`, starts from the first
            node of each example. (default: :obj:`True`)
        batch_size (int, optional): The number of examples :math:`B`.
            (default: :obj:`None`)
        ptr (torch.Tensor or [int], optional): The examples as a CSR pointer
            instead of :obj:`batch`, *e.g.*, :obj:`batch=[0, 0, 1, 1, 1, 2]`
            is :obj:`ptr=[0, 2, 5, 6]`: starts at 0, non-decreasing, ends at
            :math:`N`. If :obj:`batch` is given too, both must describe the
            same examples. (default: :obj:`None`)
        backend (str, optional): :obj:`"auto"`, :obj:`"torch"` or
            :obj:`"cluster"`. (default: :obj:`"auto"`)

    Returns:
        :class:`torch.LongTensor` of indices into :obj:`x`, example after
        example, each in sampling order.

    Shapes:
        - **input:** :math:`(N, F)`, :math:`(N)`, :math:`(B + 1)`
        - **output:** :math:`(\sum_b \lceil r_b \cdot n_b \rceil)`
    """
    fn = "fps"
    ratio = _check_ratio(ratio, fn)
    x = check_points(x, "x", fn)
    x = upcast(x)  # half / bfloat16 are sampled in float32
    batch = check_batch(batch, x.size(0), "batch", fn, x.device)
    if ptr is not None:
        ptr_list = _check_ptr(ptr, x.size(0), fn)
        if batch_size is not None and batch_size != len(ptr_list) - 1:
            raise ValueError(f"'{fn}' got batch_size={batch_size} but 'ptr' "
                             f"describes {len(ptr_list) - 1} examples")
        if batch is not None:
            deg = torch.tensor(ptr_list[1:], device=x.device) - \
                torch.tensor(ptr_list[:-1], device=x.device)
            expected = torch.repeat_interleave(
                torch.arange(deg.numel(), device=x.device), deg)
            if not torch.equal(batch, expected):
                raise ValueError(f"'{fn}' got 'batch' and 'ptr' describing "
                                 f"different examples; pass only one of "
                                 f"them")
    else:
        b = infer_batch_size(fn, batch_size, batch)
        ptr_list = batch_to_ptr(batch, x.size(0), b)
    deg = torch.tensor(ptr_list[1:], dtype=torch.long, device=x.device) - \
        torch.tensor(ptr_list[:-1], dtype=torch.long, device=x.device)
    n_out = _sample_counts(deg, ratio, fn)
    if resolve_backend(backend, fn) == "cluster":
        nonempty = deg > 0
        r = ratio
        if isinstance(ratio, Tensor):
            r = ratio.to(x.device)
            r = r[nonempty] if r.numel() > 1 else r
        cluster_ptr = torch.cat([deg.new_zeros(1),
                                 deg[nonempty].cumsum(0)])
        if cluster_ptr.numel() == 1:
            return torch.empty(0, dtype=torch.long, device=x.device)
        return gdl_typing.torch_cluster.fps(x, None, r, random_start, None,
                                            cluster_ptr)
    if x.size(0) == 0:
        return torch.empty(0, dtype=torch.long, device=x.device)
    return _fps_torch(x, ptr_list, deg, n_out, random_start)
