r"""Farthest point sampling in pure torch, with the semantics of
:func:`torch_cluster.fps` / :func:`torch_geometric.nn.fps`."""
from typing import Optional

import torch
from torch import Tensor

from gdl_pyg import typing as gdl_typing
from gdl_pyg.ops._utils import (batch_to_ptr, check_batch, check_points,
                                infer_batch_size, num_samples,
                                resolve_backend)

__all__ = ["fps"]


def _check_ratio(ratio, fn: str) -> float:
    if isinstance(ratio, Tensor):
        if ratio.numel() != 1:
            raise ValueError(f"'{fn}' expected a scalar 'ratio' (got a tensor "
                             f"of shape {list(ratio.shape)})")
        ratio = ratio.item()
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)):
        raise TypeError(f"'{fn}' expected 'ratio' to be a float "
                        f"(got {type(ratio).__name__})")
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"'{fn}' expected 'ratio' in (0, 1] (got {ratio})")
    return float(ratio)


@torch.no_grad()
def _fps_torch(x: Tensor, ptr: list, ratio: float,
               random_start: bool) -> Tensor:
    device = x.device
    num_examples = len(ptr) - 1
    deg = torch.tensor([ptr[i + 1] - ptr[i] for i in range(num_examples)],
                       dtype=torch.long, device=device)
    n_out = num_samples(deg, ratio)
    max_deg, max_out = int(deg.max()), int(n_out.max())
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


def fps(
    x: Tensor,
    batch: Optional[Tensor] = None,
    ratio: float = 0.5,
    random_start: bool = True,
    batch_size: Optional[int] = None,
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
        \qquad t < \lceil \mathrm{ratio} \cdot n_b \rceil,

    as :func:`torch_cluster.fps`: :math:`\lceil \mathrm{ratio} \cdot n_b
    \rceil` (computed in float32) samples per example, squared distances,
    ties to the lowest index. The random start uses :func:`torch.rand` on the
    input's device (so :func:`torch.manual_seed` makes it reproducible;
    :obj:`torch_cluster` uses C's ``rand()``). All examples are processed
    together, one vectorised step per sample, in :math:`O(N \cdot \max_b
    \lceil \mathrm{ratio} \cdot n_b \rceil)` time.

    Args:
        x (torch.Tensor): Node feature matrix
            :math:`\mathbf{X} \in \mathbb{R}^{N \times F}`.
        batch (torch.Tensor, optional): Sorted batch vector
            :math:`\mathbf{b} \in {\{ 0, \ldots, B-1\}}^N`.
            (default: :obj:`None`)
        ratio (float, optional): Sampling ratio in :math:`(0, 1]`.
            (default: :obj:`0.5`)
        random_start (bool, optional): If :obj:`False`, starts from the first
            node of each example. (default: :obj:`True`)
        batch_size (int, optional): The number of examples :math:`B`.
            (default: :obj:`None`)
        backend (str, optional): :obj:`"auto"`, :obj:`"torch"` or
            :obj:`"cluster"`. (default: :obj:`"auto"`)

    Returns:
        :class:`torch.LongTensor` of indices into :obj:`x`, example after
        example, each in sampling order.

    Shapes:
        - **input:** :math:`(N, F)`, :math:`(N)`
        - **output:** :math:`(\sum_b \lceil \mathrm{ratio} \cdot n_b \rceil)`
    """
    fn = "fps"
    ratio = _check_ratio(ratio, fn)
    x = check_points(x, "x", fn)
    batch = check_batch(batch, x.size(0), "batch", fn, x.device)
    if resolve_backend(backend, fn) == "cluster":
        return gdl_typing.torch_cluster.fps(x, batch, ratio, random_start)
    if x.size(0) == 0:
        return torch.empty(0, dtype=torch.long, device=x.device)
    b = infer_batch_size(fn, batch_size, batch)
    return _fps_torch(x, batch_to_ptr(batch, x.size(0), b), ratio,
                      random_start)
