r"""Coarsening of signals on an icosphere to the next coarser icosphere.

The vertices of :func:`gdl_pyg.domains.icosphere` ``(s - 1)`` are the first
:math:`10 \cdot 4^{s-1} + 2` vertices of ``icosphere(s)`` (a prefix), and every
rotation of the icosahedron maps that prefix onto itself. Averaging (or
taking the maximum) over each closed 1-ring and keeping the prefix is
therefore exactly equivariant to the 60 icosahedral rotations.
"""
from typing import Dict, Literal, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.utils import scatter

from gdl_pyg.nn.conv.sphere_conv import _graphs
from gdl_pyg.utils import _is_compiling, check_edge_index

__all__ = ["SpherePool", "icosphere_level"]


def icosphere_level(num_nodes: int) -> Optional[int]:
    r"""The subdivision level :math:`s` with :math:`10 \cdot 4^s + 2 =`
    :obj:`num_nodes`, or :obj:`None` if there is none."""
    s, n = 0, 12
    while n < num_nodes:
        s, n = s + 1, 10 * 4 ** (s + 1) + 2
    return s if n == num_nodes else None


class SpherePool(torch.nn.Module):
    r"""Coarsens a signal on :func:`~gdl_pyg.domains.icosphere` ``(s)`` (one
    or several in a batch) to ``icosphere(s - 1)``, the scale separation of
    the spherical CNN (`"Geometric Deep Learning" <https://arxiv.org/abs/2104.13478>`_,
    sec. 5.2):

    .. math::
        \mathbf{x}'_i = \operatorname{reduce}_{j \in \{i\} \cup \mathcal{N}(i)}
        \mathbf{x}_j, \qquad i < 10 \cdot 4^{s-1} + 2,

    with ``reduce`` the mass-weighted mean (weights ``mass``, uniform if
    omitted) or the maximum over the closed neighbourhood given by
    ``edge_index``. The coarse vertices are the prefix of the fine ones, so
    ``pos`` is restricted; the coarse ``edge_index`` and ``mass`` are those
    of ``icosphere(s - 1)`` (built once per level and cached). Each graph of
    a batch must be a whole icosphere with its vertices in
    :func:`~gdl_pyg.domains.icosphere` order (relabelled by the icosahedral
    group is fine: that maps the prefix onto itself).

    Args:
        reduce (str, optional): ``"mean"`` or ``"max"``. (default: :obj:`"mean"`)

    Shapes:
        - **input:** ``x`` :math:`(B \cdot N_s, F)`, ``pos`` :math:`(B \cdot N_s, 3)`,
          ``edge_index`` :math:`(2, |\mathcal{E}|)`, ``mass`` :math:`(B \cdot N_s)`
          *(optional)*, ``batch`` :math:`(B \cdot N_s)` *(optional, sorted)*,
          ``batch_size`` *(optional)*: the number of graphs :math:`B`. Passed
          with ``batch``, nothing reads ``batch`` (which would be a graph
          break under :func:`torch.compile`; compiled, the check that every
          graph has :math:`N_s` vertices is skipped)
        - **output:** ``(x, pos, edge_index, mass, batch)`` on
          ``icosphere(s - 1)``: :math:`(B \cdot N_{s-1}, F)`, :math:`(B \cdot
          N_{s-1}, 3)`, :math:`(2, B \cdot 60 \cdot 4^{s-1})`, :math:`(B \cdot
          N_{s-1})`, :math:`(B \cdot N_{s-1})`
    """
    group_name = "I (icosahedral rotations)"

    def __init__(self, reduce: Literal["mean", "max"] = "mean"):
        super().__init__()
        if reduce not in ("mean", "max"):
            raise ValueError(f"'{type(self).__name__}' expected reduce 'mean' or 'max' "
                             f"(got {reduce!r})")
        self.reduce = reduce
        self._levels: Dict[int, Tuple[Tensor, Tensor]] = {}

    def _coarse(self, s: int) -> Tuple[Tensor, Tensor]:
        if s not in self._levels:
            from gdl_pyg.domains.sphere import icosphere
            d = icosphere(s)
            self._levels[s] = (d.edge_index, d.mass)
        return self._levels[s]

    def forward(self, x: Tensor, pos: Tensor, edge_index: Tensor, mass: Optional[Tensor] = None,
                batch: Optional[Tensor] = None, batch_size: Optional[int] = None
                ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        name = type(self).__name__
        if not isinstance(x, Tensor) or x.dim() != 2:
            raise ValueError(f"'{name}' expected 'x' of shape [num_nodes, F] (got "
                             f"{list(x.shape) if isinstance(x, Tensor) else type(x).__name__})")
        N = x.size(0)
        check_edge_index(edge_index, N, name)
        if not isinstance(edge_index, Tensor) or edge_index.layout != torch.strided:
            raise TypeError(f"'{name}' expected a dense 'edge_index' [2, num_edges] "
                            f"(got {type(edge_index).__name__} with a sparse layout)")
        for key, val, shape in (("pos", pos, (N, 3)), ("mass", mass, (N,)),
                                ("batch", batch, (N,))):
            if (val is not None or key == "pos") and \
                    (not isinstance(val, Tensor) or val.shape != shape):
                got = list(val.shape) if isinstance(val, Tensor) else type(val).__name__
                raise ValueError(f"'{name}' expected '{key}' of shape {list(shape)}, one row "
                                 f"per row of 'x' (got {got})")
        batch, B = _graphs(batch, batch_size, x)
        n = N // B if B else 0
        # the sizes of the graphs read the data: checked in eager mode only
        same = B == 0 or n * B == N and (_is_compiling() or bool(
            (torch.bincount(batch, minlength=B) == n).all()))
        s = icosphere_level(n)
        if B == 0 or s is None or s < 1 or not same:
            counts = torch.bincount(batch, minlength=max(B, 1))
            raise ValueError(f"'{name}' expected every graph to be an icosphere with "
                             f"10 * 4^s + 2 vertices, s >= 1, all of one level (got graph "
                             f"sizes {counts.tolist()[:4]}{'...' if B > 4 else ''})")
        if mass is None:
            mass = torch.ones(N, dtype=x.dtype, device=x.device)
        src, dst = edge_index
        if self.reduce == "mean":
            w = mass.to(x.dtype)
            num = scatter(w[src].unsqueeze(-1) * x[src], dst, 0, dim_size=N, reduce="sum")
            den = scatter(w[src], dst, 0, dim_size=N, reduce="sum")
            y = (num + w.unsqueeze(-1) * x) / (den + w).unsqueeze(-1)
        else:
            y = scatter(x[src], dst, 0, dim_size=N, reduce="max")
            y = torch.maximum(y, x)
        nc = 10 * 4 ** (s - 1) + 2
        keep = (torch.arange(B, device=x.device) * n).repeat_interleave(nc) + \
            torch.arange(nc, device=x.device).repeat(B)
        ei, m = self._coarse(s - 1)
        ei = ei.to(x.device)
        E = ei.size(1)
        offset = (torch.arange(B, device=x.device) * nc).repeat_interleave(E)
        edge_index = ei.repeat(1, B) + offset
        mass = m.to(device=x.device, dtype=mass.dtype).repeat(B)
        batch = torch.arange(B, device=x.device).repeat_interleave(nc)
        return y[keep], pos[keep], edge_index, mass, batch

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reduce={self.reduce!r})"
