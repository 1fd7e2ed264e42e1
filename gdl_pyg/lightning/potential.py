r"""Training interatomic potentials with Lightning: :class:`EnergyForceTask`
(energies and forces, with forces from autograd also in validation and test)
and :class:`AtomsDataModule` (the EMT-labelled structures of
``datasets/atoms``, tested upright and under random rigid motions).

Logged names: ``train/loss``, ``val/loss`` and, per split, ``energy_mae``
(eV per structure), ``energy_mae_per_atom`` (eV/atom) and ``forces_mae``
(eV/Angstrom, over all force components), e.g. ``val/forces_mae``,
``test/forces_mae_rotated``.
"""
import os
from typing import Any, Dict, List, Literal, Optional, Tuple

import torch
import torchmetrics
from torch import Tensor
from torch_geometric.data import Data

from gdl_pyg.lightning.data import GraphDataModule, _check_positive_int
from gdl_pyg.lightning.task import GraphLevelTask

__all__ = ["EnergyForceTask", "AtomsDataModule"]

_CACHE_VERSION = 2  # 2: keyed on a hash of the file's bytes


def _cached_structures(path: str, read) -> List[Data]:
    r"""The structures of an extended XYZ file, parsed once with ``read`` and
    cached beside it in ``processed/`` as plain tensors (ase's parser takes
    about 20 ms per structure).

    The cache, ``processed/<file name>.<hash>.v<version>.pt``, is keyed on a
    hash of the file's bytes (an edit that keeps the size and restores the
    modification time is still seen; hashing the shipped 1.5 MB file takes
    a few milliseconds), written atomically through a temporary file named
    after its writer (the temporaries of killed writers are removed on the
    next call), and loaded with ``weights_only=True``: one that does not load
    (truncated, corrupt, or holding anything but tensors) is rebuilt with a
    warning, never unpickled. Caches of earlier contents of the same file
    are removed when a new one is written."""
    import re
    import warnings

    from gdl_pyg.datasets._cache import (
        atomic_cache_path,
        content_digest,
        file_digest,
        load_error_reason,
        remove_stale_temporaries,
    )
    folder = os.path.join(os.path.dirname(path), "processed")
    name = os.path.basename(path)
    cache = os.path.join(folder, f"{name}.{file_digest(path)}.v{_CACHE_VERSION}.pt")
    remove_stale_temporaries(folder)
    keys = ("z", "pos", "energy", "forces")
    stored = keys + ("num_atoms",)
    if os.path.exists(cache):
        try:
            blob = torch.load(cache, map_location="cpu", weights_only=True)
            if blob.get("checksum") != content_digest({k: blob[k] for k in stored}):
                raise ValueError("its tensors do not match the checksum written with them")
            sizes = blob["num_atoms"].tolist()
            parts = {k: torch.split(blob[k], sizes if k != "energy" else 1) for k in keys}
            if any(len(parts[k]) != len(sizes) for k in keys):
                raise ValueError(f"expected {len(sizes)} structures in every field")
            return [Data(**{k: parts[k][i] for k in keys}) for i in range(len(sizes))]
        except Exception as exc:  # corrupt, truncated or foreign: rebuild it
            warnings.warn(f"The cache '{cache}' of '{path}' does not load as plain tensors "
                          f"({load_error_reason(exc)}); it was not unpickled. Rebuilding it "
                          f"from '{path}'", UserWarning,
                          stacklevel=2)
    structures = read(path)
    if all(all(d.get(k) is not None for k in keys) for d in structures) and structures:
        try:
            os.makedirs(folder, exist_ok=True)
            blob = {k: torch.cat([d[k].reshape(-1, *d[k].shape[1:]) if k != "energy"
                                  else d[k].reshape(1) for d in structures]) for k in keys}
            blob["num_atoms"] = torch.tensor([d.num_nodes for d in structures])
            blob["checksum"] = content_digest({k: blob[k] for k in stored})
            with atomic_cache_path(cache) as tmp:
                torch.save(blob, tmp)
            # earlier contents of this file (and caches of version 1, keyed on
            # size and modification time) are of no further use
            stem = re.escape(name.split(".")[0])
            older = re.compile(rf"^(?:{re.escape(name)}\.[0-9a-f]{{32}}\.v\d+|"
                               rf"{stem}_\d+_\d+_v1)\.pt$")
            for other in os.listdir(folder):
                if older.match(other) and other != os.path.basename(cache):
                    os.remove(os.path.join(folder, other))
        except OSError:  # a read-only data folder: no cache
            pass
    return structures


TRAIN_FILE = "train.xyz.gz"
TEST_FILE = "test.xyz.gz"


def _num_atoms(batch: Data, num_graphs: int) -> Tensor:
    b = batch.get("batch")
    if b is None:
        return torch.full((1,), batch.num_nodes, device=batch.pos.device)
    return torch.bincount(b, minlength=num_graphs)


class EnergyForceTask(GraphLevelTask):
    r"""Fits a potential, ``model(batch) -> (energy [B], forces [N, 3])``
    (e.g. :class:`~gdl_pyg.nn.models.InteratomicPotential`), to reference
    energies ``energy [B]`` and forces ``forces [N, 3]`` with the loss

    .. math::
        \mathcal{L} = \frac{w_E}{B} \sum_{b} \left(\frac{\hat E_b - E_b}{N_b}
        \right)^2 + \frac{w_F}{3N} \sum_{i} \|\hat{\mathbf{F}}_i -
        \mathbf{F}_i\|^2

    (per-atom energy errors, so large and small structures weigh alike).
    Validation and test compute the forces by autograd too: the steps
    re-enable gradients locally (also under Lightning's inference mode, by
    cloning the batch out of it; ``trainer.inference_mode: false`` avoids
    the copy). Before fitting, the model's ``fit_statistics(train_dataset)``
    (reference energies per species, force scale) is called when the model
    has one and :obj:`fit_statistics` is set.

    Args:
        model (torch.nn.Module): ``model(batch) -> (energy, forces)``.
        energy_weight (float, optional): :math:`w_E`. (default: :obj:`1.0`)
        force_weight (float, optional): :math:`w_F`. (default: :obj:`10.0`)
        fit_statistics (bool, optional): call ``model.fit_statistics`` on
            the training set before fitting (not when resuming from a
            checkpoint). (default: :obj:`True`)
        lr (float, optional): the learning rate. (default: :obj:`1e-3`)
        weight_decay (float, optional): (default: :obj:`0.0`)
        optimizer (str, optional): ``"adam"`` or ``"adamw"``.
            (default: :obj:`"adam"`)
        scheduler (str, optional): ``"none"`` or ``"cosine"``.
            (default: :obj:`"none"`)
        min_lr (float, optional): (default: :obj:`0.0`)
    """

    def __init__(self, model: torch.nn.Module, energy_weight: float = 1.0,
                 force_weight: float = 10.0, fit_statistics: bool = True, lr: float = 1e-3,
                 weight_decay: float = 0.0, optimizer: Literal["adam", "adamw"] = "adam",
                 scheduler: Literal["none", "cosine"] = "none", min_lr: float = 0.0):
        name = type(self).__name__
        for key, value in (("energy_weight", energy_weight), ("force_weight", force_weight)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"'{name}' expected a non-negative '{key}' (got {value!r})")
        if energy_weight == 0 and force_weight == 0:
            raise ValueError(f"'{name}' expected energy_weight or force_weight > 0 (got both 0)")
        self.energy_weight = float(energy_weight)
        self.force_weight = float(force_weight)
        self.fit_statistics = bool(fit_statistics)
        super().__init__(model, lr=lr, weight_decay=weight_decay, optimizer=optimizer,
                         scheduler=scheduler, min_lr=min_lr)

    def configure_losses(self) -> None:
        self.criterion = torch.nn.MSELoss()

    def configure_metrics(self) -> None:
        self._init_metric_collections(torchmetrics.MetricCollection({
            "energy_mae": torchmetrics.MeanAbsoluteError(),
            "energy_mae_per_atom": torchmetrics.MeanAbsoluteError(),
            "forces_mae": torchmetrics.MeanAbsoluteError(),
        }, compute_groups=False))

    # ---------------------------------------------------------------- hooks
    def on_fit_start(self) -> None:
        super().on_fit_start()
        if not self.fit_statistics or not hasattr(self.model, "fit_statistics"):
            return
        if self._trainer is not None and getattr(self.trainer, "ckpt_path", None):
            return  # resuming: the statistics are in the checkpoint
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        dataset = getattr(dm, "train_dataset", None)
        if dataset:
            self.model.fit_statistics(dataset)

    # -------------------------------------------------------------- forward
    def forward(self, batch: Any) -> Tuple[Tensor, Tensor]:
        r"""``(energy [B], forces [N, 3])``, with gradients enabled (and the
        batch copied out of inference mode when needed) for the forces."""
        with torch.inference_mode(False), torch.enable_grad():
            if isinstance(batch.get("pos"), Tensor) and torch.is_inference(batch.pos):
                batch = batch.clone()
            out = self.model(batch)
        if not (isinstance(out, (tuple, list)) and len(out) == 2
                and all(isinstance(o, Tensor) for o in out)):
            raise ValueError(f"'{type(self).__name__}' expected the model to return "
                             f"(energy [num_graphs], forces [num_atoms, 3]) (got "
                             f"{type(out).__name__})")
        return out[0], out[1]

    def _evaluate(self, batch: Any) -> Tuple[Tensor, Dict[str, Tuple[Tensor, Tensor]], int]:
        name = type(self).__name__
        for key in ("energy", "forces"):
            if not isinstance(batch.get(key), Tensor):
                raise ValueError(f"'{name}' needs reference '{key}' in every batch")
        energy, forces = self(batch)
        B = int(batch.num_graphs) if hasattr(batch, "num_graphs") else 1
        y_e = batch.energy.reshape(-1).to(energy.dtype)
        y_f = batch.forces.to(forces.dtype)
        if energy.shape != y_e.shape or forces.shape != y_f.shape:
            raise ValueError(f"'{name}' expected energy {list(y_e.shape)} and forces "
                             f"{list(y_f.shape)} from the model (got {list(energy.shape)} "
                             f"and {list(forces.shape)})")
        if not self.training:  # no graph to keep (and none to mix with inference tensors)
            energy, forces = energy.detach(), forces.detach()
        n = _num_atoms(batch, B).to(energy.dtype)
        loss = self.energy_weight * self.criterion(energy / n, y_e / n) \
            + self.force_weight * self.criterion(forces, y_f)
        pairs = {"energy_mae": (energy.detach(), y_e),
                 "energy_mae_per_atom": (energy.detach() / n, y_e / n),
                 "forces_mae": (forces.detach().reshape(-1), y_f.reshape(-1))}
        return loss, pairs, B

    @staticmethod
    def _update(metrics: torchmetrics.MetricCollection, pairs) -> None:
        for base, metric in metrics.items(keep_base=True, copy_state=False):
            metric.update(*pairs[base])

    # ---------------------------------------------------------------- steps
    def _update_train_metrics(self, pairs) -> None:
        self._update(self.train_metrics, pairs)

    def training_loss(self, batch: Any, batch_idx: int) -> Tensor:
        loss, pairs, bs = self._evaluate(batch)
        self._train_update(pairs)
        self._train_step_end(loss, bs, batch_idx)  # logs the epoch values on the last step
        return loss

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        loss, pairs, bs = self._evaluate(batch)
        self.log("val/loss", loss.detach(), batch_size=bs, prog_bar=True,
                 add_dataloader_idx=False, sync_dist=True)
        self._update(self.val_metrics, pairs)
        self.log_dict(self.val_metrics, batch_size=bs, prog_bar=True, add_dataloader_idx=False)

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        loss, pairs, bs = self._evaluate(batch)
        key, metrics = self._test_collection(dataloader_idx)
        self.log("test/loss" + (metrics.postfix or ""), loss.detach(), batch_size=bs,
                 add_dataloader_idx=False, sync_dist=True)
        self._update(metrics, pairs)
        for base, metric in metrics.items(keep_base=True, copy_state=False):
            self.log(f"{metrics.prefix}{base}{metrics.postfix or ''}", metric, batch_size=bs,
                     add_dataloader_idx=False, metric_attribute=f"test_metrics.{key}.{base}")

    #: Names of :meth:`predict_step`'s outputs (columns of ``gdl-pyg predict``'s CSV files).
    prediction_names = ("energy", "forces")

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0
                     ) -> Tuple[Tensor, Tensor]:
        r"""``(energy [B], forces [N, 3])``, detached."""
        energy, forces = self(batch)
        return energy.detach(), forces.detach()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(model={self.model!r}, "
                f"energy_weight={self.energy_weight}, force_weight={self.force_weight})")


def _default_root() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.join(here, "..", "..", "datasets", "atoms")
    return os.path.normpath(repo) if os.path.isdir(repo) else os.path.join("datasets", "atoms")


class AtomsDataModule(GraphDataModule):
    r"""Small atomic systems labelled with ase's EMT calculator
    (``datasets/atoms``, written by ``scripts/make_atoms.py``): metal
    clusters and finite fcc(111) slab pieces of Al, Ni, Cu, Pd, Ag, Pt, Au
    (pure and alloyed), rattled at random, non-periodic.

    Every structure is a ``Data`` as read by :func:`gdl_pyg.io.read_xyz`:
    ``z [N]``, ``pos [N, 3]`` (Angstrom), ``energy [1]`` (eV), ``forces
    [N, 3]`` (eV/Angstrom); no edges (the models build their radius graphs).

    ``<root>/train.xyz.gz`` is split at random into training and validation
    sets; ``<root>/test.xyz.gz`` is served twice: as generated (test loader
    ``"upright"``) and moved by a random rigid motion per structure,
    :math:`\mathbf{p} \mapsto Q\mathbf{p} + \mathbf{t}` with :math:`Q \in
    O(3)` Haar-random (reflections half of the time) and :math:`\mathbf{t}
    \sim \mathcal{N}(0, \text{translation\_scale}^2 I)`, its forces rotated
    to :math:`Q\mathbf{F}` and its energy unchanged (loader ``"rotated"``).

    Args:
        root (str, optional): the folder of the files. (default: :obj:`None`,
            the repository's ``datasets/atoms``)
        val_fraction (float, optional): the share of ``train.xyz.gz`` used
            for validation. (default: :obj:`0.1`)
        num_train (int, optional): keep only this many training structures
            (after the split). (default: :obj:`None`, all)
        batch_size (int, optional): structures per mini-batch.
            (default: :obj:`32`)
        translation_scale (float, optional): standard deviation of the
            translations of the rotated test set, Angstrom. (default: :obj:`5.0`)
        seed (int, optional): seeds the split and the rigid motions.
            (default: :obj:`0`)
        num_workers (int, optional): dataloader worker processes.
            (default: :obj:`0`)
    """

    def __init__(self, root: Optional[str] = None, val_fraction: float = 0.1,
                 num_train: Optional[int] = None, batch_size: int = 32,
                 translation_scale: float = 5.0, seed: int = 0, num_workers: int = 0):
        super().__init__(batch_size=batch_size, num_workers=num_workers)
        name = type(self).__name__
        if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) \
                or not 0.0 < val_fraction < 1.0:
            raise ValueError(f"'{name}' expected 'val_fraction' in (0, 1) (got {val_fraction!r})")
        if num_train is not None:
            _check_positive_int(name, "num_train", num_train)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"'{name}' expected an integer seed (got {type(seed).__name__})")
        if isinstance(translation_scale, bool) or not isinstance(translation_scale, (int, float)) \
                or translation_scale < 0:
            raise ValueError(f"'{name}' expected a non-negative 'translation_scale' "
                             f"(got {translation_scale!r})")
        self.root = root
        self.val_fraction = float(val_fraction)
        self.num_train = num_train
        self.translation_scale = float(translation_scale)
        self.seed = seed
        self.save_hyperparameters()

    def path(self, file: str) -> str:
        r"""The path of :obj:`file` under the root folder."""
        return os.path.join(self.root if self.root is not None else _default_root(), file)

    def load(self, file: str) -> List[Data]:
        r"""The structures of :obj:`file` (``"train.xyz.gz"`` or ``"test.xyz.gz"``)."""
        from gdl_pyg.io.atoms import read_xyz
        path = self.path(file)
        if not os.path.exists(path):
            raise FileNotFoundError(f"'{type(self).__name__}' found no data file at '{path}'; "
                                    f"run 'python scripts/make_atoms.py --out "
                                    f"{os.path.dirname(path)}'")
        return _cached_structures(path, read_xyz)

    def rigid_motions(self, num: int) -> Tuple[Tensor, Tensor]:
        r"""``Q [num, 3, 3]`` (in O(3)) and ``t [num, 3]`` of the rotated test
        set (float64), from a generator seeded by :attr:`seed` + 1."""
        from gdl_pyg.groups import E3
        gen = torch.Generator().manual_seed(self.seed + 1)
        group = E3(translation_scale=self.translation_scale)
        if num == 0:
            return torch.zeros(0, 3, 3, dtype=torch.float64), torch.zeros(0, 3,
                                                                          dtype=torch.float64)
        Q, t = zip(*[group.sample(generator=gen) for _ in range(num)])
        return torch.stack(Q), torch.stack(t)

    @staticmethod
    def move(data: Data, Q: Tensor, t: Tensor) -> Data:
        r"""``data`` with ``pos`` moved to :math:`Q\mathbf{p} + \mathbf{t}` and
        ``forces`` rotated to :math:`Q\mathbf{F}` (computed in float64)."""
        out = data.clone()
        pos = data.pos.to(torch.float64) @ Q.T + t
        out.pos = pos.to(data.pos.dtype)
        if data.get("forces") is not None:
            out.forces = (data.forces.to(torch.float64) @ Q.T).to(data.forces.dtype)
        return out

    def setup(self, stage: Optional[str] = None) -> None:
        if stage in (None, "fit", "validate") and self.train_dataset is None:
            structures = self.load(TRAIN_FILE)
            perm = torch.randperm(len(structures),
                                  generator=torch.Generator().manual_seed(self.seed)).tolist()
            n_val = max(1, int(round(self.val_fraction * len(structures))))
            train = [structures[i] for i in perm[n_val:]]
            if self.num_train is not None:
                if self.num_train > len(train):
                    raise ValueError(f"'{type(self).__name__}' expected num_train <= "
                                     f"{len(train)}, the training structures of "
                                     f"'{self.path(TRAIN_FILE)}' (got {self.num_train})")
                train = train[:self.num_train]
            self.train_dataset = train
            self.val_dataset = [structures[i] for i in perm[:n_val]]
        if stage in (None, "test", "predict") and not self.test_datasets:
            test = self.load(TEST_FILE)
            Q, t = self.rigid_motions(len(test))
            self.test_datasets = {
                "upright": test,
                "rotated": [self.move(d, q, s) for d, q, s in zip(test, Q, t)],
            }

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(val_fraction={self.val_fraction}, "
                f"num_train={self.num_train}, batch_size={self.batch_size}, seed={self.seed})")
