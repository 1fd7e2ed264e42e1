r"""Lightning data modules that serve PyG ``Data`` objects.

* :class:`GraphDataModule`: a base class holding a train / validation split,
  one or more *named* test splits (and a predict split) as lists of
  :class:`~torch_geometric.data.Data`, served by PyG's
  :class:`~torch_geometric.loader.DataLoader`. Subclasses fill the splits in
  :meth:`setup`; :attr:`test_names` names each test split, so tasks can log
  ``test/acc_<name>``.
* :class:`RotatedDigitsDataModule`: the 8x8 handwritten digits shipped with
  scikit-learn (no download), trained and validated upright, tested both
  upright and rotated: the experiment that separates a CNN from a
  rotation-equivariant group CNN.
"""
import math
from typing import Dict, List, Literal, Optional, Sequence, Tuple

import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from gdl_pyg.domains.grid import grid_to_data

__all__ = ["GraphDataModule", "RotatedDigitsDataModule", "rotate_images"]


def _check_positive_int(cls: str, name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"'{cls}' expected '{name}' to be an integer >= {minimum} "
                         f"(got {value!r})")


def _check_seed(cls: str, seed) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"'{cls}' expected an integer seed (got {type(seed).__name__})")


def _check_fractions(cls: str, val_fraction, test_fraction) -> None:
    for key, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not 0.0 < value < 1.0:
            raise ValueError(f"'{cls}' expected '{key}' in (0, 1) (got {value!r})")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(f"'{cls}' expected val_fraction + test_fraction < 1 (got "
                         f"{val_fraction} + {test_fraction})")


class GraphDataModule(LightningDataModule):
    r"""A base :class:`~lightning.pytorch.LightningDataModule` for datasets
    of PyG graphs.

    Subclasses implement :meth:`setup` and fill

    * :attr:`train_dataset`, :attr:`val_dataset`: sequences of ``Data``;
    * :attr:`test_datasets`: an ordered ``{name: sequence of Data}`` (one
      test dataloader per entry, in this order);
    * optionally :attr:`predict_datasets` (defaults to the test sets).

    Data is built in :meth:`setup`, never in ``__init__``, so that building
    the module (e.g. by the CLI to print a config) is free.

    Args:
        batch_size (int, optional): graphs per mini-batch. (default: :obj:`64`)
        num_workers (int, optional): worker processes of each
            :class:`~torch_geometric.loader.DataLoader`. (default: :obj:`0`)
    """

    def __init__(self, batch_size: int = 64, num_workers: int = 0):
        super().__init__()
        name = type(self).__name__
        _check_positive_int(name, "batch_size", batch_size)
        _check_positive_int(name, "num_workers", num_workers, minimum=0)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.train_dataset: Optional[Sequence[Data]] = None
        self.val_dataset: Optional[Sequence[Data]] = None
        self.test_datasets: Dict[str, Sequence[Data]] = {}
        self.predict_datasets: Optional[Dict[str, Sequence[Data]]] = None

    @property
    def test_names(self) -> List[str]:
        r"""The names of the test dataloaders, in order (empty before
        :meth:`setup`)."""
        return list(self.test_datasets.keys())

    @property
    def predict_names(self) -> List[str]:
        r"""The names of the predict dataloaders, in order."""
        sets = self.predict_datasets if self.predict_datasets is not None else self.test_datasets
        return list(sets.keys())

    def _loader(self, dataset: Optional[Sequence[Data]], split: str,
                shuffle: bool = False) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"'{type(self).__name__}' has no {split} split; call "
                               f"'setup' first (the Trainer does)")
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle,
                          num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_dataset, "train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_dataset, "validation")

    def test_dataloader(self) -> List[DataLoader]:
        if not self.test_datasets:
            raise RuntimeError(f"'{type(self).__name__}' has no test split; call 'setup' "
                               f"first (the Trainer does)")
        return [self._loader(ds, f"test ({name})") for name, ds in self.test_datasets.items()]

    def predict_dataloader(self) -> List[DataLoader]:
        sets = self.predict_datasets if self.predict_datasets is not None else self.test_datasets
        if not sets:
            raise RuntimeError(f"'{type(self).__name__}' has no predict split; call 'setup' "
                               f"first (the Trainer does)")
        return [self._loader(ds, f"predict ({name})") for name, ds in sets.items()]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(batch_size={self.batch_size})"


def rotate_images(images: Tensor, angles: Tensor, mode: Literal["quarter", "continuous"]
                  ) -> Tensor:
    r"""Rotates each image of ``images [B, C, H, W]`` counter-clockwise (as
    :func:`torch.rot90` with ``dims=(-2, -1)``) by its own angle.

    Args:
        images (torch.Tensor): ``[B, C, H, W]``.
        angles (torch.Tensor): ``[B]``, multiples of 90 degrees (integers
            ``k`` for :math:`k \cdot 90^\circ`) when :obj:`mode` is
            ``"quarter"``, angles in degrees when it is ``"continuous"``.
        mode (str): ``"quarter"`` for exact pixel permutations
            (:func:`torch.rot90`), ``"continuous"`` for bilinear interpolation
            about the image centre (pixels outside the image are zero).
    """
    if images.dim() != 4:
        raise ValueError(f"'rotate_images' expected images of shape [B, C, H, W] "
                         f"(got {list(images.shape)})")
    if angles.shape != images.shape[:1]:
        raise ValueError(f"'rotate_images' expected one angle per image, shape "
                         f"[{images.size(0)}] (got {list(angles.shape)})")
    if mode == "quarter":
        return torch.stack([torch.rot90(img, int(k), dims=(-2, -1))
                            for img, k in zip(images, angles.long())]) if len(images) else images
    if mode == "continuous":
        # The sampling grid of F.affine_grid is in (x = col, y = row) coordinates
        # with y pointing down; torch.rot90 (k=1) maps pixel (r, c) to (W-1-c, r),
        # i.e. a counter-clockwise turn on screen. Output pixel p samples the
        # input at R(-theta) p, with align_corners=True so that quarter turns
        # of a square image reproduce torch.rot90 exactly.
        theta = angles.to(torch.float64) * (math.pi / 180.0)
        c, s = torch.cos(theta), torch.sin(theta)
        zero = torch.zeros_like(c)
        mat = torch.stack([torch.stack([c, -s, zero], -1),
                           torch.stack([s, c, zero], -1)], 1)  # [B, 2, 3]
        B, C, H, W = images.shape
        if H != W:
            raise ValueError(f"'rotate_images' rotates square images continuously "
                             f"(got {H}x{W})")
        grid = torch.nn.functional.affine_grid(mat, [B, C, H, W], align_corners=True)
        out = torch.nn.functional.grid_sample(images.to(torch.float64), grid,
                                              mode="bilinear", padding_mode="zeros",
                                              align_corners=True)
        return out.to(images.dtype)
    raise ValueError(f"'rotate_images' expected mode 'quarter' or 'continuous' (got {mode!r})")


class RotatedDigitsDataModule(GraphDataModule):
    r"""Handwritten digits (:func:`sklearn.datasets.load_digits`: 1,797
    grey-scale 8x8 images of the digits 0-9, shipped with scikit-learn),
    as pixel-grid graphs (:func:`gdl_pyg.domains.grid_to_data`).

    Training and validation images are upright. The test split is served
    twice: the same images upright (test loader ``"upright"``) and rotated by
    a random angle per image (loader ``"rotated"``). A CNN trained upright
    loses accuracy on the rotated copies; a group CNN that is invariant to
    the rotations (p4 for quarter turns) does not.

    Each graph has ``x [64, 1]`` (pixel values scaled to :math:`[0, 1]`), the
    grid layout of :func:`~gdl_pyg.domains.grid_to_data` (``pos``,
    ``edge_index``, ``edge_offset``, ``grid_shape``), the label ``y [1]`` and
    ``angle [1]``: the rotation applied, in degrees (0 for upright images).

    Args:
        batch_size (int, optional): graphs per mini-batch. (default: :obj:`64`)
        val_fraction (float, optional): fraction of all images used for
            validation. (default: :obj:`0.15`)
        test_fraction (float, optional): fraction of all images used for
            testing. (default: :obj:`0.25`)
        rotation (str, optional): ``"quarter"``: random multiples of
            :math:`90^\circ` (exact pixel permutations, the rotations of p4);
            ``"continuous"``: random angles in :math:`[0^\circ, 360^\circ)`
            with bilinear interpolation. (default: :obj:`"quarter"`)
        pad (int, optional): zero pixels added on each side of every image
            (e.g. :obj:`4` gives 16x16 images, which keeps the corners of
            continuously rotated digits). (default: :obj:`0`)
        seed (int, optional): seeds the split and the test rotations; the
            data are a deterministic function of the arguments.
            (default: :obj:`0`)
        num_workers (int, optional): dataloader worker processes.
            (default: :obj:`0`)
    """

    #: Number of classes (digits 0-9).
    num_classes = 10

    def __init__(self, batch_size: int = 64, val_fraction: float = 0.15,
                 test_fraction: float = 0.25,
                 rotation: Literal["quarter", "continuous"] = "quarter", pad: int = 0,
                 seed: int = 0, num_workers: int = 0):
        super().__init__(batch_size=batch_size, num_workers=num_workers)
        name = type(self).__name__
        _check_fractions(name, val_fraction, test_fraction)
        if rotation not in ("quarter", "continuous"):
            raise ValueError(f"'{name}' expected rotation 'quarter' or 'continuous' "
                             f"(got {rotation!r})")
        _check_positive_int(name, "pad", pad, minimum=0)
        _check_seed(name, seed)
        self.val_fraction = float(val_fraction)
        self.test_fraction = float(test_fraction)
        self.rotation = rotation
        self.pad = pad
        self.seed = seed
        self.save_hyperparameters()

    # ------------------------------------------------------------------ data
    def load_images(self) -> Tuple[Tensor, Tensor]:
        r"""All images ``[1797, 1, H, W]`` in :math:`[0, 1]` (padded by
        :attr:`pad`) and labels ``[1797]``."""
        from sklearn.datasets import load_digits
        digits = load_digits()
        images = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
        if self.pad:
            images = torch.nn.functional.pad(images, [self.pad] * 4)
        return images, torch.as_tensor(digits.target, dtype=torch.long)

    def split_indices(self, num: int) -> Dict[str, Tensor]:
        r"""A seeded random split of ``range(num)`` into ``train``, ``val``
        and ``test`` index tensors."""
        gen = torch.Generator().manual_seed(self.seed)
        perm = torch.randperm(num, generator=gen)
        n_test = int(round(self.test_fraction * num))
        n_val = int(round(self.val_fraction * num))
        return {"test": perm[:n_test], "val": perm[n_test:n_test + n_val],
                "train": perm[n_test + n_val:]}

    def test_angles(self, num: int) -> Tensor:
        r"""The rotation of each rotated test image: integers ``k`` (for
        :math:`k \cdot 90^\circ`) or degrees, drawn from a generator seeded
        by :attr:`seed` (independent of the split)."""
        gen = torch.Generator().manual_seed(self.seed + 1)
        if self.rotation == "quarter":
            return torch.randint(0, 4, (num,), generator=gen)
        return torch.rand(num, generator=gen, dtype=torch.float64) * 360.0

    @staticmethod
    def to_graphs(images: Tensor, labels: Tensor, angles: Tensor) -> List[Data]:
        r"""One grid ``Data`` per image (``[N, C, H, W]``), exactly
        :func:`~gdl_pyg.domains.grid_to_data` of it, with ``y`` and ``angle``
        (degrees). The stencil graph of the common grid shape is built once
        and shared by all graphs (batching copies it)."""
        if images.size(0) == 0:
            return []
        template = grid_to_data(images[0])
        C = images.size(1)
        n = template.num_nodes
        graphs = []
        for img, label, angle in zip(images, labels, angles):
            graphs.append(Data(x=img.reshape(C, n).t().contiguous(), pos=template.pos,
                               edge_index=template.edge_index,
                               edge_offset=template.edge_offset,
                               grid_shape=template.grid_shape, y=label.view(1),
                               angle=angle.to(torch.float32).view(1)))
        return graphs

    def setup(self, stage: Optional[str] = None) -> None:
        images, labels = self.load_images()
        idx = self.split_indices(images.size(0))
        zeros = torch.zeros(images.size(0))
        if stage in (None, "fit", "validate") and self.train_dataset is None:
            self.train_dataset = self.to_graphs(images[idx["train"]], labels[idx["train"]],
                                                zeros[idx["train"]])
            self.val_dataset = self.to_graphs(images[idx["val"]], labels[idx["val"]],
                                              zeros[idx["val"]])
        if stage in (None, "test", "predict") and not self.test_datasets:
            test_images, test_labels = images[idx["test"]], labels[idx["test"]]
            angles = self.test_angles(test_images.size(0))
            rotated = rotate_images(test_images, angles, self.rotation)
            degrees = angles * 90.0 if self.rotation == "quarter" else angles
            self.test_datasets = {
                "upright": self.to_graphs(test_images, test_labels, zeros[idx["test"]]),
                "rotated": self.to_graphs(rotated, test_labels, degrees),
            }

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(rotation={self.rotation!r}, pad={self.pad}, "
                f"batch_size={self.batch_size}, seed={self.seed})")
