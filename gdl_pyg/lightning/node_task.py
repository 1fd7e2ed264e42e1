r"""A Lightning task for node classification (transductive, with node masks).

:class:`NodeClassificationTask` is the node-level sibling of
:class:`~gdl_pyg.lightning.task.GraphClassificationTask`: the model returns
one row of logits per node, ``model(batch) -> [num_nodes, C]``, and the loss
and metrics of each stage are computed on the nodes of the stage's mask
(``train_mask``, ``val_mask``, ``test_mask``), so one graph can serve all
three stages (e.g. :class:`~gdl_pyg.lightning.graph_data.KarateClubDataModule`).

Logged names, as for the graph-level tasks: ``train/loss``, ``train/acc``,
``train/f1``, ``val/loss``, ``val/acc``, ``val/f1``, ``test/loss``,
``test/acc``, ``test/f1`` (suffixed by the test set name when the data module
names several), each with ``batch_size`` the number of masked nodes.
"""
from typing import Any, Literal, Optional

import torch
from torch import Tensor

from gdl_pyg.lightning.task import GraphClassificationTask

__all__ = ["NodeClassificationTask"]


class NodeClassificationTask(GraphClassificationTask):
    r"""Node classification: cross-entropy on the logits ``[num_nodes, C]``
    of the nodes in the stage's mask, accuracy (micro, ``"acc"``) and macro F1
    (``"f1"``) via torchmetrics; :meth:`predict_step` returns the predicted
    class of every node ``[num_nodes]``.

    The masks are boolean node attributes of the batch, named
    ``<mask_prefix>_mask`` with prefix ``train``, ``val`` and ``test``; a batch
    without the mask of a stage uses all nodes.

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
        out = self.model(batch)
        num_nodes = int(batch.num_nodes) if hasattr(batch, "num_nodes") else None
        if not isinstance(out, Tensor) or out.dim() != 2 or (
                num_nodes is not None and out.size(0) != num_nodes):
            shape = list(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"'{type(self).__name__}' expected the model to return "
                             f"[num_nodes, num_classes] = [{num_nodes}, {self.num_classes}] "
                             f"(got {shape})")
        if out.size(-1) != self.num_classes:
            raise ValueError(f"'{type(self).__name__}' expected logits of shape "
                             f"[num_nodes, {self.num_classes}] (got {list(out.shape)})")
        return out

    def _masked(self, batch: Any, out: Tensor, split: str):
        r"""``(logits, targets, number of nodes)`` of the nodes in the mask
        of :obj:`split`."""
        y = batch.y.view(-1).long()
        if y.numel() != out.size(0):
            raise ValueError(f"'{type(self).__name__}' expected one label per node, 'y' of "
                             f"shape [{out.size(0)}] (got {list(batch.y.shape)})")
        mask = batch.get(f"{split}_mask") if hasattr(batch, "get") else None
        if mask is None:
            return out, y, out.size(0)
        if mask.dtype != torch.bool or mask.shape != y.shape:
            raise ValueError(f"'{type(self).__name__}' expected '{split}_mask' to be a "
                             f"boolean tensor of shape [{y.numel()}] (got {mask.dtype} "
                             f"{list(mask.shape)})")
        return out[mask], y[mask], int(mask.sum())

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        out, y, n = self._masked(batch, self(batch), "train")
        loss = self.criterion(out, y)
        self.log("train/loss", loss, batch_size=n, on_step=False, on_epoch=True, prog_bar=True,
                 sync_dist=True)
        self.train_metrics(out.detach(), y)
        self.log_dict(self.train_metrics, batch_size=n, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        out, y, n = self._masked(batch, self(batch), "val")
        self.log("val/loss", self.criterion(out, y), batch_size=n, prog_bar=True,
                 add_dataloader_idx=False, sync_dist=True)
        self.val_metrics(out, y)
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

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        r"""The predicted class of every node, ``[num_nodes]``."""
        return self(batch).argmax(dim=-1)
