r"""Sequences as path graphs: time series to :class:`~torch_geometric.data.Data` and back.

Layout of a sequence ``Data`` (see section 5.7 of the GDL book, "Sequences and
time warping"):

* ``x [N, C]``: the signal, one node per time step, the nodes of a sequence
  stored consecutively and in time order (``N = T``, or ``T_1 + ... + T_B``
  when several sequences are stored in one ``Data``);
* ``edge_index [2, N - B]``: the path graph, an edge ``t -> t + 1`` between
  consecutive steps of the same sequence (messages flow forward in time);
* ``t [N]`` (long): the time stamp of every node, its index within its
  sequence. :class:`~gdl_pyg.groups.TimeWarping` repeats node attributes, so
  after a warp ``t`` still holds the *original* clock: the repeated copies of
  a step share its time stamp (see :func:`warp_step_sizes`);
* ``batch [N]`` when several sequences are stored in one ``Data``.

Layers read the sequences off ``edge_index`` alone (:func:`sequence_layout`):
a node without an incoming edge starts a new sequence.
"""
from typing import NamedTuple, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor
from torch_geometric.data import Data

from gdl_pyg.groups.time_warping import path_edge_index
from gdl_pyg.utils import check_edge_index

__all__ = ["sequence_to_data", "data_to_sequence", "sequence_layout", "SequenceLayout",
           "warp_step_sizes"]


class SequenceLayout(NamedTuple):
    r"""Where the nodes of a sequence ``Data`` sit in a padded
    ``[max_length, num_sequences]`` table (see :func:`sequence_layout`).

    Attributes:
        seq (Tensor): ``[N]`` the sequence of every node.
        pos (Tensor): ``[N]`` the position of every node in its sequence.
        lengths (Tensor): ``[S]`` the length of every sequence.
        start (Tensor): ``[S]`` the index of the first node of every sequence.
        last (Tensor): ``[S]`` the index of the last node of every sequence.
        num_sequences (int): ``S``.
        max_length (int): ``T``, the length of the longest sequence.
    """
    seq: Tensor
    pos: Tensor
    lengths: Tensor
    start: Tensor
    last: Tensor
    num_sequences: int
    max_length: int


def _as_2d(x: Tensor, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"'sequence_to_data' expected {name} to be a torch.Tensor "
                        f"(got {type(x).__name__})")
    if x.dim() == 1:
        x = x.unsqueeze(-1)
    if x.dim() != 2:
        raise ValueError(f"'sequence_to_data' expected {name} of shape [T, C] or [T] "
                         f"(got shape {list(x.shape)})")
    if x.size(0) == 0:
        raise ValueError(f"'sequence_to_data' received an empty sequence ({name} has shape "
                         f"{list(x.shape)})")
    return x


def sequence_to_data(x: Union[Tensor, Sequence[Tensor]],
                     lengths: Optional[Union[Tensor, Sequence[int]]] = None) -> Data:
    r"""Converts a sequence, or a batch of sequences, into a path-graph
    ``Data`` (see the module docstring for the layout).

    Args:
        x (torch.Tensor or list of torch.Tensor): one sequence ``[T, C]`` (or
            ``[T]``), a padded batch ``[B, T, C]`` (``batch_first``), or a list
            of sequences ``[T_i, C]`` of varying lengths.
        lengths (torch.Tensor or list of int, optional): the lengths of the
            sequences of a padded batch ``[B, T, C]``; padding beyond them is
            dropped. Only valid with a ``[B, T, C]`` tensor. (default: :obj:`None`:
            every sequence has length ``T``)

    Returns:
        ``Data`` with ``x``, ``edge_index`` and ``t``; with ``batch`` as well
        when :obj:`x` is a batch or a list (a batch of one included).
    """
    if isinstance(x, (list, tuple)):
        if lengths is not None:
            raise ValueError("'sequence_to_data' takes 'lengths' only with a padded "
                             "[B, T, C] tensor, not with a list of sequences")
        if len(x) == 0:
            raise ValueError("'sequence_to_data' received an empty list of sequences")
        seqs = [_as_2d(s, f"x[{i}]") for i, s in enumerate(x)]
        channels = {s.size(1) for s in seqs}
        if len(channels) != 1:
            raise ValueError(f"'sequence_to_data' expected sequences with one number of "
                             f"channels (got {sorted(channels)})")
        batched = True
    elif isinstance(x, Tensor):
        if x.dim() == 3:
            B, T = x.shape[:2]
            if B == 0 or T == 0:
                raise ValueError(f"'sequence_to_data' received an empty batch (shape "
                                 f"{list(x.shape)})")
            if lengths is None:
                lens = [T] * B
            else:
                lens_t = torch.as_tensor(lengths).view(-1)
                if lens_t.is_floating_point() or lens_t.numel() != B:
                    raise ValueError(f"Expected 'lengths' to hold {B} integers, one per "
                                     f"sequence (got {lens_t.tolist()})")
                lens = [int(v) for v in lens_t]
                if min(lens) < 1 or max(lens) > T:
                    raise ValueError(f"Expected lengths in 1..{T} (the padded length) "
                                     f"(got {lens})")
            seqs = [x[b, :lens[b]] for b in range(B)]
            batched = True
        elif x.dim() in (1, 2):
            if lengths is not None:
                raise ValueError("'sequence_to_data' takes 'lengths' only with a padded "
                                 f"[B, T, C] tensor (got shape {list(x.shape)})")
            seqs = [_as_2d(x, "x")]
            batched = False
        else:
            raise ValueError(f"'sequence_to_data' expected a sequence [T, C] or a padded "
                             f"batch [B, T, C] (got shape {list(x.shape)})")
    else:
        raise TypeError(f"'sequence_to_data' expected a torch.Tensor or a list of tensors "
                        f"(got {type(x).__name__})")

    device = seqs[0].device
    lens = torch.tensor([s.size(0) for s in seqs], device=device)
    batch = torch.arange(len(seqs), device=device).repeat_interleave(lens)
    start = torch.cumsum(lens, 0) - lens
    t = torch.arange(batch.numel(), device=device) - start[batch]
    data = Data(x=torch.cat(seqs, dim=0), edge_index=path_edge_index(batch), t=t)
    if batched:
        data.batch = batch
    return data


def sequence_layout(edge_index: Tensor, num_nodes: int) -> SequenceLayout:
    r"""Reads the sequences of a path-graph ``Data`` off its ``edge_index``.

    Every edge must join consecutive nodes, ``t -> t + 1`` (the layout made by
    :func:`sequence_to_data`, kept by PyG batching and by
    :class:`~gdl_pyg.groups.TimeWarping`); a node without an incoming edge
    starts a sequence.

    Args:
        edge_index (torch.Tensor): ``[2, E]`` path edges.
        num_nodes (int): the number of nodes ``N``.
    """
    check_edge_index(edge_index, None, "sequence_layout")
    if not isinstance(edge_index, Tensor) or edge_index.layout != torch.strided:
        raise TypeError(f"'sequence_layout' expected a dense 'edge_index' tensor of shape "
                        f"[2, num_edges] (got {type(edge_index).__name__} with layout "
                        f"{getattr(edge_index, 'layout', None)}); pass the path graph's "
                        f"edge_index")
    if num_nodes < 1:
        raise ValueError(f"Expected a sequence with at least one node (got {num_nodes})")
    src, dst = edge_index[0], edge_index[1]
    if not torch.compiler.is_compiling() and edge_index.numel() > 0:
        if bool(((dst - src) != 1).any()) or int(dst.max()) >= num_nodes or int(src.min()) < 0:
            raise ValueError("Expected a path graph whose edges join consecutive nodes "
                             "t -> t + 1 within the node range (as made by "
                             "'gdl_pyg.domains.sequence_to_data')")
    device = edge_index.device
    is_start = torch.ones(num_nodes, dtype=torch.bool, device=device)
    is_start[dst] = False
    seq = torch.cumsum(is_start.long(), 0) - 1
    idx = torch.arange(num_nodes, device=device)
    start_of_node = torch.cummax(torch.where(is_start, idx, torch.zeros_like(idx)), 0).values
    pos = idx - start_of_node
    num_sequences = int(is_start.sum())
    lengths = torch.bincount(seq, minlength=num_sequences)
    start = torch.cumsum(lengths, 0) - lengths
    return SequenceLayout(seq, pos, lengths, start, start + lengths - 1, num_sequences,
                          int(lengths.max()))


def data_to_sequence(data: Data, key: str = "x") -> Tuple[Tensor, Tensor]:
    r"""The inverse of :func:`sequence_to_data`: the node attribute ``key`` as
    a zero-padded batch.

    Returns:
        ``(padded [B, T, ...], lengths [B])`` with ``T`` the longest length
        and ``...`` the trailing shape of ``data[key]`` (``[B, T, C]`` for
        ``x [N, C]``); a single sequence comes back as a batch of one.
    """
    if key not in data or not isinstance(data[key], Tensor):
        raise ValueError(f"'data_to_sequence' expected a tensor attribute '{key}'")
    if "edge_index" not in data:
        raise ValueError("'data_to_sequence' expected a path graph with 'edge_index' "
                         "(as made by 'sequence_to_data')")
    x = data[key]
    if x.dim() == 0 or x.size(0) != data.num_nodes:
        raise ValueError(f"Expected '{key}' to have one row per node ({data.num_nodes}) "
                         f"(got shape {list(data[key].shape)})")
    lay = sequence_layout(data.edge_index, x.size(0))
    out = x.new_zeros(lay.num_sequences, lay.max_length, *x.shape[1:])
    out[lay.seq, lay.pos] = x
    return out, lay.lengths


def warp_step_sizes(t: Tensor, edge_index: Tensor, num_nodes: Optional[int] = None,
                    layout: Optional[SequenceLayout] = None,
                    dtype: Optional[torch.dtype] = None) -> Tensor:
    r"""The local rate :math:`d\tau/dt` of a time-warped sequence, from its
    time stamps.

    :class:`~gdl_pyg.groups.TimeWarping` repeats a time step ``k`` times and
    keeps its time stamp ``t``; each of the ``k`` copies then lasts ``1 / k``
    of an original step. Returns that duration for every node: ``1 / k`` for
    a node in a run of ``k`` consecutive nodes of one sequence sharing a time
    stamp (all ones on an unwarped sequence).

    Args:
        t (torch.Tensor): ``[N]`` time stamps.
        edge_index (torch.Tensor): ``[2, E]`` path edges.
        num_nodes (int, optional): ``N``. (default: :obj:`t.numel()`)
        layout (SequenceLayout, optional): :func:`sequence_layout` of
            :obj:`edge_index`, if already computed. (default: :obj:`None`)
        dtype (torch.dtype, optional): the floating dtype of the result.
            (default: :obj:`torch.get_default_dtype()`)
    """
    if not isinstance(t, Tensor) or t.dim() != 1:
        got = list(t.shape) if isinstance(t, Tensor) else type(t).__name__
        raise ValueError(f"Expected time stamps 't' of shape [num_nodes] (got {got})")
    n = t.numel() if num_nodes is None else num_nodes
    if t.numel() != n:
        raise ValueError(f"Expected {n} time stamps (got {t.numel()})")
    lay = sequence_layout(edge_index, n) if layout is None else layout
    new_run = torch.ones(n, dtype=torch.bool, device=t.device)
    new_run[1:] = t[1:] != t[:-1]
    new_run = new_run | (lay.pos == 0)
    run = torch.cumsum(new_run.long(), 0) - 1
    counts = torch.bincount(run)
    dtype = torch.get_default_dtype() if dtype is None else dtype
    return 1.0 / counts[run].to(dtype)

