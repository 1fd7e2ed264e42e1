r"""Learning checks (slow): the p4 GCNN learns the digits from upright images
and, being invariant to quarter turns, is as accurate on rotated ones."""
import importlib.util
import os

import pytest
import torch
from lightning.pytorch import Trainer, seed_everything

from gdl_pyg.lightning.data import RotatedDigitsDataModule
from gdl_pyg.lightning.task import GraphClassificationTask
from gdl_pyg.nn.models.gcnn import GCNN

REPO = os.path.join(os.path.dirname(__file__), "..", "..")


@pytest.mark.slow
def test_gcnn_learns_rotated_digits():
    seed_everything(0)
    dm = RotatedDigitsDataModule(batch_size=64)
    task = GraphClassificationTask(GCNN(), lr=3e-3)
    trainer = Trainer(accelerator="cpu", max_epochs=8, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False)
    trainer.fit(task, dm)
    upright, rotated = trainer.test(task, dm, verbose=False)
    acc_up, acc_rot = upright["test/acc_upright"], rotated["test/acc_rotated"]
    assert acc_up > 0.8 and acc_rot > 0.8
    # invariance: the same predictions on the rotated copies (up to float32 ties)
    assert abs(acc_up - acc_rot) <= 2 / len(dm.test_datasets["rotated"])


@pytest.mark.slow
def test_quickstart_script(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = importlib.util.spec_from_file_location(
        "quickstart", os.path.join(REPO, "scripts", "quickstart.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = module.quickstart(["--compare", "--max-epochs", "1", "--out", str(tmp_path),
                              "--accelerator", "cpu", "--no-progress-bar"])
    assert [r["model"] for r in rows] == ["GCNN", "GridCNN"]
    for r in rows:
        assert 0.0 <= r["upright"] <= 1.0 and 0.0 <= r["rotated"] <= 1.0
        assert os.path.isfile(r["png"]) and os.path.isfile(r["checkpoint"])
        assert str(tmp_path) in r["run"]
    assert torch.tensor(rows[0]["upright"]).isfinite()
