r"""Input checks shared by every layer, pooling operator and converter.

The checks follow :class:`torch_geometric.nn.conv.MessagePassing`'s own
(``Expected 'edge_index' to ...``) but name the layer and the fix.

**Cost.** Shape and dtype checks read metadata only and always run. The range
check (every index in ``[0, num_nodes)``) needs the minimum and maximum of
:obj:`edge_index`; on the CPU that is one cheap pass and it always runs, so an
out-of-range or negative index is a :class:`ValueError` instead of a silent
wrap-around or an :class:`IndexError` deep inside a scatter. On an
accelerator it would force a device synchronisation on the hot path, so there
it runs only while :func:`torch_geometric.is_debug_enabled` is on (``with
torch_geometric.debug(): ...``), as PyG does, and inside
:func:`torch.compile` it is skipped.
"""
from typing import Callable, Optional

import torch
from torch import Tensor

__all__ = ["check_edge_index", "check_channels", "check_features"]


def _eager(fn: Callable) -> Callable:
    r"""Runs :obj:`fn` eagerly under :func:`torch.compile` (one graph break at
    the call); :func:`torch.compiler.disable` keeps its name, docstring and
    signature. For functions whose
    outputs have data-dependent sizes throughout (the searches and samplings
    of :mod:`gdl_pyg.ops`, graph coarsening), or that call
    :obj:`torch_cluster`'s operators, which have no fake implementation to be
    traced with: a compiled model that calls them in ``forward`` (*e.g.*
    :class:`~gdl_pyg.nn.models.InteratomicPotential`) gets their eager
    results."""
    return torch.compiler.disable(fn)


def _is_compiling() -> bool:
    try:
        return bool(torch.compiler.is_compiling())
    except AttributeError:  # pragma: no cover - older torch
        return False


def _debug_enabled() -> bool:
    try:
        import torch_geometric
        return bool(torch_geometric.is_debug_enabled())
    except Exception:  # pragma: no cover
        return False


def check_edge_index(edge_index, num_nodes: Optional[int] = None, owner: str = "",
                     name: str = "edge_index",
                     num_dst_nodes: Optional[int] = None) -> None:
    r"""Raise a :class:`TypeError` / :class:`ValueError` unless
    :obj:`edge_index` is a :obj:`[2, E]` integer tensor whose source indices
    lie in :obj:`[0, num_nodes)` and target indices in
    :obj:`[0, num_dst_nodes)` (default :obj:`num_nodes`).

    Sparse adjacency inputs (:class:`torch_sparse.SparseTensor`, sparse
    :class:`torch.Tensor`) are accepted unchanged. See the module docstring
    for when the range check runs.

    Args:
        edge_index: The connectivity to check.
        num_nodes (int, optional): Number of source nodes; no range check
            when :obj:`None`.
        owner (str): Name of the caller, for the message (*e.g.*
            :obj:`"GCNConv"`).
        name (str): Name of the argument, for the message.
        num_dst_nodes (int, optional): Number of target nodes of a bipartite
            graph.
    """
    who = f"'{owner}' " if owner else ""
    if not isinstance(edge_index, Tensor):
        if type(edge_index).__name__ == "SparseTensor":
            return
        raise TypeError(f"{who}expected '{name}' to be a torch.Tensor of shape [2, num_edges] "
                        f"(got {type(edge_index).__name__})")
    if edge_index.layout != torch.strided:
        return
    if edge_index.dtype.is_floating_point or edge_index.dtype.is_complex \
            or edge_index.dtype == torch.bool:
        raise ValueError(f"{who}expected '{name}' to be of integer type (got "
                         f"'{edge_index.dtype}'); convert it with {name}.long()")
    if edge_index.dim() != 2:
        raise ValueError(f"{who}expected '{name}' to be two-dimensional of shape "
                         f"[2, num_edges] (got {edge_index.dim()} dimensions, shape "
                         f"{list(edge_index.shape)})")
    if edge_index.size(0) != 2:
        hint = (f"; it looks transposed, pass {name}.t()" if edge_index.size(1) == 2 else "")
        raise ValueError(f"{who}expected '{name}' to have size 2 in the first dimension, "
                         f"shape [2, num_edges] (got shape {list(edge_index.shape)}){hint}")
    if num_nodes is None or edge_index.numel() == 0:
        return
    if edge_index.device.type != "cpu" and not _debug_enabled():
        return
    if _is_compiling():
        return
    num_dst = num_nodes if num_dst_nodes is None else num_dst_nodes
    # one reduction and two reads in the common case (a third of three min /
    # max passes' cost on a small graph); the messages below say what is wrong
    if num_dst == num_nodes:
        lo, hi = torch.aminmax(edge_index)
        if int(lo) >= 0 and int(hi) < num_nodes:
            return
    lo = int(edge_index.min())
    if lo < 0:
        raise ValueError(f"{who}found a negative index ({lo}) in '{name}'; indices must "
                         f"lie in [0, num_nodes)")
    src_max = int(edge_index[0].max())
    dst_max = int(edge_index[1].max())
    if src_max >= num_nodes or dst_max >= num_dst:
        bad, n, row = ((src_max, num_nodes, "source (first row)") if src_max >= num_nodes
                       else (dst_max, num_dst, "target (second row)"))
        raise ValueError(f"{who}found {row} index {bad} in '{name}' but the graph has only "
                         f"{n} nodes (indices must lie in [0, {n}))")


def check_channels(x: Tensor, expected: int, owner: str, name: str = "x",
                   dim: int = -1) -> None:
    r"""Raise a :class:`ValueError` naming :obj:`owner` and both widths unless
    :obj:`x.size(dim) == expected` (a negative :obj:`expected`, as in PyG's
    lazy :obj:`in_channels=-1`, accepts any width)."""
    if expected is None or expected < 0:
        return
    if x.dim() == 0:
        raise ValueError(f"'{owner}' expected '{name}' with {expected} channels (got a scalar)")
    if x.size(dim) != expected:
        got = x.size(dim)
        raise ValueError(f"'{owner}' expected '{name}' with {expected} channels in dimension "
                         f"{dim} (got {got}, shape {list(x.shape)}); build the layer with "
                         f"in_channels={got} or fix the input")


def check_features(x, owner: str, name: str = "x", dims=(2,)) -> None:
    r"""Raise a :class:`TypeError` unless :obj:`x` is a floating-point
    :class:`torch.Tensor`, and a :class:`ValueError` unless it has one of the
    ranks in :obj:`dims`."""
    if not isinstance(x, Tensor):
        raise TypeError(f"'{owner}' expected '{name}' to be a torch.Tensor "
                        f"(got {type(x).__name__})")
    if not (x.dtype.is_floating_point or x.dtype.is_complex):
        raise TypeError(f"'{owner}' expected '{name}' to be floating point (got {x.dtype}); "
                        f"convert it with {name}.float()")
    if x.dim() not in tuple(dims):
        shapes = " or ".join(f"{d}-D" for d in dims)
        raise ValueError(f"'{owner}' expected '{name}' to be {shapes} (got shape "
                         f"{list(x.shape)})")
