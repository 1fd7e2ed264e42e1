r"""Handwritten digits projected onto the sphere: the experiment of the
spherical CNN (train upright, test upright and under random 3D rotations)."""
from typing import Dict, List, Literal, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.data import Data

from gdl_pyg.domains.grid import grid_to_data
from gdl_pyg.domains.sphere import icosphere, project_image, sphere_to_image
from gdl_pyg.lightning.data import (GraphDataModule, RotatedDigitsDataModule, _check_fractions,
                                    _check_positive_int, _check_seed)

__all__ = ["SphericalDigitsDataModule", "random_rotations"]


def random_rotations(num: int, generator: Optional[torch.Generator] = None) -> Tensor:
    r"""``num`` Haar-random rotations ``[num, 3, 3]`` (float64): unit
    quaternions drawn uniformly on :math:`S^3` (normalised Gaussians)."""
    q = torch.randn(num, 4, generator=generator, dtype=torch.float64)
    q = q / q.norm(dim=1, keepdim=True)
    w, x, y, z = q.unbind(1)
    return torch.stack([
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        torch.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        torch.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], 1)


class SphericalDigitsDataModule(GraphDataModule):
    r"""Handwritten digits (:func:`sklearn.datasets.load_digits`, 1,797
    grey-scale 8x8 images shipped with scikit-learn) projected onto an
    :func:`~gdl_pyg.domains.icosphere` with
    :func:`~gdl_pyg.domains.sphere.project_image` (a gnomonic chart at the
    north pole, field of view :obj:`fov`).

    The split is that of
    :class:`~gdl_pyg.lightning.data.RotatedDigitsDataModule` (same seed, same
    fractions, same images). Training and validation digits are upright. The
    test split is served twice: upright (loader ``"upright"``) and rotated on
    the sphere by a Haar-random rotation :math:`R \in SO(3)` per digit
    (loader ``"rotated"``; seeded by :obj:`seed`): the value at :math:`p` is
    that of the upright projection at :math:`R^\top p`.

    With ``output="sphere"`` each graph has ``x [N, 1]`` (values in
    :math:`[0, 1]`), the icosphere's ``pos [N, 3]``, ``edge_index`` and
    ``mass [N]`` (shared by all graphs), the label ``y [1]`` and
    ``rotation [1, 3, 3]`` (the identity when upright). With
    ``output="image"`` the same spherical signals are read back into the
    planar chart (:func:`~gdl_pyg.domains.sphere.sphere_to_image`,
    :obj:`image_size` pixels a side) and served as pixel-grid graphs
    (:func:`~gdl_pyg.domains.grid_to_data`, as
    :class:`~gdl_pyg.lightning.data.RotatedDigitsDataModule` does), so a
    planar CNN sees exactly what the chart shows: the same pipeline, two
    models. A rotated digit usually leaves the chart.

    Args:
        batch_size (int, optional): graphs per mini-batch. (default: :obj:`64`)
        val_fraction (float, optional): (default: :obj:`0.15`)
        test_fraction (float, optional): (default: :obj:`0.25`)
        subdivisions (int, optional): level of the icosphere
            (:math:`10 \cdot 4^s + 2` vertices). (default: :obj:`3`)
        fov (float, optional): field of view of the chart in degrees.
            (default: :obj:`90.0`)
        pad (int, optional): zero pixels added on each side of the image
            before projecting (shrinks the digit in the chart).
            (default: :obj:`0`)
        output (str, optional): ``"sphere"`` or ``"image"``.
            (default: :obj:`"sphere"`)
        image_size (int, optional): side of the chart images of
            ``output="image"``; by default that of the padded input.
            (default: :obj:`None`)
        seed (int, optional): seeds the split and the test rotations.
            (default: :obj:`0`)
        num_workers (int, optional): dataloader worker processes.
            (default: :obj:`0`)
    """

    #: Number of classes (digits 0-9).
    num_classes = 10

    def __init__(self, batch_size: int = 64, val_fraction: float = 0.15,
                 test_fraction: float = 0.25, subdivisions: int = 3, fov: float = 90.0,
                 pad: int = 0, output: Literal["sphere", "image"] = "sphere",
                 image_size: Optional[int] = None, seed: int = 0, num_workers: int = 0):
        super().__init__(batch_size=batch_size, num_workers=num_workers)
        name = type(self).__name__
        _check_fractions(name, val_fraction, test_fraction)
        _check_positive_int(name, "subdivisions", subdivisions, minimum=0)
        if subdivisions > 7:
            raise ValueError(f"'{name}' expected 'subdivisions' <= 7 (got {subdivisions})")
        if not isinstance(fov, (int, float)) or not 0.0 < float(fov) < 180.0:
            raise ValueError(f"'{name}' expected 'fov' in (0, 180) degrees (got {fov!r})")
        _check_positive_int(name, "pad", pad, minimum=0)
        if output not in ("sphere", "image"):
            raise ValueError(f"'{name}' expected output 'sphere' or 'image' (got {output!r})")
        if image_size is not None:
            _check_positive_int(name, "image_size", image_size, minimum=2)
        _check_seed(name, seed)
        self.val_fraction, self.test_fraction = float(val_fraction), float(test_fraction)
        self.subdivisions, self.fov, self.pad = subdivisions, float(fov), pad
        self.output, self.image_size, self.seed = output, image_size, seed
        self.save_hyperparameters()

    # ------------------------------------------------------------------ data
    def load_images(self) -> Tuple[Tensor, Tensor]:
        r"""All images ``[1797, 1, H, W]`` in :math:`[0, 1]` (padded by
        :attr:`pad`) and labels ``[1797]``."""
        return RotatedDigitsDataModule.load_images(self)

    def split_indices(self, num: int) -> Dict[str, Tensor]:
        r"""The seeded split of :class:`RotatedDigitsDataModule`."""
        return RotatedDigitsDataModule.split_indices(self, num)

    def test_rotations(self, num: int) -> Tensor:
        r"""The rotation ``[num, 3, 3]`` of each rotated test digit, Haar
        random, from a generator seeded by :attr:`seed` + 1."""
        return random_rotations(num, torch.Generator().manual_seed(self.seed + 1))

    def sphere(self) -> Data:
        r"""The icosphere (float32 ``pos`` and ``mass``) all graphs share."""
        return icosphere(self.subdivisions, dtype=torch.float32)

    def project(self, images: Tensor, rotations: Optional[Tensor] = None) -> Tensor:
        r"""The spherical signals ``[B, N, 1]`` of ``images [B, 1, H, W]``,
        each rotated by its ``rotations[b]`` if given."""
        pos = self.sphere().pos
        if images.size(0) == 0:
            return images.new_zeros(0, pos.size(0), 1)
        if rotations is None:  # one call, the images as channels
            x = project_image(images[:, 0], pos, self.fov)  # [N, B]
            return x.t().unsqueeze(-1).contiguous()
        return torch.stack([project_image(img, pos, self.fov, rotation=R)
                            for img, R in zip(images, rotations)])

    def to_graphs(self, signals: Tensor, labels: Tensor, rotations: Tensor) -> List[Data]:
        r"""Graphs of the spherical signals ``[B, N, 1]``: on the icosphere
        (``output="sphere"``) or read back into the chart as pixel grids
        (``output="image"``)."""
        if signals.size(0) == 0:
            return []
        rot = rotations.to(torch.float32)
        if self.output == "sphere":
            d = self.sphere()
            return [Data(x=x, pos=d.pos, edge_index=d.edge_index, mass=d.mass,
                         y=label.view(1), rotation=R.unsqueeze(0))
                    for x, label, R in zip(signals, labels, rot)]
        size = self.image_size or (8 + 2 * self.pad)
        pos = self.sphere().pos
        # all signals as channels of one read-back: [B, size, size]
        images = sphere_to_image(signals[..., 0].t().contiguous(), pos, (size, size), self.fov)
        template = grid_to_data(images[:1])
        n = template.num_nodes
        return [Data(x=img.reshape(1, n).t().contiguous(), pos=template.pos,
                     edge_index=template.edge_index, edge_offset=template.edge_offset,
                     grid_shape=template.grid_shape, y=label.view(1), rotation=R.unsqueeze(0))
                for img, label, R in zip(images, labels, rot)]

    def setup(self, stage: Optional[str] = None) -> None:
        images, labels = self.load_images()
        idx = self.split_indices(images.size(0))
        eye = torch.eye(3, dtype=torch.float64)
        if stage in (None, "fit", "validate") and self.train_dataset is None:
            for split in ("train", "val"):
                i = idx[split]
                graphs = self.to_graphs(self.project(images[i]), labels[i],
                                        eye.expand(len(i), 3, 3))
                setattr(self, f"{split}_dataset", graphs)
        if stage in (None, "test", "predict") and not self.test_datasets:
            i = idx["test"]
            R = self.test_rotations(len(i))
            self.test_datasets = {
                "upright": self.to_graphs(self.project(images[i]), labels[i],
                                          eye.expand(len(i), 3, 3)),
                "rotated": self.to_graphs(self.project(images[i], R), labels[i], R),
            }

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(subdivisions={self.subdivisions}, fov={self.fov}, "
                f"pad={self.pad}, output={self.output!r}, batch_size={self.batch_size}, "
                f"seed={self.seed})")
