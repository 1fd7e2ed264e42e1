r"""The mesh and point-cloud configs (GEM-CNN, DiffusionNet on datasets/deform,
datasets/shapes and datasets/points) train through ``gdl-pyg fit`` and
validate, and their whole pipeline (pre-transforms, features, model) is
rotation invariant: an (untrained) model gives the same logits on a test
shape and on its randomly rotated copy, whose geometry and features the data
module recomputes from scratch.

The processed caches go to ``datasets/<name>/processed`` (gitignored); the
first run of a config preprocesses its data set (a few seconds per shape)."""
import math
import os

import pytest
import torch
from lightning.pytorch.cli import LightningCLI
from torch_geometric.data import Batch

from gdl_pyg.lightning.cli import config_path, main

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:LightningCLI.s args parameter"),
              pytest.mark.filterwarnings("ignore::UserWarning")]

MESH_CONFIGS = ["gem_deform", "diffusion_deform", "gem_shapes", "diffusion_shapes",
                "diffusion_points"]


@pytest.mark.parametrize("name", MESH_CONFIGS)
def test_fit_and_validate(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # runs/... of the config land in tmp_path
    common = ["--config", config_path(name), "--trainer.enable_progress_bar", "false",
              "--trainer.accelerator", "cpu"]
    main(["fit"] + common + ["--trainer.fast_dev_run", "1"])
    main(["validate"] + common + ["--trainer.limit_val_batches", "1"])
    # fast_dev_run writes no checkpoint; validate writes its metrics
    assert not list(tmp_path.rglob("*.ckpt"))
    import json
    (path,) = list(tmp_path.rglob("validate_results.json"))
    results = json.loads(path.read_text())
    assert "val/loss" in results and all(math.isfinite(v) for v in results.values())


def _instantiate(name: str):
    cli = LightningCLI(subclass_mode_model=True, subclass_mode_data=True, run=False,
                       args=["--config", config_path(name), "--trainer.logger", "false",
                             "--trainer.enable_progress_bar", "false"])
    return cli.model.model.eval(), cli.datamodule


@pytest.mark.parametrize("name", MESH_CONFIGS)
def test_pipeline_is_rotation_invariant(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    model, dm = _instantiate(name)
    dm.setup("test")
    upright, rotated = dm.test_datasets["upright"], dm.test_datasets["rotated"]
    # the rotated copy really moved: its coordinates differ
    assert not torch.allclose(upright[0].pos, rotated[0].pos, atol=1e-2)
    with torch.no_grad():
        a = model(Batch.from_data_list([upright[0], upright[1]]))
        b = model(Batch.from_data_list([rotated[0], rotated[1]]))
    scale = a.abs().max().clamp_min(1e-6)
    row_err = (a - b).abs().amax(dim=-1) / scale
    # float32 geometry recomputed from rotated float32 coordinates differs at ~1e-7,
    # which can flip a discrete choice at a genuine near-tie (MeshHierarchy assigned
    # 1 of 1142 vertices of a deform pose to another cluster): allow that on a
    # handful of vertices, never on a graph-level output or on most of the shape
    err = float(torch.quantile(row_err, 0.99)) if row_err.numel() > 10 else \
        float(row_err.max())
    assert err < 2e-3, f"{name}: relative logit change {err:.2e} under rotation"


def test_invariance_check_catches_xyz_features(tmp_path, monkeypatch):
    # the extrinsic baseline reads xyz: the same check must fail for it
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    model, dm = _instantiate("gnn_deform_xyz")
    dm.setup("test")
    up, rot = dm.test_datasets["upright"][0], dm.test_datasets["rotated"][0]
    with torch.no_grad():
        a, b = model(up), model(rot)
    assert float((a - b).abs().max() / a.abs().max()) > 1e-2


def test_cached_hierarchy_keeps_its_batching(tmp_path, monkeypatch):
    # the processed cache must restore MeshHierarchyData, whose __inc__ shifts
    # the coarse levels by their own vertex counts (plain Data shifts them by
    # the fine vertex count, sending edge_index_1 out of range)
    from gdl_pyg.transforms import MeshHierarchyData
    monkeypatch.chdir(tmp_path)
    _, dm = _instantiate("gem_deform")
    dm.setup("fit")
    data = dm.val_dataset[0]
    assert isinstance(data, MeshHierarchyData)
    batch = Batch.from_data_list([dm.val_dataset[0], dm.val_dataset[1]])
    for level in (1, 2):
        n = int(batch[f"batch_{level}"].numel())
        assert int(batch[f"edge_index_{level}"].max()) < n
        assert int(batch[f"pool_cluster_{level}"].max()) < n


def test_configs_use_intrinsic_inputs():
    # the invariant configs must not feed coordinates to the models
    for name in MESH_CONFIGS:
        with open(config_path(name)) as f:
            text = f.read()
        assert "PositionFeatures" not in text, name
        assert "HeatKernelSignature" in text, name
        assert os.path.basename(config_path(name)) == f"{name}.yaml"
