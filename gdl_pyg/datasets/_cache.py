r"""Helpers of the processed caches (:mod:`gdl_pyg.datasets.folder`, the atoms
cache of :mod:`gdl_pyg.lightning.potential`): content keys, atomic writes
whose temporary files name their writer, and the removal of temporaries that
dead writers left behind.

**Content keys.** A cache is keyed on a hash of the bytes of its source
files, not on their size and modification time: an edit that keeps the size
and restores the time stamp (``os.utime``, ``cp -p``, ``rsync -t``, ``tar
x``, file systems with coarse time stamps) must not serve stale data. The
price is reading every source file once per opening (BLAKE2b, about 0.5 to
1 GB/s on one core, a few milliseconds for the shipped data sets).

**Temporaries.** A cache is written to ``.<name>.<host>.<pid>.<random>.tmp``
in its folder and moved into place with :func:`os.replace`, so a reader never
sees half a file. A writer killed before the move (``SIGKILL``, power loss)
leaves its temporary behind; :func:`remove_stale_temporaries`, called before
each cache is read or written, removes those whose writer is gone: written
on this host by a process id that is no longer alive, or not modified for
:obj:`STALE_AFTER` seconds (a reused process id, another host sharing the
folder, or a temporary of an older version of this package, named
``.<stem>.<random>.tmp<ext>``).
"""
import contextlib
import hashlib
import os
import os.path as osp
import pickle
import re
import socket
import time
from typing import Any, Iterator, List, Sequence

import torch

from gdl_pyg.io._utils import atomic_path

__all__ = ["file_digest", "files_digest", "atomic_cache_path", "remove_stale_temporaries",
           "load_error_reason", "content_digest", "STALE_AFTER"]

#: Seconds after which a temporary file nobody modifies is removed whatever
#: its writer (a cache takes seconds to minutes to write).
STALE_AFTER = 24 * 3600.0

_CHUNK = 1 << 20
# .<name>.<host>.<pid>.<random>.tmp, <random> as tempfile makes it
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp$")
# what gdl_pyg.io._utils.atomic_path names its temporaries (no writer id)
_LEGACY = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]{8}\.tmp(\.[A-Za-z0-9]+)?$")


def file_digest(path: str) -> str:
    r"""The BLAKE2b hash (32 hex digits) of the bytes of ``path``."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def files_digest(paths: Sequence[str]) -> List[str]:
    r""":func:`file_digest` of each path."""
    return [file_digest(p) for p in paths]


def content_digest(obj: Any) -> str:
    r"""A BLAKE2b hash (32 hex digits) of nested dicts / lists / tuples of
    tensors and plain values: every tensor's dtype, shape and bytes, dict
    keys in sorted order. Stored in a cache when it is written and compared
    when it is read, it catches what :func:`torch.load` does not check (a
    flipped byte inside a tensor's data loads silently)."""
    h = hashlib.blake2b(digest_size=16)

    def visit(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            if t.numel():
                h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(value, dict):
            h.update(f"D{len(value)}".encode())
            for key in sorted(value, key=repr):
                h.update(repr(key).encode())
                visit(value[key])
        elif isinstance(value, (list, tuple)):
            h.update(f"L{len(value)}".encode())
            for item in value:
                visit(item)
        else:
            h.update(f"V{value!r}".encode())

    visit(obj)
    return h.hexdigest()


def load_error_reason(exc: BaseException) -> str:
    r"""A short reason why a cache did not load, for a warning (torch's own
    message for a refused unpickling advises ``weights_only=False``, which
    is exactly what must not be done with a file found in a data folder)."""
    if isinstance(exc, pickle.UnpicklingError):
        return ("it holds objects other than tensors and plain values, or is corrupt "
                "(UnpicklingError)")
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    if len(text) > 200:
        text = text[:200] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname() or "host")[:64] or "host"


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process there
        return True  # unknown: the age rule decides
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    except OSError:
        return True
    return True


def remove_stale_temporaries(folder: str, max_age: float = STALE_AFTER) -> List[str]:
    r"""Removes the temporary cache files in ``folder`` whose writer is gone
    (see the module docstring); returns the names removed. Files of live
    writers and every other file are left alone; a missing folder is
    fine."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    host, now, removed = _host(), time.time(), []
    for name in names:
        match = _TEMP.match(name)
        if match is None and not _LEGACY.match(name):
            continue
        path = osp.join(folder, name)
        try:
            if not osp.isfile(path) or osp.islink(path):
                continue
            age = now - os.stat(path).st_mtime
        except OSError:
            continue
        stale = age > max_age
        if match is not None and match["host"] == host and not _pid_alive(int(match["pid"])):
            stale = True
        if stale:
            with contextlib.suppress(OSError):
                os.remove(path)
                removed.append(name)
    return removed


@contextlib.contextmanager
def atomic_cache_path(path: str) -> Iterator[str]:
    r"""Yields a temporary path beside ``path`` named after this writer
    (``.<name>.<host>.<pid>.<random>.tmp``, which
    :func:`remove_stale_temporaries` recognises); when the block exits
    normally the file replaces ``path`` (:func:`os.replace`), otherwise it is
    removed and ``path`` is left as it was
    (:func:`gdl_pyg.io._utils.atomic_path`)."""
    path = os.fspath(path)
    with atomic_path(path, prefix=f".{osp.basename(path)}.{_host()}.{os.getpid()}.",
                     suffix=".tmp") as tmp:
        yield tmp
