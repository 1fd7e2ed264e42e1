r"""The message-passing flavour of graph neural networks (Bronstein et al. 2021,
sec. 5.3): :math:`h_u = \phi(x_u, \bigoplus_{v \in \mathcal{N}_u} \psi(x_u, x_v, e_{uv}))`.

This module also holds the small helpers shared by the three GNN flavours
(:func:`combine_update`, :func:`check_module`).
"""
import sys
import warnings
from typing import Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.nn.dense.linear import Linear
from torch_geometric.nn.inits import reset
from torch_geometric.typing import Adj, OptPairTensor, OptTensor, Size, SparseTensor
from torch_geometric.utils import is_torch_sparse_tensor, spmm, to_edge_index

from gdl_pyg.typing import WITH_TORCH_SPARSE
from gdl_pyg.utils import check_channels, check_edge_index, check_features

__all__ = ["MessagePassingConv", "combine_update", "check_module", "sparse_parts",
           "sparse_sum_nodes", "coo_entries", "check_decomposed_layers", "csr_adjacency",
           "eager_cpu_product", "csr_aggregate", "edge_aggregate", "relu_message_sum"]

COMBINE_MODES = ("none", "add", "cat")
MESSAGE_INPUTS = ("cat", "diff", "args")


def check_module(cls: str, name: str, module) -> Optional[torch.nn.Module]:
    r"""Raises a :class:`TypeError` unless ``module`` is a
    :class:`torch.nn.Module` or :obj:`None`."""
    if module is not None and not isinstance(module, torch.nn.Module):
        raise TypeError(f"'{cls}' expected '{name}' to be a torch.nn.Module or None "
                        f"(got {type(module).__name__})")
    return module


def check_choice(cls: str, name: str, value, choices) -> str:
    if value not in choices:
        raise ValueError(f"'{cls}' expected '{name}' to be one of {list(choices)} "
                         f"(got {value!r})")
    return value


def combine_update(mode: str, x_dst: OptTensor, m: Tensor,
                   eps: Optional[Tensor] = None) -> Tensor:
    r"""The input of the update function :math:`\phi(x_u, m_u)`: ``"none"``
    gives :math:`m_u`, ``"add"`` gives :math:`(1 + \epsilon) x_u + m_u` (GIN),
    ``"cat"`` gives :math:`[x_u \,\Vert\, m_u]`. Without target features
    (``x_dst`` is :obj:`None`, as in PyG's bipartite convention) it gives
    :math:`m_u`."""
    if mode == "none" or x_dst is None:
        return m
    if mode == "add":
        if x_dst.size(-1) != m.size(-1):
            raise ValueError(f"combine='add' needs node features and aggregated messages of "
                             f"the same width (got {x_dst.size(-1)} and {m.size(-1)}); use "
                             f"combine='cat' or a 'psi' that maps to the node width")
        return m + (x_dst if eps is None else (1 + eps) * x_dst)
    return torch.cat([x_dst, m], dim=-1)


def _pair(x: Union[Tensor, OptPairTensor]) -> Tuple[Tensor, OptTensor]:
    if isinstance(x, Tensor):
        return x, x
    if isinstance(x, (tuple, list)) and len(x) == 2 and isinstance(x[0], Tensor) \
            and (x[1] is None or isinstance(x[1], Tensor)):
        return x[0], x[1]
    raise TypeError(f"Expected 'x' to be a Tensor or a pair (x_src, x_dst) of Tensors "
                    f"(got {type(x).__name__})")


def spmm_nodes(adj_t: Adj, x: Tensor, reduce: str = "sum", node_dim: int = -2) -> Tensor:
    r""":func:`torch_geometric.utils.spmm` over the node dimension
    :obj:`node_dim` of :obj:`x` of any rank, e.g. PyG's static-graph layout
    :math:`(B, |\mathcal{V}|, F)`, as one sparse product on an
    :math:`(|\mathcal{V}|, B F)` view (PyG's own :obj:`spmm` takes matrices
    only)."""
    if x.dim() == 2 and node_dim in (0, -2):
        return spmm(adj_t, x, reduce=reduce)
    xt = x.movedim(node_dim, 0)
    out = spmm(adj_t, xt.reshape(xt.size(0), -1), reduce=reduce)
    # contiguous, as a scatter's output: the layers after it (a Linear on a strided
    # view takes another BLAS path) then compute what they compute after PyG's
    return out.view((out.size(0), ) + xt.shape[1:]).movedim(0, node_dim).contiguous()


def _is_sorted(index: Tensor) -> bool:
    r"""Whether :obj:`index` is sorted (non-decreasing); reads the data."""
    return index.numel() < 2 or bool((index[1:] >= index[:-1]).all())


#: Fewest entries for which :func:`index_argsort` sorts with NumPy's radix sort.
INDEX_ARGSORT_MIN = 512


def index_argsort(index: Tensor, bound: int) -> Tensor:
    r"""The stable :func:`torch.argsort` of a 1-D integer :obj:`index` whose
    values lie in :math:`[0, \text{bound})` (node indices; the caller
    guarantees the range), the same permutation, faster on the CPU.

    On one thread torch's CPU sort runs a comparison sort up to 32768
    entries, at 40-50 ns per entry from about 8000 on, and a radix sort
    beyond (12-18 ns). NumPy's stable sort of 16-bit keys is a radix sort at
    4-9 ns per entry at any size, so for :obj:`bound` up to :math:`2^{16}`
    the keys are sorted as :obj:`numpy.uint16`; up to :math:`2^{32}` and
    below :math:`2^{19}` entries, as two such passes (low then high half,
    about 8.5 ns per entry). Stable sorts of the same keys give the same
    permutation, so the result equals :obj:`torch.argsort(index,
    stable=True)` exactly. Other devices, shorter inputs (below
    :obj:`INDEX_ARGSORT_MIN`) and larger bounds take :func:`torch.argsort`."""
    n = index.numel()
    if index.device.type != "cpu" or index.dim() != 1 or n < INDEX_ARGSORT_MIN \
            or bound > (1 << 32) or (bound > (1 << 16) and n >= (1 << 19)):
        return torch.argsort(index, stable=True)
    a = index.numpy()
    if bound <= (1 << 16):
        perm = np.argsort(a.astype(np.uint16), kind="stable")
        return torch.from_numpy(perm.astype(np.int64, copy=False))
    low = np.argsort((a & 0xFFFF).astype(np.uint16), kind="stable")
    high = (a >> 16).astype(np.uint16)[low]
    return torch.from_numpy(low[np.argsort(high, kind="stable")].astype(np.int64, copy=False))


def _csr_structure(edge_index: Tensor, num_dst: int, flow: str
                   ) -> Tuple[Tensor, Tensor, OptTensor]:
    r"""The row pointers and column (source) indices of the CSR of the edges
    (a row per target), and the stable sort by target that ordered them
    (:obj:`None` when :obj:`edge_index` is sorted by target already)."""
    j, i = (0, 1) if flow == "source_to_target" else (1, 0)
    src, dst = edge_index[j], edge_index[i]
    perm: OptTensor = None
    if not _is_sorted(dst):
        perm = index_argsort(dst, num_dst)
        src, dst = src.index_select(0, perm), dst.index_select(0, perm)
    crow = torch.zeros(num_dst + 1, dtype=torch.long, device=edge_index.device)
    torch.cumsum(torch.bincount(dst, minlength=num_dst), 0, out=crow[1:])
    return crow, src, perm


def _csr_tensor(crow: Tensor, col: Tensor, values: Tensor, shape: Tuple[int, int]) -> Tensor:
    with warnings.catch_warnings():  # torch's "CSR support is in beta state", for users
        warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


def csr_adjacency(edge_index: Tensor, num_src: int, num_dst: int, flow: str,
                  dtype: torch.dtype, edge_weight: OptTensor = None) -> Tensor:
    r"""A dense :obj:`edge_index` as a :obj:`torch.sparse_csr` adjacency
    :math:`(|\mathcal{V}_{dst}|, |\mathcal{V}_{src}|)` (a row per target,
    PyG's :obj:`adj_t`) with the values :obj:`edge_weight` (unit values if
    :obj:`None`), so that a (weighted) sum of the source features over the
    edges is one sparse product instead of a gather into an
    :math:`E \times F` tensor and a scatter-add. The edges of a row keep
    their order in :obj:`edge_index` (a stable sort by target, skipped when
    :obj:`edge_index` is sorted by target already, as PyG's and gdl_pyg's
    converters write it): the product adds the messages of a target in the
    order of PyG's scatter, so the sums are the same bit for bit; duplicate
    edges stay parallel edges."""
    crow, col, perm = _csr_structure(edge_index, num_dst, flow)
    if edge_weight is None:
        values = torch.ones(col.numel(), dtype=dtype, device=edge_index.device)
    else:
        values = edge_weight if perm is None else edge_weight.index_select(0, perm)
    return _csr_tensor(crow, col, values, (num_dst, num_src))


def csr_aggregate(adj_t: Tensor, x: Tensor, aggr: str, node_dim: int = -2) -> Tensor:
    r"""The sum (:obj:`aggr` ``"add"`` / ``"sum"``) or mean (``"mean"``) of
    the messages over a :func:`csr_adjacency`: one sparse product, and for
    the mean a division by the number of entries of each row (at least 1),
    as PyG's scatter computes it, so that the results are the same bit for
    bit."""
    out = spmm_nodes(adj_t, x, "sum", node_dim)
    if aggr == "mean":
        crow = adj_t.crow_indices()
        shape = [1] * out.dim()
        shape[node_dim] = -1
        out = out / (crow[1:] - crow[:-1]).clamp(min=1).to(out.dtype).view(shape)
    return out


def _flow(target_row: int) -> str:
    return "source_to_target" if target_row == 1 else "target_to_source"


def _edge_sum_impl(edge_index: Tensor, x: Tensor, weight: Optional[Tensor], num_dst: int,
                   target_row: int, mean: bool) -> Tensor:
    # The sum (or mean) over the edges of weight * x[source] into the rows of
    # the targets edge_index[target_row]: x is (num_src, F) with weights (E) or
    # none, or (num_src, H, C) with a weight per edge and head (E, H). Sparse
    # products over the CSR of the edges.
    flow = _flow(target_row)
    if weight is None or weight.dim() == 1:
        adj_t = csr_adjacency(edge_index, x.size(0), num_dst, flow, x.dtype, weight)
        return csr_aggregate(adj_t, x, "mean" if mean else "sum", node_dim=0)
    crow, col, perm = _csr_structure(edge_index, num_dst, flow)
    values = weight if perm is None else weight.index_select(0, perm)
    out = x.new_empty((num_dst, ) + x.shape[1:])
    for head in range(x.size(1)):  # one product per head: the weights differ
        adj_t = _csr_tensor(crow, col, values[:, head].contiguous(), (num_dst, x.size(0)))
        out[:, head] = spmm(adj_t, x[:, head].contiguous())
    if mean:
        count = (crow[1:] - crow[:-1]).clamp(min=1).to(out.dtype)
        out = out / count.view((-1, ) + (1, ) * (out.dim() - 1))
    return out


@torch.library.custom_op("gdl_pyg::edge_sum", mutates_args=())
def _edge_sum(edge_index: Tensor, x: Tensor, weight: Optional[Tensor], num_dst: int,
              target_row: int, mean: bool) -> Tensor:
    # _edge_sum_impl as one operator, opaque to torch.compile
    return _edge_sum_impl(edge_index, x, weight, num_dst, target_row, mean)


@_edge_sum.register_fake
def _(edge_index, x, weight, num_dst, target_row, mean):
    return x.new_empty((num_dst, ) + x.shape[1:])


def _edge_sum_setup(ctx, inputs, output) -> None:
    edge_index, x, weight, num_dst, target_row, mean = inputs
    ctx.save_for_backward(edge_index, x, weight)
    ctx.num_src, ctx.num_dst, ctx.target_row, ctx.mean = x.size(0), num_dst, target_row, mean


def _edge_sum_backward(ctx, grad: Tensor, op=None):
    # op: the sum that computes the gradient of x (differentiable, for a double
    # backward): the operator, or in eager mode _EdgeSum
    op = _edge_sum if op is None else op
    edge_index, x, weight = ctx.saved_tensors
    if ctx.mean:  # the mean divided each row by its number of entries (at least 1)
        count = torch.bincount(edge_index[ctx.target_row], minlength=ctx.num_dst)
        grad = grad / count.clamp(min=1).to(grad.dtype).view((-1, ) + (1, ) * (grad.dim() - 1))
    grad_x = grad_weight = None
    if ctx.needs_input_grad[1]:
        # the transposed product: the same edges, summed into their sources
        grad_x = op(edge_index, grad.contiguous(), weight, ctx.num_src, 1 - ctx.target_row,
                    False)
    if ctx.needs_input_grad[2]:
        src, dst = edge_index[1 - ctx.target_row], edge_index[ctx.target_row]
        grad_weight = (grad.index_select(0, dst) * x.index_select(0, src)).sum(-1)
    return None, grad_x, grad_weight, None, None, None


_edge_sum.register_autograd(_edge_sum_backward, setup_context=_edge_sum_setup)


class _EdgeSum(torch.autograd.Function):
    r"""``gdl_pyg::edge_sum`` in eager mode: the same forward and backward
    without the operator's dispatch, which cost about 0.1 ms per call and
    again per backward (a third of a small graph's layer). The forward takes
    ``ctx`` (no ``setup_context``): with one, every call binds its arguments
    through :func:`inspect.signature`, another 0.05 ms."""

    @staticmethod
    def forward(ctx, edge_index, x, weight, num_dst, target_row, mean):
        inputs = (edge_index, x, weight, num_dst, target_row, mean)
        _edge_sum_setup(ctx, inputs, None)
        return _edge_sum_impl(*inputs)

    @staticmethod
    def backward(ctx, grad):
        return _edge_sum_backward(ctx, grad, _EdgeSum.apply)


class _EdgeSumTransformable(torch.autograd.Function):
    r""":class:`_EdgeSum` with a ``setup_context``, which
    :mod:`torch.func`'s transforms (``grad``, ``jacrev``, ...) require."""

    @staticmethod
    def forward(edge_index, x, weight, num_dst, target_row, mean):
        return _edge_sum_impl(edge_index, x, weight, num_dst, target_row, mean)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _edge_sum_setup(ctx, inputs, output)
        ctx.save_for_forward(inputs[0], inputs[1], inputs[2])

    @staticmethod
    def backward(ctx, grad):
        return _edge_sum_backward(ctx, grad, _EdgeSumTransformable.apply)

    @staticmethod
    def jvp(ctx, d_edge_index, dx, dweight, *_):
        # bilinear in (x, weight): d out = sum(dx; weight) + sum(x; dweight)
        edge_index, x, weight = ctx.saved_tensors
        apply, args = _EdgeSumTransformable.apply, (ctx.num_dst, ctx.target_row, ctx.mean)
        out = None
        if dx is not None:
            out = apply(edge_index, dx, weight, *args)
        if dweight is not None:
            term = apply(edge_index, x, dweight, *args)
            out = term if out is None else out + term
        return out

    @staticmethod
    def vmap(info, in_dims, edge_index, x, weight, num_dst, target_row, mean):
        # the sum is linear in x: a batch of node features [N, B, ...] is one sum
        # of N rows of B times the width; batched edges or weights, one per sample
        apply = _EdgeSumTransformable.apply
        if in_dims[0] is None and in_dims[2] is None and (weight is None or weight.dim() == 1):
            xb = x.movedim(in_dims[1], 1)
            out = apply(edge_index, xb.reshape(xb.size(0), -1), weight, num_dst, target_row,
                        mean)
            return out.view((num_dst, ) + xb.shape[1:]), 1
        outs = []
        for b in range(info.batch_size):
            args = [a if d is None else a.select(d, b)
                    for a, d in zip((edge_index, x, weight), in_dims[:3])]
            outs.append(apply(*args, num_dst, target_row, mean))
        return torch.stack(outs), 0


def _edge_sum_op():
    r"""The sum over edges to call: the operator when traced by
    :func:`torch.compile` (one node of its graph), :class:`_EdgeSum` eagerly
    and :class:`_EdgeSumTransformable` under :mod:`torch.func`'s transforms."""
    if torch.compiler.is_compiling():
        return _edge_sum
    if torch._C._are_functorch_transforms_active():
        return _EdgeSumTransformable.apply
    return _EdgeSum.apply


class ConstantProduct(torch.autograd.Function):
    r"""``A @ x`` for a constant sparse ``A`` (no gradient), with the backward
    ``AT @ grad`` through its transpose ``AT``, precomputed (a CSR product
    both ways): an operator applied several times (a polynomial, a patch)
    sorts its edges once, not in every backward. ``AT`` may be :obj:`None`
    where no gradient of ``x`` is needed."""

    @staticmethod
    def forward(ctx, x: Tensor, A: Tensor, AT: Optional[Tensor]) -> Tensor:
        ctx.AT = AT
        # beta=0 ignores the (uninitialised) input; faster than A @ x, which
        # fills a zero result and copies the product into it
        return torch.addmm(x.new_empty(A.size(0), x.size(1)), A, x, beta=0)

    @staticmethod
    def backward(ctx, grad: Tensor):
        AT = ctx.AT
        return torch.addmm(grad.new_empty(AT.size(0), grad.size(1)), AT, grad,
                           beta=0), None, None


def edge_aggregate(edge_index: Tensor, x: Tensor, num_dst: int, flow: str = "source_to_target",
                   aggr: str = "sum", node_dim: int = -2, edge_weight: OptTensor = None
                   ) -> Tensor:
    r"""The sum (:obj:`aggr` ``"add"`` / ``"sum"``) or mean (``"mean"``) of
    the messages :math:`w_{ij} \mathbf{x}_j` over a dense
    :obj:`edge_index` (weights :obj:`edge_weight` of shape :math:`(E)`, or 1)
    into :obj:`num_dst` targets, over the node dimension :obj:`node_dim` of
    :obj:`x` (e.g. PyG's static-graph layout :math:`(B, |\mathcal{V}|, F)`);
    or, with weights per edge and head :math:`(E, H)` (attention), of
    :math:`w_{ij}^h \mathbf{x}_j^h` for node features :math:`(N, H, C)` with
    :obj:`node_dim=0`,
    as one sparse product over :func:`csr_adjacency` instead of PyG's gather
    into an :math:`E \times F` tensor and scatter-add: the result equals PyG's
    scatter bit for bit.

    Its backward is the same product over the transposed edges (the gradient
    of :obj:`x` is then PyG's bit for bit too) and, for weights that need
    one, a gather for their gradient; it is twice differentiable. Traced by
    :func:`torch.compile` it is the custom operator
    :obj:`torch.ops.gdl_pyg.edge_sum`, one call in the graph (no graph
    break); eagerly an :class:`torch.autograd.Function` with the same
    forward and backward, without the operator's dispatch; under
    :mod:`torch.func`'s transforms one with a ``jvp`` and a ``vmap`` rule as
    well (``grad``, ``jacrev``, ``jacfwd``, ``hessian`` and ``vmap`` work;
    the operator supported none of them)."""
    if aggr not in ("add", "sum", "mean"):
        raise ValueError(f"edge_aggregate() expected aggr 'add', 'sum' or 'mean' "
                         f"(got {aggr!r})")
    if flow not in ("source_to_target", "target_to_source"):
        raise ValueError(f"edge_aggregate() expected flow 'source_to_target' or "
                         f"'target_to_source' (got {flow!r})")
    target_row = 1 if flow == "source_to_target" else 0
    mean = aggr == "mean"
    op = _edge_sum_op()
    if edge_weight is not None and edge_weight.dim() == 2:
        if x.dim() != 3 or node_dim not in (0, -3) or x.size(1) != edge_weight.size(1):
            raise ValueError(f"edge_aggregate() takes weights per edge and head "
                             f"{list(edge_weight.shape)} with node features [num_nodes, "
                             f"{edge_weight.size(1)}, channels] and node_dim=0 (got "
                             f"{list(x.shape)}, node_dim={node_dim})")
        return op(edge_index, x, edge_weight, num_dst, target_row, mean)
    if x.dim() == 2 and node_dim in (0, -2):
        return op(edge_index, x, edge_weight, num_dst, target_row, mean)
    xt = x.movedim(node_dim, 0)
    out = op(edge_index, xt.reshape(xt.size(0), -1), edge_weight, num_dst, target_row, mean)
    # contiguous, as a scatter's output (see spmm_nodes)
    return out.view((num_dst, ) + xt.shape[1:]).movedim(0, node_dim).contiguous()


def _product_applies(x: Tensor, num_edges: int, node_dim: int,
                     min_elements: Optional[int] = None) -> bool:
    # CPU float32 / float64 features, and at least min_elements message elements
    # (edges times features per node; by default COMPILED_PRODUCT_MIN_ELEMENTS)
    per_node = x.numel() // max(x.size(node_dim), 1)
    if min_elements is None:
        min_elements = COMPILED_PRODUCT_MIN_ELEMENTS
    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) \
        and num_edges * per_node >= min_elements


@torch.compiler.assume_constant_result
def _num_threads() -> int:
    # read when dynamo traces (a constant of the compiled graph, no graph break)
    return torch.get_num_threads()


#: Fewest message elements (edges times features per node, signals included)
#: for which :func:`eager_cpu_product` sums a message with a weight per edge
#: (GCN coefficients, a diffusion operator, sphere rings) as a CSR product.
#: Below, the product's fixed costs (a CSR built in the call, another for the
#: backward, the sparse products' dispatch) exceed what PyG's gather,
#: multiplication and scatter cost. Measured forward and backward on one
#: thread (``ConvolutionalConv``, random and target-sorted edges, 1000 to
#: 32000 edges of 8 to 128 features): the two break even at about
#: :math:`2^{17}` elements (1000 edges of 128 features, 8000 of 16).
PRODUCT_MIN_MESSAGE_ELEMENTS = 131072

#: The same for unweighted sums and means (GIN) and attention (a weight per
#: edge and head, one product per head), where PyG's gather and scatter is
#: cheaper: they break even at about :math:`2^{19}` elements (4000 edges of
#: 128 features, 8000 of 64, 16000 of 32; ``MessagePassingConv``,
#: ``AttentionalConv`` with 4 heads).
PRODUCT_MIN_UNWEIGHTED_ELEMENTS = 524288

#: Fewest nonzeros of a torch CSR ``adj_t`` that :func:`sparse_sum_nodes` sums
#: as :func:`edge_aggregate` over its nonzeros rather than with torch's
#: :func:`torch.sparse.mm`, whose backward costs more from about 8000
#: nonzeros on, at any width (``ConvolutionalConv`` on weighted and
#: ``MessagePassingConv`` on unweighted CSR adjacencies).
PRODUCT_MIN_SPARSE_ENTRIES = 8192

#: Under :func:`torch.compile` on several threads (where the alternative is
#: inductor's scatter with atomic additions), the fewest message elements for
#: the product.
COMPILED_PRODUCT_MIN_ELEMENTS = 65536


def _product_min_elements(weighted: bool) -> int:
    if torch.compiler.is_compiling():
        return COMPILED_PRODUCT_MIN_ELEMENTS
    return PRODUCT_MIN_MESSAGE_ELEMENTS if weighted else PRODUCT_MIN_UNWEIGHTED_ELEMENTS


def eager_cpu_product(module: MessagePassing, edge_index, x: Tensor,
                      size: Tuple[Optional[int], Optional[int]],
                      edge_weight: OptTensor = None, weighted: Optional[bool] = None) -> bool:
    r"""Whether a layer sums its (weighted) message :math:`w_{ij}
    \mathbf{x}_j` over the dense :obj:`edge_index` as one sparse product
    (:func:`edge_aggregate`) instead of PyG's gather and scatter-add: on the
    CPU, for float32 / float64 features, a sum or mean aggregation, at least
    :obj:`PRODUCT_MIN_MESSAGE_ELEMENTS` message elements for a message with
    a weight per edge (:obj:`weighted`; by default whether
    :obj:`edge_weight` is given) and :obj:`PRODUCT_MIN_UNWEIGHTED_ELEMENTS`
    otherwise, a known number of
    targets :obj:`size[1]` (and :obj:`size[0]` unset or the number of nodes of
    :obj:`x`), and when nothing of PyG's :meth:`propagate` would be skipped
    (hooks, explanations, decomposed layers; see :func:`plain_propagate`).
    Weights must have the dtype of the features and need no gradient.

    In eager mode the product, with its CSR built in the call, runs a GIN
    layer's aggregation forward and backward about 5x faster than the gather
    and scatter on one thread (``scripts/bench_graph.py``). Under
    :func:`torch.compile` it is taken only when torch runs on more than one
    thread (:func:`torch.get_num_threads` when the layer is traced): on one
    thread inductor fuses the gather and the scatter into a loop that beats
    the product, on several it adds into the targets with atomic operations,
    which made compiled GIN and GCN layers 2.4x slower than eager ones on two
    threads, while the product is not."""
    if torch.compiler.is_compiling() and _num_threads() <= 1:
        return False
    if not isinstance(edge_index, Tensor) \
            or edge_index.layout != torch.strided or edge_index.dtype != torch.long \
            or edge_index.device.type != "cpu" or module.aggr not in ("add", "sum", "mean"):
        return False
    if size[1] is None or size[0] not in (None, x.size(module.node_dim)):
        return False
    if weighted is None:
        weighted = edge_weight is not None
    if not _product_applies(x, edge_index.size(1), module.node_dim,
                            _product_min_elements(weighted)):
        return False
    if edge_weight is not None and (edge_weight.dtype != x.dtype or edge_weight.dim() != 1
                                    or edge_weight.requires_grad):
        return False
    return plain_propagate(module)


SparseParts = Tuple[int, OptTensor, OptTensor, Tensor, OptTensor]


def sparse_parts(adj_t: Adj, values: bool = True) -> Optional[SparseParts]:
    r"""The number of rows and the dense tensors :obj:`(num_rows, crow, row,
    col, value)` behind a sparse :obj:`adj_t` for :func:`sparse_sum_nodes`
    (:obj:`crow` for a CSR tensor, :obj:`row` otherwise; :obj:`value` is
    :obj:`None` for a
    :class:`SparseTensor` without values), or :obj:`None` where there are
    none to use (CSC layout, an uncoalesced COO tensor, trainable or
    multi-dimensional values).
    With :obj:`values=False` the values are left out (:obj:`None`).

    :func:`torch.compile` cannot take sparse tensors (dynamo refuses to wrap
    them, and a view of their values carries the sparse tensor as its
    :obj:`_base`, which fails in dynamo's shape inference): a layer given one
    runs its own frame eagerly, and only functions it calls with dense
    tensors are compiled. These parts are what such a function receives."""
    if WITH_TORCH_SPARSE and isinstance(adj_t, SparseTensor):
        # the stored tensors as they are: torch_sparse's conversions between
        # row and rowptr are custom ops that dynamo cannot trace
        storage = adj_t.storage
        crow, row, col, value = storage._rowptr, storage._row, storage._col, storage._value
        if row is not None:
            crow = None
    elif is_torch_sparse_tensor(adj_t) and adj_t.layout == torch.sparse_csr:
        crow, row, col = adj_t.crow_indices(), None, adj_t.col_indices()
        value = adj_t.values().detach()  # drops the view's sparse _base
    elif is_torch_sparse_tensor(adj_t) and adj_t.layout == torch.sparse_coo \
            and adj_t.is_coalesced():  # (duplicates: summed, or one edge as a pattern)
        index = adj_t._indices()
        crow, row, col, value = None, index[0], index[1], adj_t._values()
    else:
        return None
    if not values:
        value = None
    elif value is not None and (value.requires_grad or value.dim() != 1):
        return None
    return int(adj_t.size(0)), crow, row, col, value


def is_uncoalesced_coo(adj_t) -> bool:
    r"""Whether :obj:`adj_t` is a :obj:`torch.sparse` COO tensor that is not
    coalesced (its :meth:`indices` and :meth:`values` raise)."""
    return is_torch_sparse_tensor(adj_t) and adj_t.layout == torch.sparse_coo \
        and not adj_t.is_coalesced()


def coo_entries(owner: str, adj_t: Tensor, flow: str = "source_to_target"
                ) -> Tuple[Tensor, Tensor]:
    r"""The edges of an uncoalesced :obj:`torch.sparse` COO :obj:`adj_t`
    (row = target) as PyG's :class:`~torch_geometric.nn.conv.MessagePassing`
    reads them (:func:`~torch_geometric.utils.to_edge_index`): every stored entry is an
    edge, in storage order, so duplicate entries are parallel edges whose
    messages are summed. Returns :obj:`(edge_index, values)`, with
    :obj:`edge_index` of shape :math:`(2, E)` source first and the values of
    the entries (not differentiable: torch reads the entries of an
    uncoalesced tensor only without autograd).

    Neither coalesces :obj:`adj_t` nor flags it coalesced: PyG's
    :func:`~torch_geometric.utils.to_edge_index` flags the caller's tensor
    coalesced in place, after which torch takes its unsorted, duplicated
    indices for sorted and unique."""
    if flow != "source_to_target":
        raise ValueError(f"'{owner}' cannot take a sparse adjacency with "
                         f"flow='{flow}' (as PyG's MessagePassing); pass the transposed "
                         f"adjacency (adj_t.t()) with flow='source_to_target'")
    return adj_t._indices().flip(0), adj_t._values()


def check_decomposed_layers(owner: str, decomposed_layers, aggr_module) -> None:
    r"""Raises a :class:`ValueError` unless :obj:`decomposed_layers` (PyG's
    feature decomposition of :meth:`propagate`) is a positive int and, when
    above 1, the aggregation :obj:`aggr_module` reduces every feature on its
    own (sum, mean, max, min, mul, var, std): only then do the feature chunks,
    aggregated one by one and concatenated, give the undecomposed result
    (other :class:`~torch_geometric.nn.aggr.Aggregation` modules may mix,
    widen or reorder the features)."""
    if not isinstance(decomposed_layers, int) or isinstance(decomposed_layers, bool) \
            or decomposed_layers < 1:
        raise ValueError(f"'{owner}' expected 'decomposed_layers' to be a positive int "
                         f"(got {decomposed_layers!r})")
    if decomposed_layers > 1 and type(aggr_module) not in _feature_wise_aggrs():
        raise ValueError(f"'{owner}' supports decomposed_layers > 1 only with a feature-wise "
                         f"aggregation ('add', 'sum', 'mean', 'max', 'min', 'mul', 'var', "
                         f"'std'), got {aggr_module}; use decomposed_layers=1")


def _feature_wise_aggrs():
    from torch_geometric.nn import aggr
    return (aggr.SumAggregation, aggr.MeanAggregation, aggr.MaxAggregation,
            aggr.MinAggregation, aggr.MulAggregation, aggr.VarAggregation,
            aggr.StdAggregation)


def parts_row(parts: SparseParts) -> Tensor:
    r"""The row (target) index of every nonzero of :func:`sparse_parts`."""
    _, crow, row, col, _ = parts
    return torch.ops.aten._convert_indices_from_csr_to_coo(crow, col)[0] if row is None \
        else row


def sparse_sum_nodes(adj_t: Adj, x: Tensor, node_dim: int = -2,
                     parts: Optional[SparseParts] = None, pre: OptTensor = None,
                     post: OptTensor = None, loop: OptTensor = None,
                     use_values: bool = True) -> Tensor:
    r"""The sum aggregation :math:`\mathbf{s}_{post} \odot A (\mathbf{s}_{pre}
    \odot \mathbf{X}) + \boldsymbol{\ell} \odot \mathbf{X}` over the node
    dimension of :obj:`x` (node vectors :obj:`pre`, :obj:`post` and
    :obj:`loop` of shape :math:`(N)` are optional; :obj:`loop` needs a square
    :obj:`adj_t`; :obj:`use_values=False` takes the pattern of :obj:`adj_t`
    with unit weights).

    Eagerly this is one sparse matrix product (:func:`spmm_nodes`). Traced
    by :func:`torch.compile` and given the :obj:`parts` of
    :func:`sparse_parts`, it is the same sum as a gather and a scatter-add
    over the nonzeros, which inductor fuses with the scalings into one loop
    (and its backward into another) instead of a sparse product, a CSR
    transposition and separate elementwise passes; on one thread only, since
    on several inductor's scatter adds with atomics: there the nonzeros go
    to :func:`edge_aggregate` (the sparse product as one operator in the
    compiled graph)."""
    shape = [1] * x.dim()
    shape[node_dim] = -1
    if parts is not None and torch.compiler.is_compiling() \
            and node_dim in (-2, x.dim() - 2):
        num_rows, crow, row, col, value = parts
        row = parts_row(parts)
        h = x if pre is None else pre.view(shape) * x
        weight = value if use_values else None
        if _num_threads() > 1 and _product_applies(h, col.numel(), node_dim) \
                and (weight is None or weight.dtype == h.dtype):
            # on several threads inductor's scatter adds with atomics: the sparse
            # product instead, as one opaque operator (see eager_cpu_product)
            out = edge_aggregate(torch.stack([col, row]), h, num_rows, node_dim=node_dim,
                                 edge_weight=weight)
        else:
            msg = h.index_select(-2, col)
            if weight is not None:
                msg = weight.unsqueeze(-1) * msg
            out = msg.new_zeros(x.shape[:-2] + (num_rows, x.size(-1))).index_add_(-2, row, msg)
    elif parts is not None and is_torch_sparse_tensor(adj_t) and adj_t.layout == torch.sparse_csr \
            and parts[3].numel() >= PRODUCT_MIN_SPARSE_ENTRIES \
            and _product_applies(x, parts[3].numel(), node_dim, 0) \
            and (not use_values or parts[4] is None or parts[4].dtype == x.dtype):
        # a torch CSR adj_t: the product over its nonzeros as edges, whose backward
        # (the same product over the transposed edges) beats torch's sparse.mm's
        weight = parts[4] if use_values else None
        h = x if pre is None else pre.view(shape) * x
        out = edge_aggregate(torch.stack([parts[3], parts_row(parts)]), h, parts[0],
                             node_dim=node_dim, edge_weight=weight)
    else:
        if not use_values:
            if WITH_TORCH_SPARSE and isinstance(adj_t, SparseTensor):
                adj_t = adj_t.set_value(None, layout=None)
            else:
                adj_t = _ones_like_sparse(adj_t, x.dtype)
        out = spmm_nodes(adj_t, x if pre is None else pre.view(shape) * x, "sum", node_dim)
    if post is not None:
        out = post.view(shape) * out
    if loop is not None:
        out = out + loop.view(shape) * x
    return out


def plain_propagate(module: MessagePassing) -> bool:
    r"""Whether PyG's :meth:`propagate` of :obj:`module` would only call its
    :meth:`message_and_aggregate` on a sparse adjacency: no hooks registered,
    no explanation running, no decomposed layers. Layers then call their
    sparse aggregation directly (PyG's :meth:`propagate` converts a
    :obj:`torch.sparse` adjacency to COO indices in every call, for nothing)."""
    if module._explain or module.decomposed_layers != 1:
        return False
    hooks = (module._propagate_forward_pre_hooks, module._propagate_forward_hooks,
             module._message_and_aggregate_forward_pre_hooks,
             module._message_and_aggregate_forward_hooks)
    return not any(len(h) > 0 for h in hooks)


def _plain_call(module: torch.nn.Module) -> bool:
    r"""Whether calling :obj:`module` runs its :meth:`forward` only (no hooks
    of its own or global ones), so a fused kernel may use its parameters."""
    from torch.nn.modules import module as nn_module
    return not (module._forward_hooks or module._forward_pre_hooks
                or nn_module._global_forward_hooks or nn_module._global_forward_pre_hooks)


def module_in_channels(module: Optional[torch.nn.Module]) -> Optional[int]:
    r"""The input width of :obj:`module` when it can be read off its first
    layer (:class:`torch.nn.Linear`, PyG's :class:`Linear` or :class:`MLP`, or
    a :class:`torch.nn.Sequential` starting with one of these), else
    :obj:`None` (also for lazy layers that have not seen an input yet)."""
    while isinstance(module, torch.nn.Sequential) and len(module) > 0:
        module = module[0]
    if isinstance(module, torch.nn.Linear):
        width = module.in_features
    elif isinstance(module, Linear):
        width = module.in_channels
    elif type(module).__name__ == "MLP" and hasattr(module, "lins") and len(module.lins) > 0:
        return module_in_channels(module.lins[0])
    else:
        return None
    return width if isinstance(width, int) and width > 0 else None


def check_module_input(owner: str, name: str, module: Optional[torch.nn.Module], width: int,
                       what: str) -> None:
    r"""Raises a :class:`ValueError` naming :obj:`owner`, the module and both
    widths when :obj:`module` (whose input width :func:`module_in_channels`
    reads) would be fed :obj:`width` channels made of :obj:`what`, instead of
    :class:`torch.nn.Linear`'s ``mat1 and mat2 shapes cannot be multiplied``."""
    expected = module_in_channels(module)
    if expected is not None and expected != width:
        raise ValueError(f"'{owner}' feeds '{name}' with {width} channels ({what}) but "
                         f"'{name}' expects {expected}; build '{name}' with {width} input "
                         f"channels or fix the input widths")


def check_size(owner: str, size) -> Optional[Tuple[int, int]]:
    r"""Returns :obj:`size` as a pair of (optional) ints, or raises a
    :class:`TypeError` naming what came in."""
    if size is None:
        return None
    if isinstance(size, (tuple, list, torch.Size)) and len(size) == 2 and all(
            s is None or (isinstance(s, int) and not isinstance(s, bool) and s >= 0)
            for s in size):
        return (size[0], size[1])
    raise TypeError(f"'{owner}' expected 'size' to be None or a pair (num_src_nodes, "
                    f"num_dst_nodes) of non-negative ints (got {size!r})")


def check_graph_input(owner: str, x_src: Tensor, x_dst: OptTensor, edge_index,
                      node_dim: int, size: Optional[Tuple[int, int]] = None,
                      dims=(2, 3)) -> None:
    r"""The checks every GNN flavour runs on its input: node features of a
    rank in :obj:`dims` (a 3-D :obj:`x` is PyG's static-graph layout
    :math:`(B, |\mathcal{V}|, F)`), source and target features of the same
    rank, and :obj:`edge_index` of shape :obj:`[2, E]` whose indices lie in
    the source and target node ranges (see :func:`gdl_pyg.utils.check_edge_index`
    for when the range check runs)."""
    check_features(x_src, owner, "x" if x_dst is x_src else "x[0]", dims)
    if x_dst is not None and x_dst is not x_src:
        check_features(x_dst, owner, "x[1]", dims)
        if x_dst.dim() != x_src.dim():
            raise ValueError(f"'{owner}' expected source and target node features of the "
                             f"same rank (got shapes {list(x_src.shape)} and "
                             f"{list(x_dst.shape)})")
    num_src = x_src.size(node_dim)
    num_dst = x_dst.size(node_dim) if x_dst is not None else None
    if size is not None:
        num_src = size[0] if size[0] is not None else num_src
        num_dst = size[1] if size[1] is not None else num_dst
    # an unknown number of targets (x=(x_src, None) without 'size') is inferred
    # by PyG from edge_index itself: there is nothing to check it against
    check_edge_index(edge_index, num_src, owner,
                     num_dst_nodes=num_dst if num_dst is not None else sys.maxsize)


def check_edge_features(owner: str, edge_index, edge_attr: OptTensor,
                        name: str = "edge_attr") -> None:
    r"""Raises a :class:`ValueError` unless :obj:`edge_attr` has one row per
    column of a dense :obj:`edge_index`."""
    if edge_attr is None or not isinstance(edge_index, Tensor) \
            or is_torch_sparse_tensor(edge_index):
        return
    if not isinstance(edge_attr, Tensor):
        raise TypeError(f"'{owner}' expected '{name}' to be a torch.Tensor or None "
                        f"(got {type(edge_attr).__name__})")
    if edge_attr.dim() == 0 or edge_attr.size(0) != edge_index.size(1):
        raise ValueError(f"'{owner}' expected '{name}' with one row per edge, shape "
                         f"[{edge_index.size(1)}, ...] for an edge_index of shape "
                         f"{list(edge_index.shape)} (got shape {list(edge_attr.shape)})")


class MessagePassingConv(MessagePassing):
    r"""The message-passing flavour of graph neural networks from the
    `"Geometric Deep Learning: Grids, Groups, Graphs, Geodesics, and Gauges"
    <https://arxiv.org/abs/2104.13478>`_ book (sec. 5.3), the most general
    permutation-equivariant local layer on a graph: a learned message
    :math:`\psi` of the sender, the receiver and the edge, a permutation
    invariant aggregation :math:`\bigoplus`, and an update :math:`\phi`

    .. math::
        \mathbf{h}_u = \phi\left(\mathbf{x}_u, \bigoplus_{v \in \mathcal{N}(u)}
        \psi(\mathbf{x}_u, \mathbf{x}_v, \mathbf{e}_{uv})\right).

    Both :math:`\psi` and :math:`\phi` are arbitrary user modules. With the
    defaults (:obj:`psi=None`) the message is :math:`\mathbf{x}_v`, or with edge
    features :math:`\mathrm{ReLU}(\mathbf{x}_v + \mathbf{\Theta}_e
    \mathbf{e}_{uv})`, and :obj:`combine="add"` adds :math:`(1 + \epsilon)
    \mathbf{x}_u`: with :obj:`phi=mlp` this is exactly
    :class:`~torch_geometric.nn.conv.GINEConv` (or
    :class:`~torch_geometric.nn.conv.GINConv` without edge features). With
    :obj:`psi=mlp, message_input="diff", combine="none", aggr="max"` it is
    :class:`~torch_geometric.nn.conv.EdgeConv`.

    Sparse adjacency (a :obj:`torch.sparse` tensor or a
    :class:`torch_sparse.SparseTensor`, transposed like PyG's :obj:`adj_t`) is
    accepted everywhere; edge features then come from its (2-d) values unless
    :obj:`edge_attr` is given. When :obj:`psi` is :obj:`None` and there are no
    edge features, the message is linear in :math:`\mathbf{x}_v` and the
    sparse-adjacency path is one sparse matrix product. Eagerly on the CPU,
    a dense :obj:`edge_index` with the sum or mean aggregation takes that
    path too (from :obj:`PRODUCT_MIN_UNWEIGHTED_ELEMENTS` edges times features
    on), through its CSR pattern built in the call (:func:`edge_aggregate`),
    instead of gathering an :math:`|\mathcal{E}| \times F` tensor and
    scattering it back: the same output and gradient of :obj:`x` bit for bit
    (the messages of a target are added in edge order), the parameters'
    gradients up to rounding. Compiled, the same holds on several threads
    (there inductor's scatter adds with atomics); on one thread inductor's
    fused gather and scatter is faster and stays. An uncoalesced COO
    tensor is read as PyG's :class:`~torch_geometric.nn.conv.MessagePassing`
    reads it: every stored entry is an edge, in storage order, so duplicate
    entries are parallel edges whose messages are summed (with unit values,
    the output of :class:`~torch_geometric.nn.conv.GINConv` on the same
    tensor). Its 2-d values (edge features) then cannot require gradients:
    torch reads the entries of an uncoalesced tensor without autograd, and a
    :class:`ValueError` says so.

    :obj:`decomposed_layers > 1` (PyG's feature decomposition) propagates
    :obj:`edge_index` input in that many chunks of the node features (and of
    the GINE edge term), with the same result; it needs the default message
    (:obj:`psi=None`) and a feature-wise aggregation. PyG's own
    :class:`~torch_geometric.nn.conv.GINConv` and
    :class:`~torch_geometric.nn.conv.GINEConv` fail on it (PyG cannot split the
    pair :obj:`(x_src, x_dst)` they propagate). Sparse input takes the fused
    path undecomposed, as in PyG.

    Under :func:`torch.compile`, :obj:`edge_index` input compiles without
    graph breaks, and the default message with edge features (GINE) is
    summed in one activation-checkpointed region: inductor fuses gather,
    ReLU and scatter-add, and the backward recomputes the ReLU pattern
    instead of storing an :math:`|\mathcal{E}| \times F` mask (PyG's
    :class:`~torch_geometric.nn.conv.GINEConv` stores it, and runs slower
    compiled than eagerly on CPU). Eagerly on the CPU, that sum (over an
    :obj:`edge_index`, or a sparse adjacency with edge features) is
    :func:`relu_message_sum`, over blocks of edges that are recomputed in the
    backward, so no :math:`|\mathcal{E}| \times F` tensor is allocated (PyG
    allocates five): PyG's additions in PyG's order, so the output and the
    input gradients equal :class:`~torch_geometric.nn.conv.GINEConv`'s bit for
    bit, and the edge Linear's gradients up to rounding. Dynamo takes no
    sparse tensors: given a
    sparse :obj:`adj_t`, the layer's own frame runs eagerly and the sum over
    the adjacency pattern is compiled from its dense parts
    (:func:`sparse_sum_nodes`). Every compiled sum is the sparse product
    on several threads (see :func:`eager_cpu_product`).

    Args:
        psi (torch.nn.Module, optional): the message function. It is called on
            :obj:`message_input`-dependent input (see below). (default:
            :obj:`None`, the GIN(E) message)
        phi (torch.nn.Module, optional): the update function, applied to the
            combination of :math:`\mathbf{x}_u` and the aggregated message
            chosen by :obj:`combine`. (default: :obj:`None`, the identity)
        aggr (str, optional): the aggregation :math:`\bigoplus`
            (:obj:`"add"`, :obj:`"mean"`, :obj:`"max"`, :obj:`"min"`, or any
            PyG aggregation). (default: :obj:`"add"`)
        combine (str, optional): the input of :math:`\phi`: :obj:`"add"`
            (:math:`(1 + \epsilon)\mathbf{x}_u + \mathbf{m}_u`), :obj:`"cat"`
            (:math:`[\mathbf{x}_u \Vert \mathbf{m}_u]`) or :obj:`"none"`
            (:math:`\mathbf{m}_u`). (default: :obj:`"add"`)
        message_input (str, optional): how :obj:`psi` is called:
            :obj:`"cat"` on :math:`[\mathbf{x}_u \Vert \mathbf{x}_v \Vert
            \mathbf{e}_{uv}]`, :obj:`"diff"` on :math:`[\mathbf{x}_u \Vert
            \mathbf{x}_v - \mathbf{x}_u \Vert \mathbf{e}_{uv}]`, :obj:`"args"`
            as :obj:`psi(x_i, x_j, edge_attr)` (with :obj:`edge_attr=None`
            when there are no edge features). (default: :obj:`"cat"`)
        eps (float, optional): :math:`\epsilon` of :obj:`combine="add"`.
            (default: :obj:`0.`)
        train_eps (bool, optional): makes :math:`\epsilon` trainable.
            (default: :obj:`False`)
        edge_dim (int, optional): edge feature width of the default message;
            edge features are then mapped to :obj:`in_channels` by a linear
            layer. (default: :obj:`None`)
        in_channels (int, optional): the node feature width, needed with
            :obj:`edge_dim` when :obj:`psi` is :obj:`None`. (default: :obj:`None`)
        **kwargs (optional): additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`.

    Like :class:`~torch_geometric.nn.conv.GINConv`, :obj:`forward(x,
    edge_index, size)` takes the size positionally (a tuple in the place of
    :obj:`edge_attr` is a size), and PyG's static-graph layout
    :math:`(B, |\mathcal{V}|, F)` works (edge features are shared by the
    :math:`B` signals). Other ranks, a malformed :obj:`edge_index` and
    widths that do not fit :obj:`in_channels`, :obj:`psi` or :obj:`phi`
    raise a :class:`ValueError` naming both widths.

    Shapes:
        - **input:**
          node features :math:`(|\mathcal{V}|, F_{in})`,
          :math:`(B, |\mathcal{V}|, F_{in})` (static graph) or
          :math:`((|\mathcal{V_s}|, F_{s}), (|\mathcal{V_t}|, F_{t}))`
          if bipartite,
          edge indices :math:`(2, |\mathcal{E}|)` or sparse adjacency
          :math:`(|\mathcal{V_t}|, |\mathcal{V_s}|)`,
          edge features :math:`(|\mathcal{E}|, D)` *(optional)*
        - **output:** node features :math:`(|\mathcal{V}|, F_{out})` or
          :math:`(|\mathcal{V}_t|, F_{out})` if bipartite
    """
    #: The symmetry group of the layer.
    group_name = "Permutations"

    def __init__(
        self,
        psi: Optional[torch.nn.Module] = None,
        phi: Optional[torch.nn.Module] = None,
        aggr: str = "add",
        combine: str = "add",
        message_input: str = "cat",
        eps: float = 0.,
        train_eps: bool = False,
        edge_dim: Optional[int] = None,
        in_channels: Optional[int] = None,
        **kwargs,
    ):
        super().__init__(aggr=aggr, **kwargs)
        name = type(self).__name__
        self.psi = check_module(name, "psi", psi)
        self.phi = check_module(name, "phi", phi)
        self.combine = check_choice(name, "combine", combine, COMBINE_MODES)
        self.message_input = check_choice(name, "message_input", message_input, MESSAGE_INPUTS)
        self.edge_dim = edge_dim
        self.in_channels = in_channels
        self.initial_eps = eps
        if train_eps:
            self.eps = torch.nn.Parameter(torch.empty(1))
        else:
            self.register_buffer("eps", torch.empty(1))
        if edge_dim is not None and psi is None:
            if in_channels is None:
                raise ValueError(f"'{name}' needs 'in_channels' to map edge features of width "
                                 f"edge_dim={edge_dim} onto node features (got None)")
            self.lin_edge = Linear(edge_dim, in_channels)
        else:
            self.lin_edge = None
        # The fused sparse path (`message_and_aggregate`) exists for the default,
        # linear message only; a user `psi` always takes the gather-scatter path.
        self.fuse = psi is None
        self._check_decomposed(self._decomposed_layers)
        self.reset_parameters()

    @property
    def decomposed_layers(self) -> int:
        r"""PyG's feature decomposition: the number of chunks of the node
        features that :obj:`edge_index` input is propagated in, one after the
        other (lower peak memory, the same output)."""
        return self._decomposed_layers

    @decomposed_layers.setter
    def decomposed_layers(self, decomposed_layers: int) -> None:
        # PyG's propagate would split every argument of a `*_j` message parameter
        # along the features, which fails on the pair x=(x_src, x_dst) (as for
        # PyG's GINConv) and would leave the GINE edge term whole: `forward`
        # splits the features itself, and PyG's generated propagate stays in place
        self._check_decomposed(decomposed_layers)
        self._decomposed_layers = decomposed_layers

    def _check_decomposed(self, decomposed_layers: int) -> None:
        name = type(self).__name__
        # (PyG's constructor sets decomposed_layers before the aggregation is
        # known to this class and before psi exists: both are checked again)
        check_decomposed_layers(name, decomposed_layers, getattr(self, "aggr_module", None)
                                if decomposed_layers > 1 else None)
        if decomposed_layers > 1 and self._modules.get("psi") is not None:
            raise ValueError(f"'{name}' supports decomposed_layers > 1 only with the default "
                             f"message (psi=None), which acts on every feature on its own; "
                             f"a 'psi' mixes the features: use decomposed_layers=1")
        if decomposed_layers > 1 and self._explain:
            raise ValueError(f"'{name}' cannot set decomposed_layers > 1 while explaining "
                             f"(PyG's explanations run undecomposed)")

    def reset_parameters(self):
        super().reset_parameters()
        for module in (self.psi, self.phi, self.lin_edge):
            reset(module)  # PyG's inits.reset: also resets children (e.g. Sequential)
        self.eps.data.fill_(self.initial_eps)

    def forward(self, x: Union[Tensor, OptPairTensor], edge_index: Adj,
                edge_attr: Union[OptTensor, Size] = None, size: Size = None) -> Tensor:
        r"""Runs the forward pass of the module.

        Args:
            x (torch.Tensor or (torch.Tensor, torch.Tensor)): node features
                :math:`(|\mathcal{V}|, F)`, PyG's static-graph layout
                :math:`(B, |\mathcal{V}|, F)` (one graph, :math:`B` signals),
                or a pair (source, target) for bipartite graphs.
            edge_index (torch.Tensor or SparseTensor): edge indices
                :math:`(2, |\mathcal{E}|)` or sparse adjacency :obj:`adj_t`.
            edge_attr (torch.Tensor, optional): edge features
                :math:`(|\mathcal{E}|, D)`. A pair of ints in this position
                is read as :obj:`size`, so that GINConv's positional
                :obj:`forward(x, edge_index, size)` works unchanged.
                (default: :obj:`None`)
            size ((int, int), optional): the shape of the adjacency.
                (default: :obj:`None`)
        """
        if edge_attr is None and size is None:
            out = self._plain_sum(x, edge_index)
            if out is not None:
                return out
        name = type(self).__name__
        if isinstance(edge_attr, (tuple, list, torch.Size)):
            # GINConv.forward(x, edge_index, size): a tuple is never an edge feature
            if size is not None:
                raise TypeError(f"'{name}' received a tuple {tuple(edge_attr)!r} as "
                                f"'edge_attr' and also 'size={size!r}'; pass the edge "
                                f"features as a Tensor (edge_attr=...) and the size once")
            edge_attr, size = None, edge_attr
        size = check_size(name, size)
        x_src, x_dst = _pair(x)
        if self.node_dim == -2:  # nodes in the second-last dimension, PyG's default
            dims = (2, 3)
        else:
            dims = tuple(range(abs(self.node_dim) + int(self.node_dim >= 0), 9))
        check_graph_input(name, x_src, x_dst, edge_index, self.node_dim, size, dims)
        if is_uncoalesced_coo(edge_index):
            # PyG's reading: one edge per stored entry (duplicates are parallel
            # edges), in storage order, as an edge_index of the same size
            adj_t = edge_index
            edge_index, values = coo_entries(name, adj_t, self.flow)
            size = (adj_t.size(1), adj_t.size(0))
            if edge_attr is None and values.dim() > 1:
                if adj_t.requires_grad:
                    raise ValueError(
                        f"'{name}' cannot read the edge features (values) of an "
                        f"uncoalesced torch.sparse COO adjacency differentiably (torch "
                        f"gives the entries of an uncoalesced tensor without autograd); "
                        f"pass adj_t.coalesce() (duplicate entries then become one edge with "
                        f"summed features) or an edge_index with edge_attr")
                edge_attr = values
        check_edge_features(name, edge_index, edge_attr)
        if edge_attr is None and WITH_TORCH_SPARSE and isinstance(edge_index, SparseTensor):
            edge_attr = edge_index.storage.value()
            if edge_attr is not None and edge_attr.dim() == 1:
                edge_attr = None
        elif edge_attr is None and is_torch_sparse_tensor(edge_index):
            values = edge_index.values()
            edge_attr = values if values.dim() > 1 else None
        edge_width = 0 if edge_attr is None else (1 if edge_attr.dim() == 1
                                                  else edge_attr.size(-1))
        if self.psi is None and self.lin_edge is not None and edge_attr is not None:
            check_channels(x_src, self.in_channels, name, "x")
            if edge_attr.dim() > 1:
                check_channels(edge_attr, self.edge_dim, name, "edge_attr")
        elif self.psi is not None and self.message_input != "args" and x_dst is not None:
            width = x_dst.size(-1) + x_src.size(-1) + edge_width
            what = (f"x_i {x_dst.size(-1)} + x_j {x_src.size(-1)}"
                    + (f" + edge_attr {edge_width}" if edge_width else ""))
            check_module_input(name, "psi", self.psi, width, what)
        x_msg = (x_src, x_dst)
        if self._compiled_relu_message(edge_index, edge_attr, x_src, x_dst, size):
            out = self._relu_message_sum(x_src, edge_index, edge_attr, x_dst, size)
            return self._update(x_dst, out)
        if self._eager_relu_message(edge_index, edge_attr, x_src, x_dst, size):
            out = self._fused_relu_message_sum(x_src, edge_index, edge_attr, x_dst, size)
            if out is not None:
                return self._update(x_dst, out)
        if self.psi is None and x_dst is not None:
            # The default message reads x_j (and e_ij) only: hand PyG no target
            # features, so that it never gathers x_i per edge (GINConv's cost),
            # and keep the number of targets through 'size' instead.
            num_dst = x_dst.size(self.node_dim)
            size = (None, num_dst) if size is None else \
                (size[0], num_dst if size[1] is None else size[1])
            x_msg = (x_src, None)
        if self._sum_as_sparse_product(edge_index, edge_attr, x_src, size):
            # the default message x_j summed (or averaged) over an edge_index: one
            # sparse product over its CSR pattern (see edge_aggregate)
            out = edge_aggregate(edge_index, x_src, size[1], self.flow, self.aggr,
                                 self.node_dim)
            return self._update(x_dst, out)
        if self.psi is None and edge_attr is not None:
            # the GINE edge term, once per call (the message adds it to x_j)
            edge_attr = self._edge_term(x_src.size(-1), edge_attr)
        if self.decomposed_layers > 1 and not self._explain and isinstance(edge_index, Tensor) \
                and not is_torch_sparse_tensor(edge_index):
            # PyG's feature decomposition, for edge_index input (sparse input takes
            # the fused path, which PyG does not decompose either): the default
            # message and the aggregation act on every feature on its own
            xs = x_src.chunk(self.decomposed_layers, dim=-1)
            terms = [None] * len(xs) if edge_attr is None else \
                edge_attr.split([x.size(-1) for x in xs], dim=-1)
            out = torch.cat([
                self.propagate(edge_index, x=(x, None), edge_attr=term, size=size)
                for x, term in zip(xs, terms)
            ], dim=-1)
        else:
            out = self.propagate(edge_index, x=x_msg, edge_attr=edge_attr, size=size)
        return self._update(x_dst, out)

    def _plain_sum(self, x, edge_index) -> Optional[Tensor]:
        r"""The layer on a small graph with the default message: node features
        :math:`(|\mathcal{V}|, F)`, an int64 :obj:`edge_index`, no edge
        features, eagerly, below the sparse product's threshold (:obj:`None`
        elsewhere: :meth:`forward` then takes its general path). It gathers
        :math:`\mathbf{x}_j` and aggregates with PyG's aggregation module, the
        operations of PyG's :meth:`propagate` in the same order (the same
        result bit for bit), without its argument inspection and collection:
        on a graph of 1000 edges that machinery and the general path's case
        analysis cost about as much as the arithmetic."""
        if self.psi is not None or type(x) is not Tensor or x.dim() != 2 \
                or not isinstance(self.aggr, str) \
                or torch.compiler.is_compiling() or not plain_propagate(self):
            return None
        if type(edge_index) is not Tensor or edge_index.layout != torch.strided:
            return self._plain_sparse_sum(x, edge_index)
        if edge_index.dtype != torch.long or edge_index.dim() != 2:
            return None
        if self.aggr in ("add", "sum", "mean") and _product_applies(
                x, edge_index.size(-1), self.node_dim, _product_min_elements(False)):
            return None  # the sparse product (eager_cpu_product)
        check_graph_input(type(self).__name__, x, x, edge_index, self.node_dim, None, (2, 3))
        j, i = (0, 1) if self.flow == "source_to_target" else (1, 0)
        msg = x.index_select(0, edge_index[j])
        out = self.aggr_module(msg, edge_index[i], ptr=None, dim_size=x.size(0),
                               dim=self.node_dim)
        return self._update(x, out)

    def _plain_sparse_sum(self, x: Tensor, adj_t) -> Optional[Tensor]:
        r""":meth:`_plain_sum` for a square sparse :obj:`adj_t` (a torch CSR
        tensor or a :class:`torch_sparse.SparseTensor`) without edge features:
        its :meth:`message_and_aggregate`, which is all PyG's
        :meth:`propagate` would call, without the general path's checks and
        PyG's collection (5-7% of a small graph's layer)."""
        if WITH_TORCH_SPARSE and isinstance(adj_t, SparseTensor):
            value, shape = adj_t.storage.value(), tuple(adj_t.sparse_sizes())
        elif is_torch_sparse_tensor(adj_t) and adj_t.layout == torch.sparse_csr:
            value, shape = adj_t.values(), tuple(adj_t.shape)
        else:
            return None
        if (value is not None and value.dim() != 1) or shape != (x.size(0), x.size(0)):
            return None  # edge features, or a shape the general path reports
        return self._update(x, self.message_and_aggregate(adj_t, (x, x), None))

    def _update(self, x_dst: OptTensor, out: Tensor) -> Tensor:
        out = combine_update(self.combine, x_dst, out, self.eps)
        if self.phi is None:
            return out
        try:
            return self.phi(out)
        except RuntimeError:
            # a width mismatch says so by name (checked only on failure: the
            # check costs 5 us, a tenth of a small graph's layer)
            check_module_input(type(self).__name__, "phi", self.phi, out.size(-1),
                               f"the combination '{self.combine}' of x and the messages")
            raise

    def _sum_as_sparse_product(self, edge_index: Adj, edge_attr: OptTensor, x_src: Tensor,
                               size: Optional[Tuple[int, int]]) -> bool:
        r"""Whether :meth:`forward` sums the default message
        :math:`\mathbf{x}_j` over :obj:`edge_index` as one sparse product
        (:func:`eager_cpu_product`)."""
        if self.psi is not None or edge_attr is not None or size is None:
            return False
        return eager_cpu_product(self, edge_index, x_src, size)

    def _gine_sum_applies(self, edge_index: Adj, edge_attr: OptTensor, x_src: Tensor,
                          x_dst: OptTensor, size: Optional[Tuple[int, int]]) -> bool:
        r"""Whether the message is the default GINE message
        :math:`\mathrm{ReLU}(\mathbf{x}_v + \mathbf{\Theta}_e \mathbf{e}_{uv})`,
        summed over a dense :obj:`edge_index` along the node dimension, with a
        known number of targets: the cases of :meth:`_relu_message_sum`
        (compiled) and :func:`relu_message_sum` (eager)."""
        if self.psi is not None or edge_attr is None or not isinstance(edge_index, Tensor) \
                or is_torch_sparse_tensor(edge_index) or self.aggr not in ("add", "sum"):
            return False
        if x_dst is None and (size is None or size[1] is None):
            return False  # PyG reads the number of targets off edge_index
        return self.node_dim in (-2, x_src.dim() - 2)

    def _compiled_relu_message(self, edge_index: Adj, edge_attr: OptTensor, x_src: Tensor,
                               x_dst: OptTensor, size: Optional[Tuple[int, int]]) -> bool:
        r"""Whether :meth:`forward` takes :meth:`_relu_message_sum` instead of
        :meth:`propagate`: only while :func:`torch.compile` traces the layer,
        for the default GINE message summed over an :obj:`edge_index` tensor
        (:meth:`_gine_sum_applies`), and when nothing of PyG's :meth:`propagate`
        would be skipped (explanations, decomposed layers; PyG's compiled
        :meth:`propagate` runs no hooks)."""
        return torch.compiler.is_compiling() and not self._explain \
            and self.decomposed_layers == 1 \
            and self._gine_sum_applies(edge_index, edge_attr, x_src, x_dst, size)

    def _eager_relu_message(self, edge_index: Adj, edge_attr: OptTensor, x_src: Tensor,
                            x_dst: OptTensor, size: Optional[Tuple[int, int]]) -> bool:
        r"""Whether :meth:`forward` sums the default GINE message with
        :func:`relu_message_sum`: eagerly, in the cases of
        :meth:`_gine_sum_applies`, on the CPU, with int64 indices and no hooks
        on :meth:`propagate`. (On a GPU the blocks would cost a kernel launch
        each, and the caching allocator hands out memory without page faults:
        PyG's gather and scatter stay.)"""
        return not torch.compiler.is_compiling() and x_src.device.type == "cpu" \
            and plain_propagate(self) \
            and self._gine_sum_applies(edge_index, edge_attr, x_src, x_dst, size) \
            and edge_index.dtype == torch.long

    def _fused_relu_message_sum(self, x_src: Tensor, edge_index: Tensor, edge_attr: Tensor,
                                x_dst: OptTensor,
                                size: Optional[Tuple[int, int]]) -> OptTensor:
        # None where the fused sum does not apply to these tensors (dtypes,
        # widths, a hooked or lazy edge Linear): propagate then runs, and raises
        # PyG's errors
        if edge_attr.dim() == 1:
            edge_attr = edge_attr.view(-1, 1)
        weight = bias = None
        lin = self.lin_edge
        if lin is not None:
            if type(lin) is not Linear or not _plain_call(lin) \
                    or isinstance(lin.weight, torch.nn.parameter.UninitializedParameter):
                return None
            weight, bias = lin.weight, lin.bias
            width = weight.size(0)
            ok = all(t is None or t.dtype == x_src.dtype for t in (edge_attr, weight, bias)) \
                and edge_attr.size(-1) == weight.size(1)
        else:
            width = edge_attr.size(-1)
            ok = edge_attr.dtype == x_src.dtype
        if not ok or edge_attr.dim() != 2 or width != x_src.size(-1):
            return None
        return relu_message_sum(x_src, edge_attr, *self._gine_edges(edge_index, x_dst, size),
                                weight, bias)

    def _gine_edges(self, edge_index: Tensor, x_dst: OptTensor,
                    size: Optional[Tuple[int, int]]) -> Tuple[Tensor, Tensor, int]:
        r"""The sources, the targets (by :obj:`flow`) and the number of targets
        of the GINE sums (:meth:`_gine_sum_applies`)."""
        num_dst = x_dst.size(self.node_dim) if size is None or size[1] is None else size[1]
        j, i = (0, 1) if self.flow == "source_to_target" else (1, 0)
        return edge_index[j], edge_index[i], num_dst

    def _relu_message_sum(self, x_src: Tensor, edge_index: Tensor, edge_attr: Tensor,
                          x_dst: OptTensor, size: Optional[Tuple[int, int]]) -> Tensor:
        # The aggregation of the GINE message as one activation-checkpointed
        # region: inductor fuses gather, add, ReLU and scatter-add into one loop
        # over the edges, and the backward recomputes the ReLU pattern from x,
        # the edge term and the indices instead of saving an E x F mask (whose
        # store costs inductor's CPU code more than the whole eager forward).
        edge_term = self._edge_term(x_src.size(-1), edge_attr)
        return checkpoint(_relu_message_sum, x_src, edge_term,
                          *self._gine_edges(edge_index, x_dst, size), use_reentrant=False)

    def _edge_term(self, width: int, edge_attr: Tensor) -> Tensor:
        if edge_attr.dim() == 1:
            edge_attr = edge_attr.view(-1, 1)
        if self.lin_edge is not None:
            return self.lin_edge(edge_attr)
        if edge_attr.size(-1) != width:
            raise ValueError(f"Node and edge feature widths differ ({width} and "
                             f"{edge_attr.size(-1)}); set 'edge_dim' and 'in_channels' "
                             f"of '{type(self).__name__}'")
        return edge_attr

    def message(self, x_i: OptTensor, x_j: Tensor, edge_attr: OptTensor) -> Tensor:
        if self.psi is None:
            # edge_attr: the edge term of forward (lin_edge applied)
            return x_j if edge_attr is None else (x_j + edge_attr).relu()
        if x_i is None:
            raise ValueError(f"'{type(self).__name__}' with a 'psi' needs target node "
                             f"features (got x=(x_src, None))")
        if self.message_input == "args":
            return self.psi(x_i, x_j, edge_attr)
        second = x_j - x_i if self.message_input == "diff" else x_j
        parts = [x_i, second]
        if edge_attr is not None:
            edge_attr = edge_attr.view(-1, 1) if edge_attr.dim() == 1 else edge_attr
            if edge_attr.dim() < x_j.dim():  # static graph: the same edges for every signal
                edge_attr = edge_attr.expand(x_j.shape[:-2] + edge_attr.shape)
            parts.append(edge_attr)
        return self.psi(torch.cat(parts, dim=-1))

    def message_and_aggregate(self, adj_t: Adj, x: OptPairTensor,
                              edge_attr: OptTensor) -> Tensor:
        # Only reached for sparse adjacency with `psi=None`.
        x_src = x[0]
        if edge_attr is not None:  # non-linear message: gather-scatter fallback
            if WITH_TORCH_SPARSE and isinstance(adj_t, SparseTensor):
                row, col = adj_t.storage.row(), adj_t.storage.col()
            elif (parts := sparse_parts(adj_t, values=False)) is not None:
                # the indices as stored (PyG's to_edge_index flags the tensor coalesced
                # in place, which bumps the version of the edge features read from its
                # values and fails their backward)
                row, col = parts_row(parts), parts[3]
            else:
                (row, col), _ = to_edge_index(adj_t)
            if self.aggr in ("add", "sum") and edge_attr.dtype == x_src.dtype \
                    and edge_attr.dim() == 2 and edge_attr.size(-1) == x_src.size(-1) \
                    and self.node_dim in (-2, x_src.dim() - 2) and x_src.device.type == "cpu":
                return relu_message_sum(x_src, edge_attr, col, row, adj_t.size(0))
            msg = self.message(None, x_src.index_select(self.node_dim, col), edge_attr)
            return self.aggregate(msg, row, dim_size=adj_t.size(0))
        if self.aggr in ("add", "sum"):
            # the message ignores edge weights: the pattern only (see sparse_sum_nodes
            # for what torch.compile makes of it)
            return sparse_sum_nodes(adj_t, x_src, self.node_dim,
                                    sparse_parts(adj_t, values=False), use_values=False)
        if WITH_TORCH_SPARSE and isinstance(adj_t, SparseTensor):
            adj_t = adj_t.set_value(None, layout=None)
        elif is_torch_sparse_tensor(adj_t):
            # the message ignores edge weights: use the pattern only
            adj_t = _ones_like_sparse(adj_t, x_src.dtype)
        return spmm_nodes(adj_t, x_src, self.aggr, self.node_dim)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(psi={self.psi}, phi={self.phi}, aggr={self.aggr}, "
                f"combine={self.combine})")


def _relu_message_sum(x_src: Tensor, edge_term: Tensor, src: Tensor, dst: Tensor,
                      num_dst: int) -> Tensor:
    # sum_{v -> u} relu(x_v + e_vu) over the second-last (node) dimension of x_src
    msg = (x_src.index_select(-2, src) + edge_term).relu()
    return msg.new_zeros(x_src.shape[:-2] + (num_dst, x_src.size(-1))).index_add_(-2, dst, msg)


def _edge_term_rows(edge_attr: Tensor, weight: OptTensor, bias: OptTensor, lo: int,
                    hi: int) -> Tensor:
    rows = edge_attr[lo:hi]
    return rows if weight is None else torch.nn.functional.linear(rows, weight, bias)


def _relu_message_sum_reference(x_src: Tensor, edge_attr: Tensor, weight: OptTensor,
                                bias: OptTensor, src: Tensor, dst: Tensor,
                                num_dst: int) -> Tensor:
    edge_term = _edge_term_rows(edge_attr, weight, bias, 0, edge_attr.size(0))
    return _relu_message_sum(x_src, edge_term, src, dst, num_dst)


class _ReluMessageSum(torch.autograd.Function):
    # relu(x_src[src] + edge term) summed into dst, a block of edges at a time:
    # no E x F tensor is ever allocated; the backward recomputes each block
    @staticmethod
    def forward(ctx, x_src: Tensor, edge_attr: Tensor, weight: OptTensor, bias: OptTensor,
                src: Tensor, dst: Tensor, num_dst: int, block: int) -> Tensor:
        out = x_src.new_zeros(x_src.shape[:-2] + (num_dst, x_src.size(-1)))
        for lo in range(0, src.numel(), block):
            hi = lo + block
            msg = x_src.index_select(-2, src[lo:hi])
            msg.add_(_edge_term_rows(edge_attr, weight, bias, lo, hi))
            msg.relu_()
            out.index_add_(-2, dst[lo:hi], msg)
        ctx.save_for_backward(x_src, edge_attr, weight, bias, src, dst)
        ctx.num_dst, ctx.block = num_dst, block
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        x_src, edge_attr, weight, bias, src, dst = ctx.saved_tensors
        need = ctx.needs_input_grad[:4]
        if torch.is_grad_enabled():  # create_graph: a differentiable recomputation
            inputs = [t for t, n in zip((x_src, edge_attr, weight, bias), need) if n]
            with torch.enable_grad():
                out = _relu_message_sum_reference(x_src, edge_attr, weight, bias, src, dst,
                                                  ctx.num_dst)
            grads = iter(torch.autograd.grad(out, inputs, grad_out, create_graph=True,
                                             allow_unused=True))
            return tuple(next(grads) if n else None for n in need) + (None,) * 4
        grad_x = torch.zeros_like(x_src) if need[0] else None
        grad_attr = torch.empty_like(edge_attr) if need[1] else None
        grad_w = torch.zeros_like(weight) if need[2] else None
        grad_b = torch.zeros_like(bias) if need[3] else None
        batch_dims = tuple(range(x_src.dim() - 2))
        for lo in range(0, src.numel(), ctx.block):
            hi = lo + ctx.block
            rows = edge_attr[lo:hi]
            pre = x_src.index_select(-2, src[lo:hi])
            pre.add_(_edge_term_rows(edge_attr, weight, bias, lo, hi))
            grad = grad_out.index_select(-2, dst[lo:hi])
            grad.masked_fill_(pre <= 0, 0)  # ReLU's gradient: 0 where its output is 0
            if grad_x is not None:
                grad_x.index_add_(-2, src[lo:hi], grad)
            grad_term = grad.sum(batch_dims) if batch_dims else grad
            if grad_attr is not None:
                if weight is None:
                    grad_attr[lo:hi] = grad_term
                else:
                    torch.mm(grad_term, weight, out=grad_attr[lo:hi])
            if grad_w is not None:
                grad_w.addmm_(grad_term.t(), rows)
            if grad_b is not None:
                grad_b.add_(grad_term.sum(0))
        return grad_x, grad_attr, grad_w, grad_b, None, None, None, None


#: the bytes of one block of messages in :func:`relu_message_sum` (a few
#: hundred KB to a MB stay in the CPU's caches and in memory the allocator reuses)
RELU_MESSAGE_BLOCK_BYTES = 1 << 20


def relu_message_sum(x_src: Tensor, edge_attr: Tensor, src: Tensor, dst: Tensor,
                     num_dst: int, weight: OptTensor = None, bias: OptTensor = None) -> Tensor:
    r"""The GINE aggregation :math:`\sum_{v \to u} \mathrm{ReLU}(\mathbf{x}_v +
    \mathbf{e}_{vu})` over the second-last (node) dimension of :obj:`x_src`
    (``[..., N_src, F]``), with the edges :obj:`src` to :obj:`dst` (``[E]``
    each, in range), into ``[..., num_dst, F]``. The edge term
    :math:`\mathbf{e}` is :obj:`edge_attr` ``[E, F]``, or with :obj:`weight`
    ``[F, D]`` (and :obj:`bias` ``[F]``) the linear map
    ``F.linear(edge_attr, weight, bias)`` of :obj:`edge_attr` ``[E, D]``, as
    in :class:`~torch_geometric.nn.conv.GINEConv`.

    The edges are taken in blocks of about :obj:`RELU_MESSAGE_BLOCK_BYTES` of
    messages, and the backward recomputes each block (gather, edge term,
    ReLU pattern): no :math:`|\mathcal{E}| \times F` tensor is allocated
    (but the gradient of an ``[E, F]`` :obj:`edge_attr` that requires one),
    where PyG's gather, add, ReLU and scatter-add allocate three in the
    forward (four with the edge term) and two in the backward. The sums are
    PyG's, in PyG's order (the messages of a target, and the gradients of a
    source, are added in edge order), so the output and the gradient of
    :obj:`x_src` equal PyG's bit for bit; the gradients of :obj:`weight` and
    :obj:`bias` are sums over the blocks, equal up to rounding. Double
    backward (``create_graph=True``) recomputes the whole sum differentiably."""
    F = x_src.size(-1)
    batch = x_src[..., :1, :1].numel()
    block = max(1, RELU_MESSAGE_BLOCK_BYTES // max(1, F * batch * x_src.element_size()))
    return _ReluMessageSum.apply(x_src, edge_attr, weight, bias, src, dst, num_dst, block)


def _ones_like_sparse(adj: Tensor, dtype: torch.dtype) -> Tensor:
    if adj.layout == torch.sparse_csr:
        return torch.sparse_csr_tensor(adj.crow_indices(), adj.col_indices(),
                                       torch.ones(adj.col_indices().numel(), dtype=dtype,
                                                  device=adj.device), adj.size())
    if adj.layout == torch.sparse_csc:
        return torch.sparse_csc_tensor(adj.ccol_indices(), adj.row_indices(),
                                       torch.ones(adj.row_indices().numel(), dtype=dtype,
                                                  device=adj.device), adj.size())
    # the indices of a coalesced tensor are sorted and unique: flag the copy as
    # coalesced instead of sorting them again (a pass over E log E per call)
    adj = adj.coalesce()
    index = adj.indices()
    return torch.sparse_coo_tensor(index, torch.ones(index.size(1), dtype=dtype,
                                                     device=adj.device),
                                   adj.size(), is_coalesced=True)
