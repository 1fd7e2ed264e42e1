r"""Reading and writing point clouds as :class:`~torch_geometric.data.Data`.

A point-cloud ``Data`` holds ``pos [N, 3]`` and, where the file has them,
``normal [N, 3]`` and ``color [N, 3]`` (``uint8`` when the colours are
integers in ``[0, 255]``, float otherwise), plus any further per-point field
(``intensity [N]``, a PLY vertex property, an NPZ array).

=============================  ==========================================================
extension                      layout
=============================  ==========================================================
``.ply`` (ASCII, binary)       :mod:`plyfile`: the ``vertex`` element's ``x y z``,
                               ``nx ny nz``, ``red green blue [alpha]`` and other scalar
                               properties (faces, if any, are ignored)
``.xyz`` ``.pts`` ``.txt``     a whitespace table read by :func:`numpy.loadtxt` (``#``
                               comments). Columns by count: 3 ``x y z``; 4 ``+ intensity``;
                               6 ``+ nx ny nz``; 7 ``+ intensity r g b``; 9 ``+ nx ny nz
                               r g b``; or as given by ``columns``. A ``.pts`` file may
                               start with a line holding the point count.
``.npy``                       one ``[N, C]`` array, columns as for text files
``.npz``                       named arrays: ``pos`` (required), ``normal``, ``color``, ...
=============================  ==========================================================
"""
import os
import warnings
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data

from gdl_pyg.io._utils import (
    PathLike,
    atomic_path,
    check_pos,
    check_final_newline,
    check_readable,
    float_tensor,
    resolve_format,
    split_data,
    to_numpy,
)

__all__ = ["read_points", "write_points", "POINT_EXTENSIONS"]

#: extension -> canonical format
POINT_EXTENSIONS: Dict[str, str] = {
    "ply": "ply",
    "xyz": "xyz",
    "pts": "pts",
    "txt": "txt",
    "npy": "npy",
    "npz": "npz",
}
_TEXT = {"xyz", "pts", "txt"}
_WIDTH = {"pos": 3, "normal": 3, "color": 3}
#: default column layouts of text / npy tables, by number of columns
DEFAULT_COLUMNS: Dict[int, Tuple[str, ...]] = {
    3: ("pos",),
    4: ("pos", "intensity"),
    6: ("pos", "normal"),
    7: ("pos", "intensity", "color"),
    9: ("pos", "normal", "color"),
}


def _layout(columns: Sequence[str], what: str) -> List[Tuple[str, int]]:
    columns = tuple(columns)
    if "pos" not in columns:
        raise ValueError(f"{what}: 'columns' must include 'pos' (got {columns})")
    if len(set(columns)) != len(columns):
        raise ValueError(f"{what}: 'columns' has repeated names (got {columns})")
    return [(c, _WIDTH.get(c, 1)) for c in columns]


def _split_columns(table: np.ndarray, columns: Optional[Sequence[str]], path: str
                   ) -> Dict[str, np.ndarray]:
    ncol = table.shape[1]
    if columns is None:
        if ncol not in DEFAULT_COLUMNS:
            raise ValueError(f"'{path}': cannot infer the meaning of {ncol} columns "
                             f"(known layouts: " + "; ".join(
                                 f"{k}: {' '.join(v)}" for k, v in DEFAULT_COLUMNS.items())
                             + "); pass 'columns'")
        columns = DEFAULT_COLUMNS[ncol]
    layout = _layout(columns, f"read_points('{path}')")
    width = sum(w for _, w in layout)
    if width != ncol:
        raise ValueError(f"'{path}': columns {tuple(columns)} need {width} values per row "
                         f"but the file has {ncol}")
    out, start = {}, 0
    for name, w in layout:
        block = table[:, start:start + w]
        out[name] = block if w > 1 else block[:, 0]
        start += w
    if "color" in out:
        out["color"] = _colour(out["color"])
    return out


def _colour(color: np.ndarray) -> np.ndarray:
    if color.dtype == np.uint8:
        return color
    if (np.issubdtype(color.dtype, np.integer) or
            (np.isfinite(color).all() and np.all(color == np.round(color)))) and \
            color.size and color.min() >= 0 and color.max() <= 255 and color.max() > 1:
        return color.astype(np.uint8)
    return color


def _pts_count(path: str) -> Optional[int]:
    with open(path, "rb") as f:
        for raw in f:
            tokens = raw.split(b"#", 1)[0].split()
            if not tokens:
                continue
            if len(tokens) == 1:
                try:
                    return int(tokens[0])
                except ValueError:
                    return None
            return None
    return None


def _read_text(path: str, fmt: str, columns):
    check_final_newline(path, fmt)  # a cut inside the last number still parses
    skip, expected = 0, None
    if fmt == "pts":
        expected = _pts_count(path)
        skip = 1 if expected is not None else 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data"
            table = np.loadtxt(path, dtype=np.float64, comments="#", ndmin=2, skiprows=skip)
    except Exception as exc:
        raise ValueError(f"'{path}' could not be read as a {fmt.upper()} table: {exc}") from exc
    if table.size == 0:
        raise ValueError(f"'{path}' contains no points")
    if expected is not None and expected != table.shape[0]:
        raise ValueError(f"'{path}': the PTS header declares {expected} points but the file "
                         f"holds {table.shape[0]} (truncated file?)")
    return _split_columns(table, columns, path)


def _read_npy(path: str, columns):
    try:  # memory-mapped first: a header declaring more than the file holds fails
        # here, before anything is allocated from it
        table = np.array(np.load(path, allow_pickle=False, mmap_mode="r"))
    except Exception as exc:
        raise ValueError(f"'{path}' could not be read as NPY: {exc}") from exc
    if table.ndim != 2:
        raise ValueError(f"'{path}': expected an array of shape [N, C] "
                         f"(got {list(table.shape)})")
    if table.shape[0] == 0:
        raise ValueError(f"'{path}' contains no points")
    if not np.issubdtype(table.dtype, np.number):
        raise ValueError(f"'{path}': expected a numeric array (got dtype {table.dtype})")
    return _split_columns(table, columns, path)


def _check_npz_sizes(path: str) -> None:
    r"""Each member's header (shape x item size) must fit in the member's
    uncompressed size, checked before numpy allocates the array."""
    import zipfile
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with zf.open(info) as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                else:
                    shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            need = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
            if need > info.file_size:
                raise ValueError(f"member '{info.filename}' declares shape {list(shape)} "
                                 f"({need} bytes) but holds only {info.file_size} bytes")


def _read_npz(path: str):
    try:
        _check_npz_sizes(path)
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:
        raise ValueError(f"'{path}' could not be read as NPZ: {exc}") from exc
    if "pos" not in arrays:
        raise ValueError(f"'{path}': NPZ file has no 'pos' array (has {sorted(arrays)})")
    return arrays


def _read_ply(path: str):
    from gdl_pyg.io.mesh import _read_plydata
    _, pos, attrs = _read_plydata(path)
    attrs["pos"] = pos
    return attrs


def read_points(path: PathLike, file_format: Optional[str] = None,
                columns: Optional[Sequence[str]] = None,
                dtype: torch.dtype = torch.float32) -> Data:
    r"""Reads a point cloud into a :class:`~torch_geometric.data.Data` with
    ``pos`` and, where the file has them, ``normal``, ``color`` and other
    per-point fields (see :mod:`gdl_pyg.io.points` for the layouts).

    An empty or truncated file, a ragged table, a wrong point count, NaN or
    infinite coordinates or normals raise :class:`ValueError` naming the file;
    a missing file raises :class:`FileNotFoundError`.

    .. math::
        \mathcal{P} = \{(\mathbf{p}_i, \mathbf{n}_i, \mathbf{c}_i)\}_{i=1}^{N}
        \subset \mathbb{R}^3 \times S^2 \times [0, 255]^3

    Args:
        path (str or os.PathLike): the file; its extension picks the format
            (:obj:`.ply`, :obj:`.xyz`, :obj:`.pts`, :obj:`.txt`, :obj:`.npy`,
            :obj:`.npz`).
        file_format (str, optional): overrides the extension. (default: :obj:`None`)
        columns (Sequence[str], optional): names of the columns of a text / NPY
            table, e.g. :obj:`("pos", "color")`; ``pos``, ``normal`` and
            ``color`` span three columns, any other name one. Inferred from the
            column count when :obj:`None`. (default: :obj:`None`)
        dtype (torch.dtype, optional): dtype of ``pos``, ``normal`` and other
            float fields. (default: :obj:`torch.float32`)

    Shapes:
        - **output:** ``pos`` :math:`(N, 3)`, ``normal`` :math:`(N, 3)`,
          ``color`` :math:`(N, 3)`, scalar fields :math:`(N)`.
    """
    fmt = resolve_format(path, file_format, POINT_EXTENSIONS, "read points")
    path = check_readable(path)
    if columns is not None and fmt not in _TEXT | {"npy"}:
        raise ValueError(f"'{path}': 'columns' applies to text and NPY tables only "
                         f"(got format '{fmt}')")
    if fmt in _TEXT:
        fields = _read_text(path, fmt, columns)
    elif fmt == "npy":
        fields = _read_npy(path, columns)
    elif fmt == "npz":
        fields = _read_npz(path)
    else:
        fields = _read_ply(path)
    pos = np.asarray(fields.pop("pos"))
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ValueError(f"'{path}': expected positions of shape [N, 3] "
                         f"(got {list(pos.shape)})")
    n = pos.shape[0]
    if n == 0:
        raise ValueError(f"'{path}' contains no points")
    if not np.issubdtype(pos.dtype, np.number):
        raise ValueError(f"'{path}': positions are not numeric (dtype {pos.dtype})")
    for name, value in (("coordinates", pos), ("normals", fields.get("normal"))):
        if value is not None and not np.isfinite(value).all():
            bad = np.nonzero(~np.isfinite(value).reshape(n, -1).all(axis=1))[0]
            raise ValueError(f"'{path}': {bad.size} point(s) have NaN or infinite {name} "
                             f"(first: point {int(bad[0])})")
    # checked after the cast: a coordinate finite in float64 can overflow dtype
    data = Data(pos=float_tensor(np.asarray(pos, dtype=np.float64), dtype, f"'{path}'",
                                 "point coordinate"))
    for name, value in fields.items():
        value = np.ascontiguousarray(value)
        if name in ("normal", "color") and (value.ndim != 2 or value.shape[0] != n):
            raise ValueError(f"'{path}': '{name}' has shape {list(value.shape)} for {n} points")
        if value.dtype == np.uint8 and name == "color":
            data[name] = torch.from_numpy(value)
        elif np.issubdtype(value.dtype, np.integer) or value.dtype == bool:
            data[name] = torch.from_numpy(value.astype(np.int64))
        elif np.issubdtype(value.dtype, np.floating):
            data[name] = float_tensor(value, dtype, f"'{path}'", f"field '{name}'")
        else:
            raise ValueError(f"'{path}': field '{name}' has unsupported dtype {value.dtype}")
    return data


def _fmt_for(value: np.ndarray, precision: Optional[int]) -> str:
    if np.issubdtype(value.dtype, np.integer) or value.dtype == bool:
        return "%d"
    p = precision if precision is not None else (17 if value.dtype == np.float64 else 9)
    return f"%.{p}g"


def write_points(path: PathLike, data_or_pos: Union[Data, Tensor, np.ndarray],
                 file_format: Optional[str] = None, binary: bool = True,
                 point_attrs: Sequence[str] = (), columns: Optional[Sequence[str]] = None,
                 precision: Optional[int] = None) -> None:
    r"""Writes a point cloud, atomically (to a temporary file in the same
    folder, then :func:`os.replace`), with its ``normal`` and ``color`` when
    the ``Data`` has them.

    Text tables are written as ``x y z [nx ny nz] [r g b] [extra ...]``; a
    layout that :func:`read_points` would not infer back from the column count
    (e.g. colours without normals) needs ``columns`` here and when reading.

    Args:
        path (str or os.PathLike): the file; the extension picks the format.
        data_or_pos (Data or torch.Tensor or numpy.ndarray): a ``Data`` with
            ``pos`` (and optional ``normal``, ``color``) or positions :math:`[N, 3]`.
        file_format (str, optional): overrides the extension. (default: :obj:`None`)
        binary (bool, optional): binary rather than ASCII PLY. (default: :obj:`True`)
        point_attrs (Sequence[str], optional): further per-point attributes of
            ``data`` to store (PLY vertex properties, NPZ arrays, or text / NPY
            columns after the standard ones). (default: :obj:`()`)
        columns (Sequence[str], optional): explicit column order for text /
            NPY files. (default: :obj:`None`)
        precision (int, optional): significant digits of floats in text files;
            :obj:`None` writes 9 for float32 and 17 for float64, which read back
            exactly. (default: :obj:`None`)
    """
    what = f"write_points('{os.fspath(path)}')"
    fmt = resolve_format(path, file_format, POINT_EXTENSIONS, "write points")
    pos, attrs = split_data(data_or_pos, what)
    pos = check_pos(pos, what)
    if not np.issubdtype(pos.dtype, np.floating):
        pos = pos.astype(np.float64)
    n = pos.shape[0]
    fields: Dict[str, np.ndarray] = {"pos": pos}
    for name in ("normal", "color"):
        if attrs.get(name) is not None:
            fields[name] = to_numpy(attrs[name], name)
    for name in point_attrs:
        if name not in attrs:
            raise ValueError(f"{what}: attribute '{name}' is not in the data "
                             f"(has {sorted(attrs)})")
        fields[name] = to_numpy(attrs[name], name)
    for name, value in fields.items():
        if value.shape[0] != n:
            raise ValueError(f"{what}: '{name}' has {value.shape[0]} rows for {n} points")
    if "normal" in fields:
        if fields["normal"].shape != (n, 3):
            raise ValueError(f"{what} expected 'normal' of shape [N, 3] "
                             f"(got {list(fields['normal'].shape)})")

    with atomic_path(path) as tmp:
        if fmt == "ply":
            from plyfile import PlyData, PlyElement

            from gdl_pyg.io.mesh import vertex_table
            table = vertex_table(pos, {k: v for k, v in fields.items() if k != "pos"}, what)
            PlyData([PlyElement.describe(table, "vertex")], text=not binary).write(tmp)
        elif fmt == "npz":
            np.savez(tmp, **fields)
        else:
            order = tuple(columns) if columns is not None else tuple(fields)
            missing = [c for c in order if c not in fields]
            if missing:
                raise ValueError(f"{what}: columns {missing} are not in the data")
            unused = [c for c in fields if c not in order]
            if unused:
                raise ValueError(f"{what}: fields {unused} are not in 'columns' {order}")
            for c, w in _layout(order, what):
                v = fields[c]
                if (v.ndim == 1 and w != 1) or (v.ndim > 1 and v.reshape(n, -1).shape[1] != w):
                    raise ValueError(f"{what}: '{c}' should have {w} column(s) "
                                     f"(got shape {list(v.shape)})")
            width = sum(w for _, w in _layout(order, what))
            if columns is None and DEFAULT_COLUMNS.get(width) != order:
                raise ValueError(
                    f"{what}: the layout {order} would not be recognised from its "
                    f"{width} columns when reading; pass columns={order!r} here and to "
                    f"read_points, or use PLY / NPZ")
            blocks = [fields[c].reshape(n, -1) for c in order]
            if fmt == "npy":
                np.save(tmp, np.concatenate([b.astype(np.float64) for b in blocks], axis=1))
            else:
                fmts = []
                for b in blocks:
                    fmts += [_fmt_for(b, precision)] * b.shape[1]
                table = np.concatenate([b.astype(np.float64) for b in blocks], axis=1)
                header = str(n) if fmt == "pts" else ""
                np.savetxt(tmp, table, fmt=fmts, header=header, comments="")
