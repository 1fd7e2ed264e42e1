r"""In-memory datasets over folders of mesh / point-cloud files.

Two layouts of ``root/raw`` are understood:

* ``labels="folders"``: one sub-folder per class, ``raw/<class name>/<file>``;
  the sorted class names become ``dataset.classes`` and ``y`` is the index of
  the file's class;
* ``labels="<file>.csv"``: a CSV with a header and columns ``file,label``
  (``file`` relative to ``raw/``, in any folder); integer labels are used as
  they are, other labels are names mapped to the index of their sorted
  position;
* ``labels=None``: every readable file below ``raw/``, without a graph label
  (e.g. with ``node_label`` for per-vertex labels).

The processed cache ``root/processed/data_<hash>.pt`` is keyed by the file
list (names, sizes and a hash of each file's bytes), the labels, the
reading options and a description of ``pre_transform`` and ``pre_filter``
(their ``repr`` without memory addresses; for a plain function, its name and
a hash of its code), so changing any of them builds a new cache without
``force_reload``. The key hashes content rather than trusting modification
times, which ``os.utime``, ``cp -p`` or ``rsync -t`` restore after an edit:
opening the data set reads every raw file once (about 1 GB/s). The cache
is written atomically: to a temporary file named after its writer's host
and process id, then :func:`os.replace`, so an interrupted ``process()``
never leaves a half-written cache behind, and the temporaries of writers
that were killed are removed the next time the data set is opened (see
:mod:`gdl_pyg.datasets._cache`).

**Safe loading.** The cache holds tensors, plain Python values and nothing
else, and is read with ``torch.load(..., weights_only=True)`` and no
fall-back (PyG's :func:`torch_geometric.io.fs.torch_load` retries with full
unpickling when the safe load fails, and :class:`InMemoryDataset` unpickles
``processed/pre_transform.pt`` and ``pre_filter.pt``); these datasets neither
write nor read those two files. A cache that does not load safely (truncated,
corrupt, a tensor whose bytes do not match the checksum stored with it, or
holding anything but tensors and plain values) is reported with a warning
and rebuilt from ``raw/``, never executed; the raw files are only read.

**Unreadable files.** With :obj:`skip_errors=True`, files the reader rejects
(:class:`ValueError`: truncated, malformed, NaN coordinates, ...) are left
out with one :class:`UserWarning` listing each file and its error;
``dataset.skipped`` keeps that list and ``dataset.example_files`` names the
file of each example.

**Attributes.** Examples read from different files may carry different
per-vertex attributes (a PLY with ``normal``, another without). So that
PyG can collate them, only the attributes that every example has, with the
same dtype and trailing shape, are kept; the others are dropped with one
:class:`UserWarning` naming them.
"""
import csv
import hashlib
import importlib
import json
import os
import os.path as osp
import re
import sys
import types
import warnings
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch_geometric.io.fs as pyg_fs
from torch_geometric.data import Data, InMemoryDataset

from gdl_pyg.datasets._cache import (
    atomic_cache_path,
    content_digest,
    files_digest,
    load_error_reason,
    remove_stale_temporaries,
)
from gdl_pyg.io.mesh import MESH_EXTENSIONS, read_mesh
from gdl_pyg.io.points import POINT_EXTENSIONS, read_points

__all__ = ["MeshFolderDataset", "PointCloudFolderDataset"]


def _has_ext(name: str, extensions: Sequence[str]) -> bool:
    return osp.splitext(name)[1].lower().lstrip(".") in extensions


def _describe(fn: Optional[Callable]) -> Optional[str]:
    r"""A description of a ``pre_transform`` / ``pre_filter`` that is stable
    across runs: its ``repr`` without memory addresses, and for a Python
    function (or a default ``repr``) also a hash of its code / attributes, so
    two different lambdas do not share a cache."""
    if fn is None:
        return None
    text = re.sub(r" at 0x[0-9a-fA-F]+", "", repr(fn))
    if isinstance(fn, (types.FunctionType, types.MethodType)):
        func = getattr(fn, "__func__", fn)
        code = func.__code__
        closure = [c.cell_contents for c in (func.__closure__ or ())]
        blob = repr((code.co_code, code.co_consts, code.co_names, func.__defaults__,
                     closure))
        blob = re.sub(r" at 0x[0-9a-fA-F]+", "", blob)
        digest = hashlib.sha1(blob.encode()).hexdigest()[:12]
        return f"{func.__module__}.{func.__qualname__}#{digest}"
    if text.startswith("<") and hasattr(fn, "__dict__"):  # the default object repr
        state = re.sub(r" at 0x[0-9a-fA-F]+", "", repr(sorted(vars(fn).items())))
        text += "#" + hashlib.sha1(state.encode()).hexdigest()[:12]
    return text


def _data_class(name: Optional[str]) -> type:
    r"""The :class:`~torch_geometric.data.Data` subclass named ``module.qualname``
    in a cache's meta data: only classes of ``gdl_pyg`` and ``torch_geometric``
    are imported, anything else (or a missing name) gives ``Data``."""
    if not isinstance(name, str) or not name.startswith(("gdl_pyg.", "torch_geometric.")):
        return Data
    module, _, qualname = name.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), qualname)
    except (ImportError, AttributeError):
        return Data
    return cls if isinstance(cls, type) and issubclass(cls, Data) else Data


def _scan(folder: str, extensions: Sequence[str]) -> List[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and _has_ext(name, extensions):
                out.append(osp.relpath(osp.join(dirpath, name), folder))
    return sorted(out, key=lambda p: p.replace(os.sep, "/"))


def _signature(data: Data, key: str) -> Tuple:
    r"""What must agree between examples for PyG to concatenate ``data[key]``:
    the dtype and the shape outside the concatenation dimension."""
    value = data[key]
    if isinstance(value, torch.Tensor):
        dim = data.__cat_dim__(key, value)
        shape = list(value.shape)
        if dim is not None and shape:
            shape[dim] = -1  # any size along the concatenation dimension
        return ("tensor", str(value.dtype).replace("torch.", ""), tuple(shape))
    return (type(value).__name__,)


def _common_attributes(data_list: List[Data], name: str) -> List[Data]:
    r"""Keeps the attributes that every example has with the same kind (tensor
    dtype and trailing shape), warning once about the others."""
    keys = [set(d.keys()) for d in data_list]
    common = set.intersection(*keys)
    dropped: Dict[str, str] = {}
    for key in sorted(set.union(*keys) - common):
        dropped[key] = f"in {sum(key in k for k in keys)} of {len(data_list)} examples"
    for key in sorted(common):
        sigs = {_signature(d, key) for d in data_list}
        if len(sigs) > 1:
            dropped[key] = f"with different dtypes/shapes {sorted(map(str, sigs))}"
    for key in ("pos", "face", "y"):
        if key in dropped:
            raise ValueError(f"'{name}': the examples' '{key}' cannot be collated: "
                             f"{dropped[key]}")
    if dropped:
        text = "; ".join(f"'{k}' ({v})" for k, v in dropped.items())
        warnings.warn(f"'{name}' dropped attributes that not every example has "
                      f"consistently, so that they can be batched: {text}", UserWarning,
                      stacklevel=3)
        for data in data_list:
            for key in dropped:
                if key in data:
                    del data[key]
    return data_list


class _FolderDataset(InMemoryDataset):
    r"""Shared machinery of :class:`MeshFolderDataset` and
    :class:`PointCloudFolderDataset`."""

    default_extensions: Tuple[str, ...] = ()
    kind = "file"

    def __init__(self, root: str, labels: Optional[str] = "folders",
                 extensions: Optional[Sequence[str]] = None, node_label: Optional[str] = None,
                 transform: Optional[Callable] = None, pre_transform: Optional[Callable] = None,
                 pre_filter: Optional[Callable] = None, force_reload: bool = False,
                 log: bool = True, skip_errors: bool = False):
        root = osp.expanduser(os.fspath(root))
        exts = tuple(e.lower().lstrip(".") for e in (extensions or self.default_extensions))
        unknown = [e for e in exts if e not in self.default_extensions]
        if unknown:
            raise ValueError(f"'{type(self).__name__}' cannot read extensions {unknown} "
                             f"(supported: {list(self.default_extensions)})")
        self.extensions = exts
        self.labels = labels
        self.node_label = node_label
        self.skip_errors = bool(skip_errors)
        self.skipped: List[Tuple[str, str]] = []
        self.example_files: List[str] = []
        self.files, self.targets, self.classes = self._index(osp.join(root, "raw"), root)
        # the cache key hashes the raw files' bytes, once per opening
        self._digests = files_digest([osp.join(root, "raw", f) for f in self.files])
        super().__init__(root, transform, pre_transform, pre_filter, log=log,
                         force_reload=force_reload)
        if not self._load_safely(self.processed_paths[0]):
            self.process()
            self._load_safely(self.processed_paths[0], rebuilt=True)

    # -- indexing the raw folder ------------------------------------------------------
    def _index(self, raw_dir: str, root: str
               ) -> Tuple[List[str], List[Optional[int]], Optional[List[str]]]:
        name = type(self).__name__
        if not osp.isdir(raw_dir):
            raise FileNotFoundError(f"'{name}' expects its files in '{raw_dir}' "
                                    f"(folder not found)")
        if self.labels is None:
            files = _scan(raw_dir, self.extensions)
            if not files:
                raise ValueError(f"'{name}' found no {self._ext_list()} files in '{raw_dir}'")
            return files, [None] * len(files), None
        if self.labels == "folders":
            classes = sorted(d for d in os.listdir(raw_dir)
                             if osp.isdir(osp.join(raw_dir, d)) and not d.startswith(".")
                             and _scan(osp.join(raw_dir, d), self.extensions))
            if not classes:
                raise ValueError(f"'{name}' found no class sub-folders with "
                                 f"{self._ext_list()} files in '{raw_dir}' (expected "
                                 f"raw/<class name>/<file>)")
            files, targets = [], []
            for i, cls in enumerate(classes):
                for f in _scan(osp.join(raw_dir, cls), self.extensions):
                    files.append(osp.join(cls, f))
                    targets.append(i)
            return files, targets, classes
        return self._index_csv(raw_dir, root)

    def _index_csv(self, raw_dir: str, root: str):
        name = type(self).__name__
        path = os.fspath(self.labels)
        if not osp.isabs(path) and not osp.exists(path):
            path = osp.join(root, path)
        if not osp.isfile(path):
            raise FileNotFoundError(f"'{name}': labels must be 'folders', None or a CSV file; "
                                    f"'{self.labels}' was not found")
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        rows = [r for r in rows if r and any(c.strip() for c in r)]
        if not rows or [c.strip().lower() for c in rows[0][:2]] != ["file", "label"]:
            raise ValueError(f"'{path}': expected a CSV header 'file,label' "
                             f"(got {rows[0] if rows else 'an empty file'})")
        files, raw_labels = [], []
        for line, row in enumerate(rows[1:], start=2):
            if len(row) < 2:
                raise ValueError(f"'{path}' line {line}: expected 'file,label' (got {row})")
            rel, label = row[0].strip(), row[1].strip()
            if not _has_ext(rel, self.extensions):
                raise ValueError(f"'{path}' line {line}: '{rel}' is not a "
                                 f"{self._ext_list()} file")
            if not osp.isfile(osp.join(raw_dir, rel)):
                raise FileNotFoundError(f"'{path}' line {line}: '{osp.join(raw_dir, rel)}' "
                                        f"does not exist")
            files.append(rel)
            raw_labels.append(label)
        if not files:
            raise ValueError(f"'{path}' lists no files")
        try:
            ints = [int(v) for v in raw_labels]
            return files, ints, [str(v) for v in sorted(set(ints))]
        except ValueError:
            classes = sorted(set(raw_labels))
            index = {c: i for i, c in enumerate(classes)}
            return files, [index[v] for v in raw_labels], classes

    def _ext_list(self) -> str:
        return "/".join(f".{e}" for e in self.extensions)

    # -- InMemoryDataset interface --------------------------------------------------
    @property
    def raw_file_names(self) -> List[str]:
        return self.files

    @property
    def processed_file_names(self) -> List[str]:
        raw_dir = osp.join(self.root, "raw")
        key = {
            "class": type(self).__name__,
            "files": [(f.replace(os.sep, "/"), osp.getsize(osp.join(raw_dir, f)), digest)
                      for f, digest in zip(self.files, self._digests)],
            "targets": self.targets,
            "classes": self.classes,
            "node_label": self.node_label,
            "options": self._read_options(),
            "skip_errors": self.skip_errors,
            "pre_transform": _describe(self.pre_transform),
            "pre_filter": _describe(self.pre_filter),
            # 2: the meta data names the Data subclass; 3: content hashes, checksum
            "format": 3,
        }
        digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
        return [f"data_{digest}.pt"]

    def download(self):  # the files must already be there
        raise FileNotFoundError(f"'{type(self).__name__}' found missing files in "
                                f"'{self.raw_dir}' and cannot download them")

    def _read_options(self) -> Dict[str, object]:
        return {}

    def _read(self, path: str) -> Data:
        raise NotImplementedError

    # -- processing and the cache -----------------------------------------------------
    def _process(self):
        # InMemoryDataset._process also writes processed/pre_transform.pt and
        # pre_filter.pt and reads them back with full unpickling; here the
        # pre_transform / pre_filter are part of the cache key instead
        remove_stale_temporaries(self.processed_dir)
        if not self.force_reload and osp.isfile(self.processed_paths[0]):
            return
        if self.log and "PYTEST_CURRENT_TEST" not in os.environ:
            print("Processing...", file=sys.stderr)
        os.makedirs(self.processed_dir, exist_ok=True)
        self.process()
        if self.log and "PYTEST_CURRENT_TEST" not in os.environ:
            print("Done!", file=sys.stderr)

    def _load_safely(self, path: str, rebuilt: bool = False) -> bool:
        r"""Loads the cache with ``weights_only=True``; returns :obj:`False`
        (after a warning) when that fails, so that the caller rebuilds it."""
        try:
            with open(path, "rb") as f:
                out = torch.load(f, map_location="cpu", weights_only=True)
            data, slices, meta = out
            if not isinstance(data, dict) or not isinstance(meta, dict):
                raise TypeError(f"unexpected content {type(data).__name__}, "
                                f"{type(meta).__name__}")
            # torch.load does not check the bytes of tensors: a flipped byte
            # would load silently; the checksum written with the cache does
            if meta.get("checksum") != content_digest((data, slices)):
                raise ValueError("its tensors do not match the checksum written with them")
        except Exception as exc:
            if rebuilt:
                raise
            warnings.warn(f"'{type(self).__name__}': the cache '{path}' does not load as "
                          f"plain tensors ({load_error_reason(exc)}); it was not "
                          f"unpickled and is being rebuilt from '{self.raw_dir}'",
                          UserWarning, stacklevel=3)
            return False
        self.data = _data_class(meta.get("data_class")).from_dict(data)
        self.slices = slices
        self.example_files = list(meta.get("files", []))
        self.skipped = [tuple(x) for x in meta.get("skipped", [])]
        return True

    def load(self, path: str, data_cls=Data) -> None:
        r"""Loads a cache written by this class (``weights_only=True``, no
        fall-back to full unpickling)."""
        if not self._load_safely(path, rebuilt=True):  # pragma: no cover - raises
            raise ValueError(f"'{path}' could not be loaded")

    def process(self):
        data_list, files, skipped = [], [], []
        for rel, target in zip(self.files, self.targets):
            path = osp.join(self.raw_dir, rel)
            try:
                data = self._read(path)
            except ValueError as exc:
                if not self.skip_errors:
                    raise
                skipped.append((rel.replace(os.sep, "/"), str(exc)))
                continue
            if self.node_label is not None:
                if self.node_label not in data:
                    raise ValueError(f"'{path}' has no per-point attribute "
                                     f"'{self.node_label}' (has {sorted(data.keys())})")
                data.y = data[self.node_label].long()
                del data[self.node_label]
                if target is not None:
                    data.label = torch.tensor([target])
            elif target is not None:
                data.y = torch.tensor([target])
            if self.pre_filter is not None and not self.pre_filter(data):
                continue
            if self.pre_transform is not None:
                data = self.pre_transform(data)
            data_list.append(data)
            files.append(rel.replace(os.sep, "/"))
        name = type(self).__name__
        if skipped and len(skipped) == len(self.files):
            listing = "\n".join(f"  {f}: {e}" for f, e in skipped)
            raise ValueError(f"'{name}' could not read any of the {len(skipped)} file(s) in "
                             f"'{self.raw_dir}':\n{listing}")
        if skipped:
            listing = "\n".join(f"  {f}: {e}" for f, e in skipped)
            warnings.warn(f"'{name}' skipped {len(skipped)} unreadable file(s) of "
                          f"{len(self.files)} (skip_errors=True):\n{listing}", UserWarning,
                          stacklevel=2)
        if not data_list:
            raise ValueError(f"'{name}': pre_filter rejected every file in '{self.raw_dir}'")
        data_list = _common_attributes(data_list, name)
        data, slices = self.collate(data_list)
        # the Data subclass (e.g. MeshHierarchyData, whose __inc__ batches the
        # coarse levels) is stored by name and restored on loading
        cls = type(data_list[0])
        data_dict = data.to_dict()
        meta = {"files": files, "skipped": [list(x) for x in skipped],
                "data_class": f"{cls.__module__}.{cls.__qualname__}",
                "checksum": content_digest((data_dict, slices))}
        # write a temporary file in the same folder and move it into place, so a failure
        # never leaves a partial cache; only tensors and plain values are stored
        with atomic_cache_path(self.processed_paths[0]) as tmp:
            pyg_fs.torch_save((data_dict, slices, meta), tmp)

    def __repr__(self) -> str:
        extra = f", classes={len(self.classes)}" if self.classes is not None else ""
        return f"{type(self).__name__}({len(self)}{extra})"


class MeshFolderDataset(_FolderDataset):
    r"""A :class:`~torch_geometric.data.InMemoryDataset` over a folder of
    triangle-mesh files (read with :func:`gdl_pyg.io.read_mesh`), labelled by
    sub-folder, by a CSV, or per vertex (see :mod:`gdl_pyg.datasets.folder`).

    Each example has ``pos [N, 3]``, ``face [3, F]``, ``y [1]`` (class index)
    or, with ``node_label``, ``y [N]`` taken from that per-vertex attribute
    (e.g. a PLY vertex property), plus the file's other vertex attributes.

    Args:
        root (str): the dataset folder; files are read from ``root/raw`` and the
            cache is written to ``root/processed``.
        labels (str, optional): :obj:`"folders"`, the path of a ``file,label``
            CSV (absolute, or relative to the working folder or to ``root``), or
            :obj:`None`. (default: :obj:`"folders"`)
        extensions (Sequence[str], optional): extensions to read (default: all
            that :func:`~gdl_pyg.io.read_mesh` supports).
        node_label (str, optional): a per-vertex attribute to use as ``y``;
            a folder/CSV label is then stored as ``label``. (default: :obj:`None`)
        clean (bool, optional): passed to :func:`~gdl_pyg.io.read_mesh`.
            (default: :obj:`False`)
        require_manifold (bool, optional): passed to
            :func:`~gdl_pyg.io.read_mesh`. (default: :obj:`False`)
        transform (callable, optional): applied on every access. (default: :obj:`None`)
        pre_transform (callable, optional): applied once before caching.
            (default: :obj:`None`)
        pre_filter (callable, optional): keeps an example when it returns
            :obj:`True`. (default: :obj:`None`)
        force_reload (bool, optional): re-process even if a cache exists.
            (default: :obj:`False`)
        log (bool, optional): print progress while processing. (default: :obj:`True`)
        skip_errors (bool, optional): leave out files that
            :func:`~gdl_pyg.io.read_mesh` rejects (one :class:`UserWarning`
            lists them; ``dataset.skipped``) instead of raising; raises if
            every file fails. (default: :obj:`False`)

    Examples read from files with different vertex attributes keep only the
    attributes they all share (see :mod:`gdl_pyg.datasets.folder`); the
    cache is rebuilt when a raw file's content, ``pre_transform`` or
    ``pre_filter`` change, and is loaded with ``weights_only=True``.
    """
    default_extensions = tuple(MESH_EXTENSIONS)

    def __init__(self, root: str, labels: Optional[str] = "folders",
                 extensions: Optional[Sequence[str]] = None, node_label: Optional[str] = None,
                 clean: bool = False, require_manifold: bool = False,
                 transform: Optional[Callable] = None, pre_transform: Optional[Callable] = None,
                 pre_filter: Optional[Callable] = None, force_reload: bool = False,
                 log: bool = True, skip_errors: bool = False):
        self.clean = clean
        self.require_manifold = require_manifold
        super().__init__(root, labels, extensions, node_label, transform, pre_transform,
                         pre_filter, force_reload, log, skip_errors)

    def _read_options(self) -> Dict[str, object]:
        return {"clean": self.clean, "require_manifold": self.require_manifold}

    def _read(self, path: str) -> Data:
        return read_mesh(path, clean=self.clean, require_manifold=self.require_manifold)


class PointCloudFolderDataset(_FolderDataset):
    r"""A :class:`~torch_geometric.data.InMemoryDataset` over a folder of
    point-cloud files (read with :func:`gdl_pyg.io.read_points`), labelled by
    sub-folder, by a CSV, or per point (see :mod:`gdl_pyg.datasets.folder`).

    Each example has ``pos [N, 3]``, ``normal`` / ``color`` where the files
    have them, and ``y [1]`` (or ``y [N]`` with ``node_label``).

    Args:
        root (str): the dataset folder (files in ``root/raw``).
        labels (str, optional): :obj:`"folders"`, a ``file,label`` CSV, or
            :obj:`None`. (default: :obj:`"folders"`)
        extensions (Sequence[str], optional): extensions to read (default: all
            that :func:`~gdl_pyg.io.read_points` supports).
        node_label (str, optional): a per-point attribute to use as ``y``.
            (default: :obj:`None`)
        columns (Sequence[str], optional): column names of text / NPY tables,
            passed to :func:`~gdl_pyg.io.read_points`. (default: :obj:`None`)
        transform (callable, optional): applied on every access. (default: :obj:`None`)
        pre_transform (callable, optional): applied once before caching.
            (default: :obj:`None`)
        pre_filter (callable, optional): keeps an example when it returns
            :obj:`True`. (default: :obj:`None`)
        force_reload (bool, optional): re-process even if a cache exists.
            (default: :obj:`False`)
        log (bool, optional): print progress while processing. (default: :obj:`True`)
        skip_errors (bool, optional): leave out files that
            :func:`~gdl_pyg.io.read_points` rejects, with one warning, instead
            of raising. (default: :obj:`False`)
    """
    default_extensions = tuple(POINT_EXTENSIONS)

    def __init__(self, root: str, labels: Optional[str] = "folders",
                 extensions: Optional[Sequence[str]] = None, node_label: Optional[str] = None,
                 columns: Optional[Sequence[str]] = None, transform: Optional[Callable] = None,
                 pre_transform: Optional[Callable] = None, pre_filter: Optional[Callable] = None,
                 force_reload: bool = False, log: bool = True, skip_errors: bool = False):
        self.columns = tuple(columns) if columns is not None else None
        super().__init__(root, labels, extensions, node_label, transform, pre_transform,
                         pre_filter, force_reload, log, skip_errors)

    def _read_options(self) -> Dict[str, object]:
        return {"columns": list(self.columns) if self.columns else None}

    def _read(self, path: str) -> Data:
        ext = osp.splitext(path)[1].lower().lstrip(".")
        columns = self.columns if ext in ("xyz", "pts", "txt", "npy") else None
        return read_points(path, columns=columns)
