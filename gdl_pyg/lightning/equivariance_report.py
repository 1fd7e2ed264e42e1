r"""The equivariance report of a trained model: its error under its declared
symmetry group, measured on validation batches in float64, saved beside the
checkpoint as ``equivariance.json`` and printed as one line.

:func:`model_symmetries` says which group each shipped model declares (and,
for models that do not respect an obvious larger group, a *contrast* check:
a plain CNN under quarter turns, a coordinate-fed GNN under rotations), with
the field representations and the forward call that the model's own tests
use. :func:`measure_equivariance` runs one such check on a list of batches
with the machinery of :mod:`gdl_pyg.testing.equivariance` and returns the
largest and mean relative error over (batch, group element) pairs.
:class:`EquivarianceReport` is the Lightning callback that does both at the
end of :meth:`~lightning.pytorch.Trainer.fit`.

A user's own model can declare its symmetry with a method
``equivariance_checks(self) -> list of SymmetryCheck``, which takes
precedence over the built-in table.
"""
import copy
import json
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from torch_geometric.data import Batch, Data

from gdl_pyg.groups.base import Group
from gdl_pyg.lightning.callbacks import run_dir

__all__ = ["SymmetryCheck", "model_symmetries", "measure_equivariance",
           "EquivarianceReport"]


@dataclass
class SymmetryCheck:
    r"""One equivariance check of a model: the group and how to apply it.

    Attributes:
        group (Group): the symmetry group.
        role (str): ``"declared"`` (the model claims this symmetry; the error
            should be round-off) or ``"contrast"`` (a group the model is not
            built for, reported to show what a broken symmetry looks like).
        fields (dict, optional): representations of the input attributes.
        out_fields (dict, optional): representations of the outputs.
        forward (callable, optional): ``forward(module, data)``; by default
            ``module(data)``.
        output_keys (list of str, optional): names of the outputs.
        num_samples (int): random elements per batch for infinite groups.
        max_elements (int, optional): at most this many elements of a finite
            group per batch (drawn with a fixed seed); :obj:`None` for all.
        per_example (bool): split each batch into its examples (at most
            :obj:`max_examples`) and check them one by one (needed when the
            forward recomputes per-mesh preprocessing).
        max_examples (int): examples per batch when :obj:`per_example`.
        note (str): a remark printed in the report.
    """
    group: Group
    role: str = "declared"
    fields: Optional[Mapping[str, Any]] = None
    out_fields: Optional[Mapping[str, Any]] = None
    forward: Optional[Callable[[Any, Data], Any]] = None
    output_keys: Optional[Sequence[str]] = None
    num_samples: int = 4
    max_elements: Optional[int] = None
    per_example: bool = False
    max_examples: int = 2
    note: str = ""

    def __post_init__(self):
        if self.role not in ("declared", "contrast"):
            raise ValueError(f"'SymmetryCheck' expected role 'declared' or 'contrast' (got "
                             f"{self.role!r})")


def _call(module, data):
    return module(data)


def _rows_as_points(module, data):
    r"""A graph-level output ``[B, n * 3]`` of per-node coordinates (the
    n-body configs) back to node level ``[N, 3]``."""
    return module(data).reshape(-1, 3)


def _find_transform(datamodule: Any, cls: type) -> Optional[Any]:
    if datamodule is None:
        return None
    for name in ("pre_transforms", "transforms"):
        for t in getattr(datamodule, name, None) or []:
            if isinstance(t, cls):
                return t
    return None


def model_symmetries(model: torch.nn.Module, datamodule: Any = None) -> List[SymmetryCheck]:
    r"""The symmetry checks of ``model``: its declared group(s) first, then
    any contrast. An empty list means the group could not be determined.

    Args:
        model (torch.nn.Module): the network (a task's ``model``).
        datamodule (LightningDataModule, optional): consulted for per-mesh
            preprocessing that a check must recompute (GEM-CNN's
            :class:`~gdl_pyg.transforms.MeshHierarchy`).
    """
    own = getattr(model, "equivariance_checks", None)
    if callable(own):
        return list(own())

    from gdl_pyg.groups import (E3, CyclicGroup, DihedralGroup, GaugeGroup, IcosahedralGroup,
                                Permutations, TimeWarping)
    from gdl_pyg.nn import models as M

    def isa(name: str) -> bool:
        cls = getattr(M, name, None)
        return cls is not None and isinstance(model, cls)

    if isa("GCNN"):
        group = DihedralGroup(4) if getattr(model, "group", "p4") == "p4m" else CyclicGroup(4)
        return [SymmetryCheck(group)]
    if isa("GridCNN"):
        return [SymmetryCheck(Permutations(), num_samples=2,
                              note="a CNN declares translations; checked: node order"),
                SymmetryCheck(CyclicGroup(4), role="contrast",
                              note="quarter turns, which a plain CNN does not respect")]
    if isa("SphericalCNN"):
        # the group acts on one sphere at a time (it permutes its vertices)
        return [SymmetryCheck(IcosahedralGroup(), max_elements=12, per_example=True,
                              note="12 of the 60 rotations per example")]
    if isa("EGNN"):
        rep = "vector" if getattr(model, "task", "positions") == "displacements" else "point"
        graph = getattr(model, "level", "node") == "graph"
        return [SymmetryCheck(E3(), fields={"vel": "vector"} if model.velocity else None,
                              out_fields={"out": rep},
                              forward=_rows_as_points if graph else None)]
    if isa("NBodyGNN"):
        graph = getattr(model, "level", "node") == "graph"
        fwd = _rows_as_points if graph else None
        return [SymmetryCheck(Permutations(), forward=fwd, num_samples=2),
                SymmetryCheck(E3(), role="contrast", fields={"vel": "vector"},
                              out_fields={"out": "point"}, forward=fwd,
                              note="rotations, which a GNN fed coordinates does not respect")]
    if isa("TensorFieldNetwork"):
        output = getattr(model, "output", "scalar")
        rep = {"position": "point", "vector": "vector"}.get(output, "trivial")
        graph = getattr(model, "level", "node") == "graph" and rep != "trivial"
        return [SymmetryCheck(E3(), fields={"vel": "vector"} if model.use_vel else None,
                              out_fields={"out": rep},
                              forward=_rows_as_points if graph else None)]
    if isa("InteratomicPotential"):
        kw = dict(out_fields={"forces": "vector"}, output_keys=["energy", "forces"])
        if model.backbone == "gnn_xyz":
            return [SymmetryCheck(Permutations(), output_keys=["energy", "forces"],
                                  num_samples=2),
                    SymmetryCheck(E3(), role="contrast", note="rotations, which the "
                                  "coordinate-fed baseline does not respect", **kw)]
        return [SymmetryCheck(E3(), **kw)]
    if isa("GEMCNN"):
        group = GaugeGroup(num_angles=model.num_samples)
        note = f"gauge angles in multiples of 2pi/{model.num_samples}"
        if not model.pooling:
            return [SymmetryCheck(group, num_samples=2, note=note)]
        from gdl_pyg.transforms import MeshHierarchy
        hierarchy = _find_transform(datamodule, MeshHierarchy)
        if hierarchy is None:
            return []

        def with_hierarchy(module, data):
            return module(hierarchy(data))

        return [SymmetryCheck(group, forward=with_hierarchy, num_samples=2, per_example=True,
                              note=note + "; hierarchy recomputed")]
    if isa("GeodesicCNN"):
        return [SymmetryCheck(GaugeGroup(), num_samples=2)]
    if isa("DiffusionNet"):
        return [SymmetryCheck(Permutations(), num_samples=2, note="node order (rigid motions "
                              "would need the Laplacian eigenbasis recomputed)")]
    if isa("SequenceClassifier"):
        exact = model.time_aware and getattr(model, "cell", None) == "leaky"
        return [SymmetryCheck(TimeWarping(), output_keys=["logits"],
                              note="" if exact else "approximate invariance by design")]
    if any(isa(n) for n in ("GNN", "GraphTransformer", "DeepSets", "MoNet")):
        return [SymmetryCheck(Permutations(), num_samples=2)]
    return []


def _errors_of(module, data: Data, check: SymmetryCheck, gen: torch.Generator) -> List[float]:
    r"""The relative error of ``module`` on ``data`` at each group element."""
    from gdl_pyg.testing.equivariance import _as_data, _cast

    group = check.group
    data = _cast(data, torch.float64)
    run = check.forward if check.forward is not None else _call
    try:
        elements = list(group.elements(data))
        if check.max_elements is not None and len(elements) > check.max_elements:
            pick = torch.randperm(len(elements), generator=gen)[:check.max_elements]
            elements = [elements[i] for i in pick.tolist()]
    except NotImplementedError:
        elements = [group.sample(data, generator=gen) for _ in range(check.num_samples)]
    errors = []
    with torch.no_grad():
        out, keys = _as_data(run(module, data), data, check.output_keys)
        for g in elements:
            data_g = group.act(g, data, check.fields)
            out_g, _ = _as_data(run(module, data_g), data_g, check.output_keys)
            expected = group.act(g, out, check.out_fields)
            worst = 0.0
            for key in keys:
                a, e = out_g[key], expected[key]
                if a.shape != e.shape:
                    raise ValueError(f"Output '{key}' changed shape under {group.name}: "
                                     f"{list(e.shape)} -> {list(a.shape)}")
                if a.numel() == 0:
                    continue
                rel = float((a - e).abs().max()) / max(1.0, float(e.abs().max()))
                worst = max(worst, rel if rel == rel else math.inf)
            errors.append(worst)
    return errors


def _finite(value: float):
    return value if math.isfinite(value) else "inf"


def _fmt(value) -> str:
    return f"{value:.1e}" if isinstance(value, float) else str(value)


def measure_equivariance(model: torch.nn.Module, batches: Sequence[Data],
                         check: SymmetryCheck, seed: int = 0) -> Dict[str, Any]:
    r"""Measures the equivariance error of ``model`` under ``check.group`` on
    ``batches``, in float64 (on a copy of the model, in eval mode).

    The error of one (batch, element) pair is
    :math:`\max |f(g x) - g f(x)| / \max(1, \max |g f(x)|)` over the outputs,
    as in :func:`~gdl_pyg.testing.equivariance_error`.

    Returns:
        dict: ``group``, ``role``, ``num_samples`` (the number of
        (batch, element) pairs), ``max_error``, ``mean_error``, ``dtype`` and
        ``note``.
    """
    module = copy.deepcopy(model).to(torch.float64).eval()
    gen = torch.Generator().manual_seed(seed)
    errors: List[float] = []
    for batch in batches:
        batch = batch.to("cpu") if hasattr(batch, "to") else batch
        if check.per_example and isinstance(batch, Batch):
            items = batch.to_data_list()[:check.max_examples]
        else:
            items = [batch]
        for item in items:
            errors.extend(_errors_of(module, item, check, gen))
    return {
        "group": check.group.name,
        "role": check.role,
        "num_samples": len(errors),
        # a NaN / infinite error (a diverged model) is stored as the string "inf"
        "max_error": _finite(max(errors)) if errors else None,
        "mean_error": _finite(sum(errors) / len(errors)) if errors else None,
        "dtype": "float64",
        "note": check.note,
    }


class EquivarianceReport(Callback):
    r"""At the end of :meth:`~lightning.pytorch.Trainer.fit`, measures the
    trained model's equivariance error under its declared symmetry group on
    the first :obj:`num_batches` validation batches, in float64, and writes
    it as ``equivariance.json`` into the run folder (beside ``checkpoints/``)
    and prints it as one line, e.g.
    ``Equivariance (GCNN, declared C4): max 3.1e-16, mean 1.2e-16 over 8
    samples in float64``.

    The group comes from :func:`model_symmetries` (applied to the task's
    ``model`` attribute). A model whose group cannot be determined gets a
    report saying so; a check that fails to run is reported with its error
    message. Neither stops the run. Runs on rank 0 only, and not during
    ``fast_dev_run``.

    Args:
        num_batches (int, optional): validation batches to use. (default: :obj:`2`)
        filename (str, optional): the JSON file in the run folder.
            (default: :obj:`"equivariance.json"`)
        seed (int, optional): seeds the sampled group elements. (default: :obj:`0`)
    """

    def __init__(self, num_batches: int = 2, filename: str = "equivariance.json",
                 seed: int = 0):
        super().__init__()
        if isinstance(num_batches, bool) or not isinstance(num_batches, int) or num_batches < 1:
            raise ValueError(f"'EquivarianceReport' expected 'num_batches' to be a positive "
                             f"integer (got {num_batches!r})")
        if not filename.lower().endswith(".json"):
            raise ValueError(f"'EquivarianceReport' writes JSON; expected a file name ending "
                             f"in '.json' (got {filename!r})")
        self.num_batches = num_batches
        self.filename = filename
        self.seed = seed
        self.report: Optional[Dict[str, Any]] = None
        self.path: Optional[str] = None

    def _batches(self, trainer: Trainer) -> List[Any]:
        loaders = trainer.val_dataloaders
        if loaders is None:
            dm = getattr(trainer, "datamodule", None)
            loaders = dm.val_dataloader() if dm is not None else None
        if loaders is None:
            return []
        if isinstance(loaders, (list, tuple)):
            loaders = loaders[0] if loaders else None
        elif isinstance(loaders, dict):
            loaders = next(iter(loaders.values()), None)
        out = []
        for batch in loaders or []:
            out.append(batch)
            if len(out) >= self.num_batches:
                break
        return out

    def build_report(self, model: torch.nn.Module, batches: Sequence[Any],
                     datamodule: Any = None) -> Dict[str, Any]:
        r"""The report of ``model`` on ``batches`` as a JSON-ready dict: the
        first declared check's ``group``, ``num_samples``, ``max_error``,
        ``mean_error`` and ``dtype`` at the top level, every check under
        ``checks``."""
        report: Dict[str, Any] = {"model": type(model).__name__, "dtype": "float64",
                                  "num_batches": len(batches), "group": None,
                                  "num_samples": 0, "max_error": None, "mean_error": None,
                                  "checks": []}
        checks = model_symmetries(model, datamodule)
        if not checks:
            report["note"] = (f"no declared symmetry group is known for "
                              f"'{type(model).__name__}'; add an 'equivariance_checks()' "
                              f"method to the model to declare one")
            return report
        if not batches:
            report["note"] = "no validation batches to measure on"
            return report
        for check in checks:
            try:
                res = measure_equivariance(model, batches, check, seed=self.seed)
            except Exception as err:  # a report, not a gate: record why it did not run
                res = {"group": check.group.name, "role": check.role, "num_samples": 0,
                       "max_error": None, "mean_error": None, "dtype": "float64",
                       "note": check.note, "error": f"{type(err).__name__}: {err}"}
            report["checks"].append(res)
        declared = next((c for c in report["checks"] if c["role"] == "declared"), None)
        if declared is not None:
            for key in ("group", "num_samples", "max_error", "mean_error"):
                report[key] = declared[key]
        return report

    @staticmethod
    def summary(report: Dict[str, Any]) -> str:
        r"""The report as one line."""
        head = f"Equivariance ({report['model']}"
        if not report["checks"]:
            return f"{head}): not measured, {report.get('note', '')}"
        parts = []
        for c in report["checks"]:
            if c.get("error") or c["max_error"] is None:
                parts.append(f"{c['role']} {c['group']}: not measured "
                             f"({c.get('error', 'no samples')})")
            else:
                parts.append(f"{c['role']} {c['group']}: max {_fmt(c['max_error'])}, mean "
                             f"{_fmt(c['mean_error'])} over {c['num_samples']} samples")
        return f"{head}, float64): " + "; ".join(parts)

    @rank_zero_only
    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.fast_dev_run:
            return
        model = getattr(pl_module, "model", pl_module)
        dm = getattr(trainer, "datamodule", None)
        self.report = self.build_report(model, self._batches(trainer), dm)
        self.path = os.path.join(run_dir(trainer), self.filename)
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        with open(self.path, "w") as f:
            json.dump(self.report, f, indent=2)
        rank_zero_info(self.summary(self.report) + f" -> {self.path}")

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(num_batches={self.num_batches}, "
                f"filename={self.filename!r})")
