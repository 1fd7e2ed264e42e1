r"""Checks of one-dimensional index vectors (``batch``, ``cluster``) shared by
the layers and pooling operators of :mod:`gdl_pyg.nn`.

They complement :mod:`gdl_pyg.utils` (which checks ``edge_index`` and
features) and follow its cost policy: dtype and shape checks read metadata
only and always run; the range check (every entry non-negative, and below
:obj:`dim_size` when given) needs a minimum and a maximum, so it runs on the
CPU, on accelerators only while :func:`torch_geometric.is_debug_enabled` is
on, and never inside :func:`torch.compile`.
"""
from typing import Optional

import torch
from torch import Tensor

from gdl_pyg.utils import _debug_enabled, _is_compiling

__all__ = ["check_index"]


def check_index(index, num_rows: Optional[int], owner: str, name: str = "batch",
                dim_size: Optional[int] = None) -> None:
    r"""Raise a :class:`TypeError` / :class:`ValueError` unless :obj:`index`
    is a one-dimensional integer tensor of length :obj:`num_rows` whose
    entries lie in :obj:`[0, dim_size)` (only non-negative when
    :obj:`dim_size` is :obj:`None`). :obj:`None` passes (no index given).

    Args:
        index (torch.Tensor): The index vector, *e.g.* a batch vector
            assigning each node to its graph.
        num_rows (int, optional): The expected length (the number of nodes);
            no length check when :obj:`None`.
        owner (str): Name of the caller, for the message.
        name (str): Name of the argument, for the message.
        dim_size (int, optional): The number of groups (*e.g.* graphs) the
            entries index into.
    """
    if index is None:
        return
    if not isinstance(index, Tensor):
        raise TypeError(f"'{owner}' expected '{name}' to be a torch.Tensor of shape "
                        f"[num_nodes] (got {type(index).__name__})")
    dtype = index.dtype
    if dtype.is_floating_point or dtype.is_complex or dtype == torch.bool:
        raise TypeError(f"'{owner}' expected '{name}' to be of integer type (got "
                        f"'{dtype}'); convert it with {name}.long()")
    if index.dim() != 1:
        raise ValueError(f"'{owner}' expected '{name}' to be one-dimensional of shape "
                         f"[num_nodes] (got shape {list(index.shape)})")
    if num_rows is not None and index.size(0) != num_rows:
        raise ValueError(f"'{owner}' expected '{name}' with one entry per node, shape "
                         f"[{num_rows}] (got shape {list(index.shape)}); pass the '{name}' "
                         f"that belongs to these nodes")
    if index.numel() == 0 or _is_compiling() or \
            (index.device.type != "cpu" and not _debug_enabled()):
        return
    lo = int(index.min())
    if lo < 0:
        raise ValueError(f"'{owner}' found a negative entry ({lo}) in '{name}'; entries must "
                         f"be non-negative"
                         + (f" and lie in [0, {dim_size})" if dim_size is not None else ""))
    if dim_size is not None:
        hi = int(index.max())
        if hi >= dim_size:
            raise ValueError(f"'{owner}' found entry {hi} in '{name}' but expected entries in "
                             f"[0, {dim_size}); pass a larger size or fix '{name}'")
