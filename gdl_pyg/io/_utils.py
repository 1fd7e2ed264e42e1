r"""Shared helpers of :mod:`gdl_pyg.io`: path checks, format resolution and
atomic writes."""
import contextlib
import os
import os.path as osp
import re
import tempfile
from typing import Dict, Iterator, Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["atomic_path", "resolve_format", "check_readable", "to_numpy", "float_tensor",
           "check_declared_size", "check_final_newline"]


def resolve_format(path: PathLike, file_format: Optional[str], formats: Dict[str, str],
                   what: str) -> str:
    r"""Returns the canonical format name of ``path``.

    ``formats`` maps lower-case extensions (without the dot) to canonical
    format names. ``file_format`` (an extension or a canonical name) overrides
    the extension of ``path`` when given.
    """
    path = os.fspath(path)
    if file_format is not None:
        key = str(file_format).lower().lstrip(".")
        if key in set(formats.values()):
            return key
        source = f"file_format={file_format!r}"
    else:
        key = osp.splitext(path)[1].lower().lstrip(".")
        source = f"extension '.{key}'" if key else "a missing extension"
    if key not in formats:
        supported = ", ".join(f".{k}" for k in sorted(formats))
        raise ValueError(f"Cannot {what} '{path}': unsupported {source} "
                         f"(supported: {supported}; or pass 'file_format')")
    return formats[key]


def check_readable(path: PathLike) -> str:
    r"""Raises :class:`FileNotFoundError` for a missing file and
    :class:`ValueError` for a directory or an empty file; returns ``str(path)``."""
    path = os.fspath(path)
    if not osp.exists(path):
        raise FileNotFoundError(f"No such file: '{path}'")
    if osp.isdir(path):
        raise ValueError(f"'{path}' is a directory, expected a file")
    if osp.getsize(path) == 0:
        raise ValueError(f"'{path}' is empty (0 bytes)")
    return path


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: PathLike, prefix: Optional[str] = None,
                suffix: Optional[str] = None) -> Iterator[str]:
    r"""Yields a temporary path in the folder of ``path`` (by default
    ``.<stem>.<random>.tmp<ext>``, keeping the extension; :obj:`prefix` /
    :obj:`suffix` override the parts around ``<random>``); when the block exits
    normally the temporary file replaces ``path`` with :func:`os.replace`
    (atomic on POSIX and Windows), keeping the mode of an existing ``path``,
    otherwise it is removed and ``path`` is left untouched.
    """
    path = os.fspath(path)
    folder = osp.dirname(osp.abspath(path))
    if not osp.isdir(folder):
        raise FileNotFoundError(f"Cannot write '{path}': folder '{folder}' does not exist")
    stem, ext = osp.splitext(osp.basename(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{stem}." if prefix is None else prefix,
                               suffix=f".tmp{ext}" if suffix is None else suffix, dir=folder)
    os.close(fd)
    try:
        yield tmp
        mode = (os.stat(path).st_mode & 0o777) if osp.exists(path) else _default_mode()
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def to_numpy(value, name: str, dtype=None) -> np.ndarray:
    r"""Converts a tensor / array-like to a numpy array (detached, on CPU)."""
    if isinstance(value, Tensor):
        value = value.detach().cpu()
        if value.dtype == torch.bfloat16:
            value = value.float()
        value = value.numpy()
    try:
        arr = np.asarray(value)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise TypeError(f"Expected '{name}' to be a tensor or array "
                        f"(got {type(value).__name__})") from exc
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    return arr


def split_data(data_or_pos, what: str) -> Tuple[np.ndarray, Dict[str, object]]:
    r"""Returns ``(pos, attributes)`` from a :class:`~torch_geometric.data.Data`
    (``pos`` plus its other attributes) or a bare ``pos`` tensor/array."""
    from torch_geometric.data import Data

    if isinstance(data_or_pos, Data):
        if getattr(data_or_pos, "pos", None) is None:
            raise ValueError(f"{what} expected a Data object with a 'pos' attribute")
        attrs = {k: v for k, v in data_or_pos.items() if k != "pos"}
        return to_numpy(data_or_pos.pos, "pos"), attrs
    return to_numpy(data_or_pos, "pos"), {}


def check_pos(pos: np.ndarray, what: str) -> np.ndarray:
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ValueError(f"{what} expected 'pos' of shape [num_nodes, 3] "
                         f"(got {list(pos.shape)})")
    if not np.issubdtype(pos.dtype, np.floating) and not np.issubdtype(pos.dtype, np.integer):
        raise TypeError(f"{what} expected a numeric 'pos' (got dtype {pos.dtype})")
    if pos.shape[0] == 0:
        raise ValueError(f"{what} received an empty 'pos' (0 points)")
    if not np.isfinite(pos).all():
        bad = int((~np.isfinite(pos)).any(axis=1).sum())
        raise ValueError(f"{what} received {bad} point(s) with NaN or infinite coordinates")
    return pos


def float_tensor(value: np.ndarray, dtype: torch.dtype, where: str, what: str) -> Tensor:
    r"""``value`` (a float array, checked finite by the caller where it must
    be) as a tensor of ``dtype``, checked **after** the cast: a value that is
    finite in the file but overflows ``dtype`` (``1e39`` in float32, ``7e4``
    in float16) raises :class:`ValueError` instead of becoming ``inf``.

    Args:
        value (numpy.ndarray): the values, any float dtype, rows first.
        dtype (torch.dtype): the requested floating dtype.
        where (str): the file (or caller), for the message.
        what (str): the quantity, *e.g.* ``"coordinates"``, for the message.
    """
    value = np.ascontiguousarray(value)
    out = torch.from_numpy(value.astype(np.float64, copy=False)).to(dtype)
    if out.is_floating_point() and out.numel():
        finite_before = torch.from_numpy(np.isfinite(value))
        lost = finite_before & ~torch.isfinite(out)
        if bool(lost.any()):
            flat = int(lost.reshape(-1).nonzero()[0, 0])
            row = int(np.unravel_index(flat, value.shape)[0]) if value.ndim else 0
            bad = float(value.reshape(-1)[flat])
            raise ValueError(f"{where}: {what} value {bad!r} (row {row}) cannot be represented "
                             f"in {dtype} (largest finite value "
                             f"{torch.finfo(dtype).max:.4g}); read the file with "
                             f"dtype=torch.float64 or rescale it")
    return out


def check_declared_size(path: str, fmt: str, what: str, count: int, min_bytes: float,
                        available: int) -> None:
    r"""Raises :class:`ValueError` when a header's declared ``count`` of
    ``what`` needs at least ``min_bytes`` bytes but only ``available`` bytes
    follow the header, before anything is allocated from the count."""
    if count < 0:
        raise ValueError(f"'{path}': the {fmt} header declares a negative number of {what} "
                         f"({count})")
    if min_bytes > available:
        raise ValueError(f"'{path}': the {fmt} header declares {count} {what}, which need at "
                         f"least {int(min_bytes)} bytes, but only {available} bytes follow the "
                         f"header (truncated file or corrupt header)")


_NUMBER_TAIL = re.compile(rb"[-+0-9.eE/]+$")


def check_final_newline(path: str, fmt: str, comment: Optional[bytes] = b"#",
                        keys: Optional[Tuple[bytes, ...]] = None) -> None:
    r"""Raises :class:`ValueError` when a text file ends without a line break
    in a line whose last token looks like a number: a file cut inside its
    last number (``967`` becomes ``96``) still parses, as a different mesh or
    cloud. A complete file that merely lacks its final newline is rejected
    too (the two cannot be told apart); the message says to append one.

    Args:
        path (str): the file.
        fmt (str): the format, for the message.
        comment (bytes, optional): the comment marker of the format.
        keys (tuple of bytes, optional): only lines starting with one of these
            statement keys are checked (*e.g.* ``(b"v", b"f")`` for OBJ).
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        f.seek(max(0, size - 4096))
        tail = f.read()
    if not tail or tail.endswith((b"\n", b"\r")):
        return
    last = tail.replace(b"\r", b"\n").rsplit(b"\n", 1)[-1]
    if comment is not None:
        last = last.split(comment, 1)[0]
    tokens = last.split()
    if not tokens or (keys is not None and tokens[0] not in keys):
        return
    if len(tokens) == 1 and keys is not None:
        return
    if _NUMBER_TAIL.search(tokens[-1]) is None:
        return
    shown = last.strip().decode("utf-8", "replace")[-60:]
    raise ValueError(f"'{path}' ends without a line break inside the line {shown!r}: the "
                     f"{fmt.upper()} file looks truncated (its last number may be cut short, "
                     f"e.g. '967' read as '96'); if the file is complete, append a newline "
                     f"to it")
