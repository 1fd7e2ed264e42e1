r"""Lightning data modules over folders of mesh and point-cloud files.

:class:`MeshDataModule` serves a :class:`~gdl_pyg.datasets.MeshFolderDataset`
or :class:`~gdl_pyg.datasets.PointCloudFolderDataset` (``--data.root`` may
point at any folder laid out like ``datasets/``: ``root/raw/<class>/<file>``
for shape classification, or ``root/raw/<file>`` with a per-vertex label for
segmentation). Geometry is preprocessing: the ``pre_transforms`` (e.g.
:class:`~gdl_pyg.transforms.MeshGeometry`, an eigenbasis, HKS features) run
once per file and are cached by the dataset in ``root/processed``.

The test split is served twice, as for the rotated digits: ``"upright"``
(the files as they are) and ``"rotated"`` (each test shape rotated by a
seeded Haar-random rotation *before* the pre-transforms, so every piece of
geometry, including the features, is recomputed from scratch on the moved
shape). A model built from rotation-invariant features and layers keeps its
accuracy on ``"rotated"``; one that reads raw coordinates does not.
"""
import os
import os.path as osp
from typing import Dict, List, Literal, Optional, Sequence

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform, Compose

from gdl_pyg.lightning.data import GraphDataModule, _check_fractions, _check_seed

__all__ = ["MeshDataModule", "PositionFeatures", "rotate_shape"]

#: Attributes that rotate with the shape (as vectors) when a raw file is rotated.
_VECTOR_KEYS = ("pos", "normal")


class PositionFeatures(BaseTransform):
    r"""Sets the node features to the raw coordinates, ``x = pos`` (optionally
    concatenated to existing features): the input of an *extrinsic* baseline,
    which is not invariant to rotations of the shape.

    Args:
        cat (bool, optional): concatenate to an existing ``x`` instead of
            replacing it. (default: :obj:`False`)
    """
    def __init__(self, cat: bool = False):
        self.cat = cat

    def forward(self, data: Data) -> Data:
        if getattr(data, "pos", None) is None:
            raise ValueError(f"'{type(self).__name__}' expected a 'Data' with 'pos' "
                             f"(got attributes {sorted(data.keys())})")
        x = getattr(data, "x", None)
        pos = data.pos
        if self.cat and x is not None:
            data.x = torch.cat([x.view(pos.size(0), -1).to(pos.dtype), pos], dim=-1)
        else:
            data.x = pos.clone()
        return data

    def __repr__(self) -> str:
        return f"{type(self).__name__}(cat={self.cat})"


def _rotation(generator: torch.Generator) -> Tensor:
    r"""A Haar-random rotation matrix ``[3, 3]`` (float64) from ``generator``:
    the QR decomposition of a Gaussian matrix with the signs fixed, and the
    determinant made +1."""
    a = torch.randn(3, 3, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r)).view(1, 3)
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def rotate_shape(data: Data, rotation: Tensor) -> Data:
    r"""A copy of a raw shape ``Data`` (as read from a file) with ``pos`` and
    ``normal`` rotated about the origin by ``rotation [3, 3]``; the rotation is
    stored as ``rotation [1, 3, 3]``."""
    out = data.clone()
    for key in _VECTOR_KEYS:
        if key in data and isinstance(data[key], Tensor):
            value = data[key]
            out[key] = (value.to(torch.float64) @ rotation.T).to(value.dtype)
    out.rotation = rotation.to(torch.float32).view(1, 3, 3)
    return out


class MeshDataModule(GraphDataModule):
    r"""Shape classification or per-vertex segmentation on a folder of mesh
    (or point-cloud) files.

    * ``labels="folders"`` (default): one sub-folder per class,
      ``root/raw/<class>/<file>``; each shape gets ``y [1]``.
    * ``labels=None`` with ``node_label="part"``: per-vertex labels read from a
      vertex property of the files (e.g. the PLY property ``part`` of
      ``datasets/deform``); each shape gets ``y [N]``.

    The shapes are split at random (seeded) into train / validation / test;
    the test shapes are served ``"upright"`` and ``"rotated"`` (see the
    module docstring). ``num_classes`` and ``num_features`` are known after
    :meth:`setup`.

    Args:
        root (str): the dataset folder (files in ``root/raw``).
            (default: :obj:`"datasets/deform"`)
        kind (str, optional): ``"mesh"`` or ``"points"``. (default: :obj:`"mesh"`)
        labels (str, optional): ``"folders"``, a ``file,label`` CSV, or
            :obj:`None` (per-vertex labels). (default: :obj:`"folders"`)
        node_label (str, optional): the per-vertex attribute used as ``y``.
            (default: :obj:`None`)
        pre_transforms (list of BaseTransform, optional): geometry and features,
            computed once per shape and cached. (default: :obj:`None`)
        transforms (list of BaseTransform, optional): applied on every access
            (e.g. augmentation); not applied to the test sets.
            (default: :obj:`None`)
        clean (bool, optional): read meshes with ``clean=True``.
            (default: :obj:`False`)
        val_fraction (float, optional): (default: :obj:`0.15`)
        test_fraction (float, optional): (default: :obj:`0.2`)
        rotate_test (bool, optional): also serve the rotated test copies.
            (default: :obj:`True`)
        seed (int, optional): seeds the split and the test rotations.
            (default: :obj:`0`)
        batch_size (int, optional): shapes per mini-batch. (default: :obj:`4`)
        num_workers (int, optional): dataloader workers. (default: :obj:`0`)
    """

    def __init__(self, root: str = "datasets/deform", kind: Literal["mesh", "points"] = "mesh",
                 labels: Optional[str] = "folders", node_label: Optional[str] = None,
                 pre_transforms: Optional[List[BaseTransform]] = None,
                 transforms: Optional[List[BaseTransform]] = None, clean: bool = False,
                 val_fraction: float = 0.15, test_fraction: float = 0.2,
                 rotate_test: bool = True, seed: int = 0, batch_size: int = 4,
                 num_workers: int = 0):
        super().__init__(batch_size=batch_size, num_workers=num_workers)
        name = type(self).__name__
        if kind not in ("mesh", "points"):
            raise ValueError(f"'{name}' expected kind 'mesh' or 'points' (got {kind!r})")
        _check_fractions(name, val_fraction, test_fraction)
        _check_seed(name, seed)
        for key, value in (("pre_transforms", pre_transforms), ("transforms", transforms)):
            if value is not None and (not isinstance(value, Sequence) or not all(
                    callable(t) for t in value)):
                raise TypeError(f"'{name}' expected '{key}' to be a list of transforms "
                                f"(got {value!r})")
        self.root = os.fspath(root)
        self.kind = kind
        self.labels = labels
        self.node_label = node_label
        self.pre_transforms = list(pre_transforms or [])
        self.transforms = list(transforms or [])
        self.clean = clean
        self.val_fraction = float(val_fraction)
        self.test_fraction = float(test_fraction)
        self.rotate_test = rotate_test
        self.seed = seed
        self.num_classes: Optional[int] = None
        self.num_features: Optional[int] = None
        self.save_hyperparameters(ignore=["pre_transforms", "transforms"])

    # ------------------------------------------------------------------ data
    @property
    def pre_transform(self) -> Optional[BaseTransform]:
        r"""The composed pre-transforms (:obj:`None` if there are none)."""
        return Compose(self.pre_transforms) if self.pre_transforms else None

    @property
    def resolved_root(self) -> str:
        r""":attr:`root`, or, for a relative path that does not exist in the
        working folder, the same path inside the checkout this package was
        installed from (so ``datasets/deform`` works from any folder)."""
        root = osp.expanduser(self.root)
        if osp.isdir(osp.join(root, "raw")) or osp.isabs(root):
            return root
        checkout = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
        candidate = osp.join(checkout, root)
        return candidate if osp.isdir(osp.join(candidate, "raw")) else root

    def dataset(self, pre_transform: Optional[BaseTransform] = None,
                transform: Optional[BaseTransform] = None):
        r"""The folder dataset of :attr:`root` with the given transforms."""
        from gdl_pyg.datasets import MeshFolderDataset, PointCloudFolderDataset
        root = self.resolved_root
        if not osp.isdir(osp.join(root, "raw")):
            raise FileNotFoundError(
                f"'{type(self).__name__}' expects the files of its data set in "
                f"'{osp.join(root, 'raw')}' (set --data.root to a folder with a raw/ "
                f"sub-folder, e.g. datasets/deform)")
        if self.kind == "mesh":
            return MeshFolderDataset(root, labels=self.labels, node_label=self.node_label,
                                     clean=self.clean, pre_transform=pre_transform,
                                     transform=transform, log=False)
        return PointCloudFolderDataset(root, labels=self.labels,
                                       node_label=self.node_label,
                                       pre_transform=pre_transform, transform=transform,
                                       log=False)

    def split_indices(self, num: int) -> Dict[str, Tensor]:
        r"""A seeded random split of ``range(num)`` into ``train``, ``val``
        and ``test`` (each non-empty)."""
        if num < 3:
            raise ValueError(f"'{type(self).__name__}' needs at least 3 shapes to split into "
                             f"train / val / test (found {num} in '{self.root}')")
        gen = torch.Generator().manual_seed(self.seed)
        perm = torch.randperm(num, generator=gen)
        n_test = max(1, int(round(self.test_fraction * num)))
        n_val = max(1, int(round(self.val_fraction * num)))
        if n_test + n_val >= num:
            raise ValueError(f"'{type(self).__name__}': {num} shapes leave no training shape "
                             f"with val_fraction={self.val_fraction}, "
                             f"test_fraction={self.test_fraction}")
        return {"test": perm[:n_test], "val": perm[n_test:n_test + n_val],
                "train": perm[n_test + n_val:]}

    def rotated_test_set(self, indices: Tensor) -> List[Data]:
        r"""The test shapes, each rotated by a Haar-random rotation (seeded by
        :attr:`seed` and its index) before the pre-transforms run on it."""
        raw = self.dataset()
        pre = self.pre_transform
        out = []
        for i in indices.tolist():
            gen = torch.Generator().manual_seed(self.seed * 100_003 + 7919 * i + 1)
            data = rotate_shape(raw[i], _rotation(gen))
            out.append(pre(data) if pre is not None else data)
        return out

    def setup(self, stage: Optional[str] = None) -> None:
        transform = Compose(self.transforms) if self.transforms else None
        full = self.dataset(self.pre_transform)
        idx = self.split_indices(len(full))
        y = full._data.y if full._data is not None else None
        self.num_classes = int(y.max()) + 1 if y is not None and y.numel() else None
        first = full[0]
        self.num_features = first.x.view(first.num_nodes, -1).size(1) \
            if getattr(first, "x", None) is not None else None
        if stage in (None, "fit", "validate") and self.train_dataset is None:
            train = self.dataset(self.pre_transform, transform)
            self.train_dataset = train[idx["train"]]
            self.val_dataset = full[idx["val"]]
        if stage in (None, "test", "predict") and not self.test_datasets:
            sets = {"upright": full[idx["test"]]}
            if self.rotate_test:
                sets["rotated"] = self.rotated_test_set(idx["test"])
            self.test_datasets = sets

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={self.root!r}, kind={self.kind!r}, "
                f"batch_size={self.batch_size}, seed={self.seed})")
