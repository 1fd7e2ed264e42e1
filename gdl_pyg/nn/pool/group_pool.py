r"""Pooling over the group elements of a lifted grid (p4 / p4m G-CNNs)."""
import torch
from torch import Tensor
from torch_geometric.data import Data

from gdl_pyg.groups.base import attr_level
from gdl_pyg.nn._checks import check_index
from gdl_pyg.utils import check_edge_index

__all__ = ["GroupPool", "group_pool"]

_REDUCE = ("max", "mean", "sum")


def group_pool(x: Tensor, group_order: int, reduce: str = "max") -> Tensor:
    r"""Reduces lifted features ``x [N * |G|, C]`` (row ``i * |G| + h``) over
    the group elements of each pixel: returns ``[N, C]``.

    Args:
        x (torch.Tensor): lifted features in the layout of
            :func:`~gdl_pyg.domains.lifted_grid.lift_grid`.
        group_order (int): :math:`|G|`.
        reduce (str, optional): ``"max"``, ``"mean"`` or ``"sum"``.
            (default: :obj:`"max"`)
    """
    if reduce not in _REDUCE:
        raise ValueError(f"Expected 'reduce' to be one of {_REDUCE} (got {reduce!r})")
    if not isinstance(group_order, int) or group_order < 1:
        raise ValueError(f"Expected a positive integer group order (got {group_order!r})")
    if x.dim() < 1 or x.size(0) % group_order:
        raise ValueError(f"Expected lifted features with a multiple of {group_order} rows "
                         f"(got shape {list(x.shape)})")
    x = x.view(x.size(0) // group_order, group_order, *x.shape[1:])
    if reduce == "max":
        return x.amax(dim=1)
    if reduce == "mean":
        return x.mean(dim=1)
    return x.sum(dim=1)


class GroupPool(torch.nn.Module):
    r"""Pooling over the group elements of a lifted grid, from the `"Group
    Equivariant Convolutional Networks" <https://arxiv.org/abs/1602.07576>`_
    paper (Cohen and Welling, 2016)

    .. math::
        \mathbf{x}^{\prime}_i = \bigoplus_{h \in G} \mathbf{x}_{i, h},

    with :math:`\bigoplus` the maximum (or mean, or sum). It maps a feature on
    :math:`\mathbb{Z}^2 \times G` to a feature on the pixel grid that is
    invariant in its fibre: a rotation / reflection :math:`g` of the input
    only moves the pixels (:math:`(\mathbf{p}, h) \mapsto (g\mathbf{p}, gh)`
    becomes :math:`\mathbf{p} \mapsto g\mathbf{p}`).

    The result is the pixel grid ``Data``: ``x`` pooled, ``pos``, ``batch``,
    ``grid_shape`` and the pixel stencil graph (the lifted edges between
    element-0 nodes, with their ``edge_offset``), pixels in the order of the
    lifted ``Data``; other non-node, non-edge attributes are kept.

    Args:
        reduce (str, optional): ``"max"``, ``"mean"`` or ``"sum"``.
            (default: :obj:`"max"`)

    Shapes:
        - **input:** a lifted grid ``Data`` with
          ``x`` :math:`(|\mathcal{V}| \cdot |G|, F)` and ``group_elem``
          :math:`(|\mathcal{V}| \cdot |G|)`
        - **output:** a pixel grid ``Data`` with ``x``
          :math:`(|\mathcal{V}|, F)`
    """

    #: The symmetry the layer respects.
    group_name = "p4 / p4m (C4 / D4 acting on Z^2)"

    def __init__(self, reduce: str = "max"):
        super().__init__()
        if reduce not in _REDUCE:
            raise ValueError(f"'GroupPool' expected 'reduce' to be one of {_REDUCE} "
                             f"(got {reduce!r})")
        self.reduce = reduce

    def forward(self, data: Data, key: str = "x") -> Data:
        if not isinstance(data, Data):
            raise TypeError(f"'GroupPool' expected a lifted grid 'Data' "
                            f"(got {type(data).__name__})")
        if "group_elem" not in data or key not in data:
            raise ValueError(f"'GroupPool' expected a lifted grid 'Data' with 'group_elem' "
                             f"and '{key}' (made by 'lift_grid' and a 'LiftingConv')")
        ge = data.group_elem
        x = data[key]
        if not isinstance(x, Tensor) or x.dim() < 1:
            got = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"'GroupPool' expected lifted features '{key}' of shape "
                             f"[num_nodes * |G|, *] (got {got})")
        N = x.size(0)
        check_index(ge, N, "GroupPool", "group_elem")
        pos = data.get("pos")
        if isinstance(pos, Tensor) and (pos.dim() < 1 or pos.size(0) != N):
            raise ValueError(f"'GroupPool' expected 'pos' with one row per node of '{key}' "
                             f"({N}) (got shape {list(pos.shape)})")
        check_index(data.get("batch"), N, "GroupPool", "batch")
        ei = data.get("edge_index")
        if ei is not None:
            check_edge_index(ei, N, "GroupPool")
            off = data.get("edge_offset")
            if off is not None and (not isinstance(off, Tensor) or off.dim() < 1
                                    or off.size(0) != ei.size(1)):
                got = list(off.shape) if isinstance(off, Tensor) else type(off).__name__
                raise ValueError(f"'GroupPool' expected 'edge_offset' with one row per column "
                                 f"of 'edge_index' ({ei.size(1)}) (got {got})")
        G = int(ge.max()) + 1 if ge.numel() > 0 else 1
        if N % G or not bool((ge.view(-1, G) == torch.arange(G, device=ge.device)).all()):
            raise ValueError(f"'GroupPool' expected the lifted layout: node i * {G} + h for "
                             f"pixel i and group element h")
        out = Data()
        for k in data.keys():
            if k in (key, "pos", "batch", "group_elem", "edge_index", "edge_offset"):
                continue
            if attr_level(data, k) not in ("node", "edge", "edge_index"):
                out[k] = data[k]
        out[key] = group_pool(data[key], G, self.reduce)
        if "pos" in data:
            out.pos = data.pos[::G]
        if "batch" in data and data.batch is not None:
            out.batch = data.batch[::G]
        if "edge_index" in data:
            src, dst = data.edge_index
            keep = (ge[src] == 0) & (ge[dst] == 0)
            out.edge_index = data.edge_index[:, keep] // G
            if "edge_offset" in data:
                out.edge_offset = data.edge_offset[keep]
        out.num_nodes = N // G
        return out

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(reduce={self.reduce!r})"
