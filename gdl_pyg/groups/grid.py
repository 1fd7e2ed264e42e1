r"""Translations, rotations and reflections of pixel grids (and of the plane).

* :class:`Translations`: cyclic shifts of a grid (exact symmetries of a
  periodic grid, see ``grid_to_data(..., periodic=True)``).
* :class:`CyclicGroup` ``C_N`` and :class:`DihedralGroup` ``D_N``: rotations by
  :math:`2\pi k/N` (and reflections). On a pixel grid they act exactly for
  :math:`N \in \{1, 2, 4\}` (``torch.rot90`` / ``torch.flip``); on a ``Data``
  without a grid they rotate ``pos`` in the plane for any ``N``.

On a *lifted* grid (a ``Data`` with a ``group_elem [N]`` attribute, the nodes
being pixel x group element, node ``i * |G| + h`` for pixel ``i`` and element
``h``, see :func:`gdl_pyg.domains.lift_grid`),
``g`` moves node ``(p, h)`` to ``(g p, g h)``: this is the domain of the p4 / p4m
group convolutions.

Element encoding: ``C_N``: an ``int`` ``k`` for :math:`r^k`; ``D_N``: an ``int``
``s * N + k`` for :math:`r^k f^s` (flip first, then rotate). On coordinates
``(row, col)``, :math:`r` is the matrix ``[[0, -1], [1, 0]]`` for ``N = 4``
(``torch.rot90(img, 1, dims=(-2, -1))``) and :math:`f` is ``diag(1, -1)``
(``torch.flip(img, dims=(-1,))``).
"""
import math
from typing import Any, Callable, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch_geometric.data import Data

from gdl_pyg.groups.base import TRIVIAL, Group, apply_matrix, num_graphs_of, permute_nodes

__all__ = ["Translations", "CyclicGroup", "DihedralGroup", "grid_transform"]


def _index_image(data: Data, order: int) -> Tuple[Tensor, Tuple[int, ...]]:
    r"""``idx [B, order, *shape]`` with the node id stored at each
    (graph, group element, pixel); the inverse of the node layout."""
    from gdl_pyg.domains.grid import grid_shape_of
    shape = grid_shape_of(data)
    pos = data.pos.round().long()
    if pos.size(-1) != len(shape):
        raise ValueError(f"Expected 'pos' with {len(shape)} coordinates (got {pos.size(-1)})")
    N = data.num_nodes
    B = num_graphs_of(data)
    batch = data.batch if "batch" in data and data.batch is not None else \
        torch.zeros(N, dtype=torch.long, device=pos.device)
    h = data.group_elem if "group_elem" in data else \
        torch.zeros(N, dtype=torch.long, device=pos.device)
    n = math.prod(shape)
    if N != B * order * n:
        raise ValueError(f"Expected {B} full grid(s) of shape {list(shape)} with {order} "
                         f"group element(s) per pixel ({B * order * n} nodes), got {N} nodes")
    strides = torch.tensor([math.prod(shape[k + 1:]) for k in range(len(shape))],
                           device=pos.device)
    lin = (batch * order + h) * n + (pos * strides).sum(-1)  # index into [B, order, *shape]
    idx = torch.full((B * order * n,), -1, dtype=torch.long, device=pos.device)
    idx[lin] = torch.arange(N, device=pos.device)
    if bool((idx < 0).any()):
        raise ValueError("The grid 'Data' has repeated pixel coordinates; expected one node "
                         "per (graph, group element, pixel)")
    return idx.view(B, order, *shape), shape


def grid_transform(data: Data, spatial: Callable[[Tensor], Tensor],
                   elem_map: Optional[Sequence[int]] = None, order: int = 1) -> Data:
    r"""Moves the nodes of a (lifted) grid ``Data``.

    ``spatial`` maps an index image ``[..., *shape]`` to the transformed one
    (``torch.rot90``, ``torch.flip``, ``torch.roll``); ``elem_map[h]`` is the
    group element that node ``(p, h)`` moves to. The result is in canonical
    order again (so grid fast paths stay valid): graph, then pixel in
    row-major order, then group element (node ``i * order + h``), with
    ``pos``, ``group_elem`` and ``grid_shape`` updated; edge attributes are kept.
    """
    idx, _ = _index_image(data, order)
    new = spatial(idx)
    if elem_map is not None:
        perm_h = torch.empty(order, dtype=torch.long)
        perm_h[torch.as_tensor(elem_map)] = torch.arange(order)
        new = new[:, perm_h]
    new_shape = tuple(new.shape[2:])
    B = new.size(0)
    out = permute_nodes(data, new.movedim(1, -1).reshape(-1))
    n = math.prod(new_shape)
    device = data.pos.device
    coords = torch.stack(torch.meshgrid(*[torch.arange(s, device=device) for s in new_shape],
                                        indexing="ij"), dim=-1).reshape(n, len(new_shape))
    out.pos = coords.to(data.pos.dtype).repeat_interleave(order, dim=0).repeat(B, 1)
    if "group_elem" in data:
        out.group_elem = torch.arange(order, device=device).repeat(B * n)
    out.grid_shape = torch.tensor([new_shape], device=device).repeat(
        data.grid_shape.view(-1, len(new_shape)).size(0), 1)
    return out


def _is_grid(data: Data) -> bool:
    return "grid_shape" in data


class Translations(Group):
    r"""Cyclic translations of a grid, :math:`\mathbb{Z}_H \times \mathbb{Z}_W`
    (the translations of :math:`\mathbb{Z}^2` on a torus).

    An element is a tuple of shifts, one per spatial dimension; it moves
    pixel ``p`` to ``p + t`` (mod the grid size), as ``torch.roll`` does. Exact
    for convolutions on periodic grids (``grid_to_data(..., periodic=True)``);
    on a zero-padded grid translations are not a symmetry of the domain.
    """
    name = "Z^d"
    default_fields = {}

    def sample(self, data: Optional[Data] = None,
               generator: Optional[torch.Generator] = None) -> Tuple[int, ...]:
        from gdl_pyg.domains.grid import grid_shape_of
        if data is None:
            raise ValueError("'Translations.sample' needs the grid 'data' it shifts")
        shape = grid_shape_of(data)
        return tuple(int(torch.randint(0, s, (1,), generator=generator)) for s in shape)

    def identity(self, data: Optional[Data] = None):
        from gdl_pyg.domains.grid import grid_shape_of
        return tuple(0 for _ in grid_shape_of(data))

    def act(self, g: Sequence[int], data: Data,
            fields: Optional[Mapping[str, Any]] = None) -> Data:
        if not _is_grid(data):
            raise ValueError("'Translations' acts on grid 'Data' (with 'grid_shape'); "
                             "use 'grid_to_data' first")
        for key, rep in self._fields(fields).items():
            if rep not in TRIVIAL:
                raise ValueError(f"'Translations' acts trivially on fibres; field '{key}' "
                                 f"was declared with representation {rep!r}")
        shifts = tuple(int(s) for s in g)
        dims = tuple(range(-len(shifts), 0))
        order = int(data.group_elem.max()) + 1 if "group_elem" in data else 1
        return grid_transform(data, lambda t: torch.roll(t, shifts, dims), None, order)


class CyclicGroup(Group):
    r"""The cyclic group :math:`C_N` of rotations by :math:`2\pi k / N`.

    Acts on grids (exactly, ``N`` in 1, 2, 4), lifted grids (``group_elem``)
    and on planar ``pos``. Fibre representations: ``"trivial"``, ``"vector"``
    (the 2x2 rotation, for ``edge_offset`` and other planar vectors; on 3-D
    grids it rotates the last two coordinates) and ``"regular"`` (the last
    dimension holds ``C`` blocks of ``N`` values, one per group element,
    permuted by left multiplication).

    Args:
        N (int): the order of the group.
    """
    reflections = False

    def __init__(self, N: int = 4):
        if not isinstance(N, int) or N < 1:
            raise ValueError(f"Expected a positive integer group order N (got {N!r})")
        self.N = N
        self.name = f"{'D' if self.reflections else 'C'}{N}"
        self.default_fields = {"pos": "point", "edge_offset": "vector"}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(N={self.N})"

    @property
    def order(self) -> int:
        return self.N * (2 if self.reflections else 1)

    # algebra ---------------------------------------------------------------
    def _split(self, g: int) -> Tuple[int, int]:
        g = int(g)
        if not 0 <= g < self.order:
            raise ValueError(f"'{self.name}' has elements 0..{self.order - 1} (got {g})")
        return g % self.N, g // self.N  # (rotation k, flip s)

    def compose(self, a: int, b: int) -> int:
        r"""The product :math:`ab` (apply ``b`` first)."""
        ka, sa = self._split(a)
        kb, sb = self._split(b)
        k = (ka + (-kb if sa else kb)) % self.N
        return ((sa + sb) % 2) * self.N + k

    def inverse(self, a: int) -> int:
        k, s = self._split(a)
        return a if s else (-k) % self.N

    def elements(self, data: Optional[Data] = None) -> List[int]:
        return list(range(self.order))

    def identity(self, data: Optional[Data] = None) -> int:
        return 0

    def sample(self, data: Optional[Data] = None,
               generator: Optional[torch.Generator] = None) -> int:
        return int(torch.randint(0, self.order, (1,), generator=generator))

    def matrix(self, g: int, dtype=torch.float64) -> Tensor:
        r"""The 2x2 matrix of ``g`` acting on ``(row, col)`` / planar coordinates."""
        k, s = self._split(g)
        if 4 % self.N == 0:  # exact integer entries
            c, si = [(1, 0), (0, 1), (-1, 0), (0, -1)][(k * 4 // self.N) % 4]
        else:
            c, si = math.cos(2 * math.pi * k / self.N), math.sin(2 * math.pi * k / self.N)
        R = torch.tensor([[c, -si], [si, c]], dtype=dtype)
        F = torch.tensor([[1, 0], [0, -1 if s else 1]], dtype=dtype)
        return R @ F

    def regular_matrix(self, g: int, dtype=torch.float64) -> Tensor:
        r"""The permutation matrix of left multiplication by ``g``."""
        M = torch.zeros(self.order, self.order, dtype=dtype)
        for h in range(self.order):
            M[self.compose(g, h), h] = 1
        return M

    def fiber_matrix(self, g: int, rep: Any, dim: int) -> Optional[Tensor]:
        if rep in TRIVIAL:
            return None
        if rep == "vector":
            if dim == 2:
                return self.matrix(g)
            if dim == 3:  # rotate the last two coordinates of (depth, row, col)
                M = torch.eye(3, dtype=torch.float64)
                M[1:, 1:] = self.matrix(g)
                return M
            raise ValueError(f"'{self.name}' vectors have 2 or 3 components (got {dim})")
        if rep == "regular":
            if dim % self.order:
                raise ValueError(f"A regular '{self.name}' field needs a last dimension "
                                 f"divisible by {self.order} (got {dim})")
            return torch.block_diag(*[self.regular_matrix(g)] * (dim // self.order))
        raise ValueError(f"'{self.name}' does not know the representation {rep!r}; expected "
                         f"'trivial', 'vector' or 'regular'")

    # action ----------------------------------------------------------------
    def _spatial(self, g: int) -> Callable[[Tensor], Tensor]:
        k, s = self._split(g)
        if 4 % self.N:
            raise ValueError(f"'{self.name}' does not act exactly on a pixel grid; "
                             f"only N in (1, 2, 4) do")
        k90 = k * 4 // self.N

        def f(t: Tensor) -> Tensor:
            if s:
                t = torch.flip(t, dims=(-1,))
            return torch.rot90(t, k90, dims=(-2, -1))
        return f

    def _lifted_order(self, data: Data) -> int:
        if "group_elem" not in data:
            return 1
        order = int(data.group_elem.max()) + 1
        if order == self.order or (order == 2 * self.N and not self.reflections):
            return order
        raise ValueError(f"'{self.name}' cannot act on a grid lifted with {order} group "
                         f"elements: expected {self.order}" +
                         ("" if self.reflections else f" or {2 * self.N} (D{self.N})"))

    def act(self, g: int, data: Data, fields: Optional[Mapping[str, Any]] = None) -> Data:
        fields = self._fields(fields)
        if _is_grid(data):
            order = self._lifted_order(data)
            compose = self.compose
            if order == 2 * self.N and not self.reflections:
                # a rotation acting on a grid lifted with D_N: r^k is element k of D_N
                compose = DihedralGroup(self.N).compose
            elem_map = [compose(g, h) for h in range(order)] if order > 1 else None
            out = grid_transform(data, self._spatial(g), elem_map, order)
            skip = {"pos"}
        else:
            out = data.clone()
            skip = set()
        for key, rep in fields.items():
            if key not in out or key in skip or rep in TRIVIAL:
                continue
            value = out[key]
            if rep == "point":
                if value.size(-1) != 2:
                    raise ValueError(f"'{self.name}' rotates planar points; '{key}' has "
                                     f"{value.size(-1)} coordinates")
                out[key] = apply_matrix(value, self.matrix(g))
            else:
                M = self.fiber_matrix(g, rep, value.size(-1))
                if M is not None:
                    out[key] = apply_matrix(value, M)
        return out


class DihedralGroup(CyclicGroup):
    r"""The dihedral group :math:`D_N` of ``N`` rotations and ``N`` reflections
    (``D4`` on pixel grids gives p4m). See :class:`CyclicGroup` for the
    actions and representations; elements are ``s * N + k`` for
    :math:`r^k f^s`."""
    reflections = True
