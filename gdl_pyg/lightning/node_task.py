r"""Lightning tasks for node-level prediction (transductive, with node masks,
full-batch or neighbour-sampled).

:class:`NodeClassificationTask` and :class:`NodeRegressionTask` are the
node-level siblings of
:class:`~gdl_pyg.lightning.task.GraphClassificationTask` and
:class:`~gdl_pyg.lightning.task.GraphRegressionTask`: the model returns one
row per node, ``model(batch) -> [num_nodes, out]``, and the loss and metrics
of each stage are computed on

* the *seed nodes* of a neighbour-sampled batch (PyG's
  :class:`~torch_geometric.loader.NeighborLoader` convention: a batch with
  ``n_id`` and ``batch_size`` holds its ``batch_size`` seed nodes first, the
  sampled neighbourhood after them; only the seeds are scored), and
* among those, the nodes of the stage's mask (``train_mask``, ``val_mask``,
  ``test_mask``) when the batch has it,

so one graph can serve all three stages (e.g.
:class:`~gdl_pyg.lightning.graph_data.KarateClubDataModule` or
:class:`~gdl_pyg.lightning.node_data.SBMDataModule`).

Logged names, as for the graph-level tasks: ``train/loss``, ``val/loss``,
``test/loss`` and the metrics (``acc``, ``f1`` for classification; ``mse``,
``mae`` for regression) with prefixes ``train/``, ``val/``, ``test/``
(suffixed by the test set name when the data module names several), each
with ``batch_size`` the number of scored nodes.
"""
from typing import Any, Literal, Optional, Tuple

import torch
from torch import Tensor

from gdl_pyg.lightning.task import GraphClassificationTask, GraphRegressionTask

__all__ = ["NodeClassificationTask", "NodeRegressionTask", "seed_count"]


def seed_count(batch: Any) -> Optional[int]:
    r"""The number of seed nodes of a neighbour-sampled batch (the
    ``batch_size`` of a batch that also has ``n_id``, as
    :class:`~torch_geometric.loader.NeighborLoader` writes them), or
    :obj:`None` for a batch that is not a sampled subgraph."""
    get = getattr(batch, "get", None)
    if get is None or get("n_id") is None:
        return None
    size = get("batch_size")
    return None if size is None else int(size)


class _NodeLevelSteps:
    r"""Mixin: the steps of a node-level task. The host defines
    :meth:`_node_targets` (``(batch, out) -> y``, one row per node) and
    :attr:`criterion`."""

    #: Read by :class:`~gdl_pyg.lightning.callbacks.PredictionWriter`: one
    #: prediction per node.
    level = "node"

    def _node_targets(self, batch: Any, out: Tensor) -> Tensor:
        raise NotImplementedError

    def _check_node_output(self, batch: Any, out: Any, what: str) -> Tensor:
        num_nodes = int(batch.num_nodes) if getattr(batch, "num_nodes", None) is not None \
            else None
        if not isinstance(out, Tensor) or out.dim() != 2 or (
                num_nodes is not None and out.size(0) != num_nodes):
            shape = list(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"'{type(self).__name__}' expected the model to return "
                             f"[num_nodes, {what}] = [{num_nodes}, {what}] (got {shape})")
        return out

    def _masked(self, batch: Any, out: Tensor, split: str) -> Tuple[Tensor, Tensor, int]:
        r"""``(outputs, targets, number of nodes)`` of the scored nodes of
        :obj:`split`: the seed nodes of a sampled batch, then the nodes in
        the ``<split>_mask`` (all nodes without a mask)."""
        y = self._node_targets(batch, out)
        seeds = seed_count(batch)
        mask = batch.get(f"{split}_mask") if hasattr(batch, "get") else None
        if mask is not None and (mask.dtype != torch.bool or mask.shape != y.shape[:1]):
            raise ValueError(f"'{type(self).__name__}' expected '{split}_mask' to be a "
                             f"boolean tensor of shape [{y.size(0)}] (got {mask.dtype} "
                             f"{list(mask.shape)})")
        if seeds is not None:
            if not 0 <= seeds <= out.size(0):
                raise ValueError(f"'{type(self).__name__}' got a sampled batch with "
                                 f"batch_size={seeds} seed nodes but only {out.size(0)} "
                                 f"nodes")
            out, y = out[:seeds], y[:seeds]
            mask = mask[:seeds] if mask is not None else None
        if mask is None:
            return out, y, out.size(0)
        return out[mask], y[mask], int(mask.sum())

    def training_loss(self, batch: Any, batch_idx: int) -> Tensor:
        out, y, n = self._masked(batch, self(batch), "train")
        loss = self.criterion(out, y)
        # accumulate only; the epoch values are logged by the base task
        self._train_update(out.detach(), y)
        self._train_step_end(loss, n, batch_idx)
        return loss

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        out, y, n = self._masked(batch, self(batch), "val")
        self.log("val/loss", self.criterion(out, y), batch_size=n, prog_bar=True,
                 add_dataloader_idx=False, sync_dist=True)
        # update, not forward: forward also computes every metric on the batch,
        # which nothing logs (the epoch values come from the accumulated state)
        self.val_metrics.update(out, y)
        self.log_dict(self.val_metrics, batch_size=n, prog_bar=True, add_dataloader_idx=False)

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        out, y, n = self._masked(batch, self(batch), "test")
        key, metrics = self._test_collection(dataloader_idx)
        postfix = metrics.postfix or ""
        self.log("test/loss" + postfix, self.criterion(out, y), batch_size=n,
                 add_dataloader_idx=False, sync_dist=True)
        metrics.update(out, y)
        for base, metric in metrics.items(keep_base=True, copy_state=False):
            self.log(f"{metrics.prefix}{base}{postfix}", metric, batch_size=n,
                     add_dataloader_idx=False, metric_attribute=f"test_metrics.{key}.{base}")

    def _predict_rows(self, batch: Any) -> Tensor:
        out = self(batch)
        seeds = seed_count(batch)
        return out if seeds is None else out[:seeds]


class NodeClassificationTask(_NodeLevelSteps, GraphClassificationTask):
    r"""Node classification: cross-entropy on the logits ``[num_nodes, C]``
    of the scored nodes (the seed nodes of a neighbour-sampled batch, then
    those in the stage's mask), accuracy (micro, ``"acc"``) and macro F1
    (``"f1"``) via torchmetrics; :meth:`predict_step` returns the predicted
    class of every node ``[num_nodes]`` (of every seed node, ``[batch_size]``,
    for a sampled batch).

    The masks are boolean node attributes of the batch, named
    ``<mask_prefix>_mask`` with prefix ``train``, ``val`` and ``test``; a batch
    without the mask of a stage uses all (seed) nodes.

    Args:
        model (torch.nn.Module): ``model(batch) -> [num_nodes, num_classes]``
            logits.
        num_classes (int, optional): the number of classes; by default the
            model's ``num_classes`` attribute. (default: :obj:`None`)
        label_smoothing (float, optional): label smoothing of the
            cross-entropy. (default: :obj:`0.0`)
        lr (float, optional): the learning rate. (default: :obj:`1e-2`)
        weight_decay (float, optional): weight decay of the optimizer.
            (default: :obj:`5e-4`)
        optimizer (str, optional): ``"adam"`` or ``"adamw"``.
            (default: :obj:`"adam"`)
        scheduler (str, optional): ``"none"`` or ``"cosine"``.
            (default: :obj:`"none"`)
        min_lr (float, optional): (default: :obj:`0.0`)
    """

    def __init__(self, model: torch.nn.Module, num_classes: Optional[int] = None,
                 label_smoothing: float = 0.0, lr: float = 1e-2, weight_decay: float = 5e-4,
                 optimizer: Literal["adam", "adamw"] = "adam",
                 scheduler: Literal["none", "cosine"] = "none", min_lr: float = 0.0):
        super().__init__(model, num_classes=num_classes, label_smoothing=label_smoothing,
                         lr=lr, weight_decay=weight_decay, optimizer=optimizer,
                         scheduler=scheduler, min_lr=min_lr)

    def forward(self, batch: Any) -> Tensor:
        out = self._check_node_output(batch, self.model(batch), "num_classes")
        if out.size(-1) != self.num_classes:
            raise ValueError(f"'{type(self).__name__}' expected logits of shape "
                             f"[num_nodes, {self.num_classes}] (got {list(out.shape)})")
        return out

    def _node_targets(self, batch: Any, out: Tensor) -> Tensor:
        y = batch.y.view(-1).long()
        if y.numel() != out.size(0):
            raise ValueError(f"'{type(self).__name__}' expected one label per node, 'y' of "
                             f"shape [{out.size(0)}] (got {list(batch.y.shape)})")
        return y

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        r"""The predicted class of every (seed) node, ``[num_nodes]``."""
        return self._predict_rows(batch).argmax(dim=-1)


class NodeRegressionTask(_NodeLevelSteps, GraphRegressionTask):
    r"""Node regression: outputs ``[num_nodes, k]`` (per-node values,
    vectors or coordinates) against targets ``y`` of the same shape (or
    ``[num_nodes]`` for :math:`k = 1`) on the scored nodes (the seed nodes of
    a neighbour-sampled batch, then those in the stage's mask); mean squared
    and mean absolute error per entry (``"mse"``, ``"mae"``) via torchmetrics;
    :meth:`predict_step` returns the outputs ``[num_nodes, k]`` (of the seed
    nodes, ``[batch_size, k]``, for a sampled batch).

    Args:
        model (torch.nn.Module): ``model(batch) -> [num_nodes, k]``.
        loss (str, optional): ``"mse"``, ``"l1"`` or ``"smooth_l1"``.
            (default: :obj:`"mse"`)
        lr (float, optional): the learning rate. (default: :obj:`1e-3`)
        weight_decay (float, optional): weight decay of the optimizer.
            (default: :obj:`0.0`)
        optimizer (str, optional): ``"adam"`` or ``"adamw"``.
            (default: :obj:`"adam"`)
        scheduler (str, optional): ``"none"`` or ``"cosine"``.
            (default: :obj:`"none"`)
        min_lr (float, optional): (default: :obj:`0.0`)
    """

    def __init__(self, model: torch.nn.Module, loss: Literal["mse", "l1", "smooth_l1"] = "mse",
                 lr: float = 1e-3, weight_decay: float = 0.0,
                 optimizer: Literal["adam", "adamw"] = "adam",
                 scheduler: Literal["none", "cosine"] = "none", min_lr: float = 0.0):
        super().__init__(model, loss=loss, lr=lr, weight_decay=weight_decay,
                         optimizer=optimizer, scheduler=scheduler, min_lr=min_lr)

    def forward(self, batch: Any) -> Tensor:
        return self._check_node_output(batch, self.model(batch), "k")

    def _node_targets(self, batch: Any, out: Tensor) -> Tensor:
        y = batch.y.to(out.dtype)
        if y.dim() == 1:
            y = y.view(-1, 1)
        if y.dim() == 2 and y.shape != out.shape and y.numel() == out.numel() \
                and y.size(0) == out.size(0):
            y = y.view(out.size(0), -1)
        if y.shape != out.shape:
            raise ValueError(f"'{type(self).__name__}' expected node targets 'y' of shape "
                             f"{list(out.shape)} (or [{out.size(0)}] for one output) (got "
                             f"{list(batch.y.shape)})")
        return y

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        r"""The model's outputs for every (seed) node, ``[num_nodes, k]``."""
        return self._predict_rows(batch)
