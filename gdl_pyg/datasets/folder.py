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
list (names and sizes), the labels and the reading options, and is written
atomically: to a temporary file, then :func:`os.replace`, so an interrupted
``process()`` never leaves a half-written cache behind.
"""
import csv
import hashlib
import json
import os
import os.path as osp
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch_geometric.data import Data, InMemoryDataset

from gdl_pyg.io._utils import atomic_path
from gdl_pyg.io.mesh import MESH_EXTENSIONS, read_mesh
from gdl_pyg.io.points import POINT_EXTENSIONS, read_points

__all__ = ["MeshFolderDataset", "PointCloudFolderDataset"]


def _has_ext(name: str, extensions: Sequence[str]) -> bool:
    return osp.splitext(name)[1].lower().lstrip(".") in extensions


def _scan(folder: str, extensions: Sequence[str]) -> List[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and _has_ext(name, extensions):
                out.append(osp.relpath(osp.join(dirpath, name), folder))
    return sorted(out, key=lambda p: p.replace(os.sep, "/"))


class _FolderDataset(InMemoryDataset):
    r"""Shared machinery of :class:`MeshFolderDataset` and
    :class:`PointCloudFolderDataset`."""

    default_extensions: Tuple[str, ...] = ()
    kind = "file"

    def __init__(self, root: str, labels: Optional[str] = "folders",
                 extensions: Optional[Sequence[str]] = None, node_label: Optional[str] = None,
                 transform: Optional[Callable] = None, pre_transform: Optional[Callable] = None,
                 pre_filter: Optional[Callable] = None, force_reload: bool = False,
                 log: bool = True):
        root = osp.expanduser(os.fspath(root))
        exts = tuple(e.lower().lstrip(".") for e in (extensions or self.default_extensions))
        unknown = [e for e in exts if e not in self.default_extensions]
        if unknown:
            raise ValueError(f"'{type(self).__name__}' cannot read extensions {unknown} "
                             f"(supported: {list(self.default_extensions)})")
        self.extensions = exts
        self.labels = labels
        self.node_label = node_label
        self.files, self.targets, self.classes = self._index(osp.join(root, "raw"), root)
        super().__init__(root, transform, pre_transform, pre_filter, log=log,
                         force_reload=force_reload)
        self.load(self.processed_paths[0])

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
            "files": [(f.replace(os.sep, "/"), osp.getsize(osp.join(raw_dir, f)))
                      for f in self.files],
            "targets": self.targets,
            "classes": self.classes,
            "node_label": self.node_label,
            "options": self._read_options(),
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

    def process(self):
        data_list = []
        for rel, target in zip(self.files, self.targets):
            path = osp.join(self.raw_dir, rel)
            data = self._read(path)
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
        if not data_list:
            raise ValueError(f"'{type(self).__name__}': pre_filter rejected every file in "
                             f"'{self.raw_dir}'")
        # InMemoryDataset.save writes straight to its target: write a temporary file in
        # the same folder and move it into place, so a failure never leaves a partial cache
        with atomic_path(self.processed_paths[0]) as tmp:
            self.save(data_list, tmp)

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
    """
    default_extensions = tuple(MESH_EXTENSIONS)

    def __init__(self, root: str, labels: Optional[str] = "folders",
                 extensions: Optional[Sequence[str]] = None, node_label: Optional[str] = None,
                 clean: bool = False, require_manifold: bool = False,
                 transform: Optional[Callable] = None, pre_transform: Optional[Callable] = None,
                 pre_filter: Optional[Callable] = None, force_reload: bool = False,
                 log: bool = True):
        self.clean = clean
        self.require_manifold = require_manifold
        super().__init__(root, labels, extensions, node_label, transform, pre_transform,
                         pre_filter, force_reload, log)

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
    """
    default_extensions = tuple(POINT_EXTENSIONS)

    def __init__(self, root: str, labels: Optional[str] = "folders",
                 extensions: Optional[Sequence[str]] = None, node_label: Optional[str] = None,
                 columns: Optional[Sequence[str]] = None, transform: Optional[Callable] = None,
                 pre_transform: Optional[Callable] = None, pre_filter: Optional[Callable] = None,
                 force_reload: bool = False, log: bool = True):
        self.columns = tuple(columns) if columns is not None else None
        super().__init__(root, labels, extensions, node_label, transform, pre_transform,
                         pre_filter, force_reload, log)

    def _read_options(self) -> Dict[str, object]:
        return {"columns": list(self.columns) if self.columns else None}

    def _read(self, path: str) -> Data:
        ext = osp.splitext(path)[1].lower().lstrip(".")
        columns = self.columns if ext in ("xyz", "pts", "txt", "npy") else None
        return read_points(path, columns=columns)
