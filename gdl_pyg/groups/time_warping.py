r"""Time warping of sequences (the symmetry that motivates gated RNNs)."""
from typing import Any, Mapping, Optional

import torch
from torch import Tensor
from torch_geometric.data import Data

from gdl_pyg.groups.base import TRIVIAL, Group, attr_level

__all__ = ["TimeWarping", "path_edge_index"]


def path_edge_index(batch: Tensor) -> Tensor:
    r"""Edges ``t -> t + 1`` between consecutive nodes of the same sequence."""
    n = batch.numel()
    src = torch.arange(n - 1, device=batch.device) if n > 1 else batch.new_zeros(0)
    same = batch[:-1] == batch[1:] if n > 1 else batch.new_zeros(0, dtype=torch.bool)
    src = src[same]
    return torch.stack([src, src + 1], dim=0)


class TimeWarping(Group):
    r"""Monotone reparametrisations of discrete time: every time step is
    repeated a random number of times in ``1..max_repeat``, slowing the
    sequence down locally (a discrete :math:`\tau` with :math:`\tau' \geq 1`).

    An element is a ``LongTensor`` of repeat counts, one per node (time step).
    On a sequence ``Data`` (path graph, see
    :func:`gdl_pyg.domains.sequence_to_data`), node-level attributes are
    repeated, ``edge_index`` is rebuilt as the path graph of the warped
    sequence and other edge attributes are dropped. Time warping is a monoid,
    not a group; layers can be *invariant* to it (a gated recurrence that
    learns to ignore repeated inputs), and tests check that within a tolerance.

    Args:
        max_repeat (int, optional): the largest repeat count. (default: :obj:`3`)
    """
    name = "TimeWarp"

    def __init__(self, max_repeat: int = 3):
        if max_repeat < 1:
            raise ValueError(f"Expected max_repeat >= 1 (got {max_repeat})")
        self.max_repeat = max_repeat

    def __repr__(self) -> str:
        return f"TimeWarping(max_repeat={self.max_repeat})"

    def sample(self, data: Optional[Data] = None,
               generator: Optional[torch.Generator] = None) -> Tensor:
        if data is None:
            raise ValueError("'TimeWarping.sample' needs the sequence 'data' it warps")
        return torch.randint(1, self.max_repeat + 1, (data.num_nodes,), generator=generator)

    def identity(self, data: Optional[Data] = None) -> Tensor:
        return torch.ones(data.num_nodes, dtype=torch.long)

    def act(self, g: Tensor, data: Data, fields: Optional[Mapping[str, Any]] = None) -> Data:
        counts = torch.as_tensor(g, dtype=torch.long)
        if counts.numel() != data.num_nodes or bool((counts < 1).any()):
            raise ValueError(f"Expected {data.num_nodes} repeat counts >= 1 "
                             f"(got {counts.numel()} values, min {int(counts.min())})")
        for key, rep in self._fields(fields).items():
            if rep not in TRIVIAL:
                raise ValueError(f"'TimeWarping' acts trivially on fibres; field '{key}' was "
                                 f"declared with representation {rep!r}")
        out = Data()
        # node k of the warped sequence is original node idx[k]; searchsorted is
        # much cheaper than repeat_interleave on small tensors
        total = int(counts.sum())
        idx = torch.searchsorted(counts.cumsum(0), torch.arange(total), right=True)
        for key in data.keys():
            level = attr_level(data, key)
            value = data[key]
            if level == "node":
                out[key] = value[idx.to(value.device)]
            elif level in ("edge", "edge_index"):
                continue
            else:
                out[key] = value
        batch = out.batch if "batch" in out else torch.zeros(total, dtype=torch.long)
        if "edge_index" in data:
            out.edge_index = path_edge_index(batch.to(data.edge_index.device))
        out.num_nodes = total
        return out
