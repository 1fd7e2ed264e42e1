r"""The equivariance report: the trained model's error under its declared
group, on validation batches in float64, as ``equivariance.json`` beside the
checkpoints."""
import json
import os

import pytest
import torch
from torch_geometric.data import Batch

from gdl_pyg.domains import grid_to_data
from gdl_pyg.groups import CyclicGroup, Permutations
from gdl_pyg.lightning.cli import main
from gdl_pyg.lightning.equivariance_report import (EquivarianceReport, SymmetryCheck,
                                                   measure_equivariance, model_symmetries)
from gdl_pyg.nn.models import GCNN, GNN, EGNN, GridCNN, InteratomicPotential, NBodyGNN

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
         "--trainer.accelerator", "cpu"]
REPORT = "--trainer.callbacks+=gdl_pyg.lightning.equivariance_report.EquivarianceReport"


def _digits(n=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return Batch.from_data_list([grid_to_data(torch.rand(1, 12, 12, generator=gen))
                                 for _ in range(n)])


def _fit(config, root):
    main(["fit", "--config", config, "--trainer.default_root_dir", str(root),
          "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
          "--trainer.limit_val_batches", "2", REPORT] + QUIET)
    path = root / "version_0" / "equivariance.json"
    assert path.is_file()
    assert (root / "version_0" / "checkpoints").is_dir()  # beside the checkpoints
    with open(path) as f:
        return json.load(f)


def test_gcnn_digits_config_reports_round_off_and_cnn_breaks_c4(tmp_path, caplog):
    torch.manual_seed(0)
    report = _fit("gcnn_digits", tmp_path / "gcnn")
    assert report["model"] == "GCNN" and report["group"] == "C4"
    assert report["dtype"] == "float64" and report["num_batches"] == 2
    assert report["num_samples"] == 8  # 2 batches x 4 rotations
    assert report["max_error"] < 1e-9 and 0 <= report["mean_error"] <= report["max_error"]
    line = [r.getMessage() for r in caplog.records
            if r.getMessage().startswith("Equivariance (GCNN")]
    assert len(line) == 1 and "declared C4" in line[0] and "equivariance.json" in line[0]

    report = _fit("cnn_digits", tmp_path / "cnn")
    assert report["model"] == "GridCNN" and report["max_error"] < 1e-9  # node order
    contrast = [c for c in report["checks"] if c["role"] == "contrast"]
    assert len(contrast) == 1 and contrast[0]["group"] == "C4"
    assert contrast[0]["max_error"] > 1e-4  # a CNN is not rotation invariant


def test_measure_matches_the_checker_and_catches_a_broken_model():
    from gdl_pyg.testing import equivariance_error
    torch.manual_seed(0)
    batch = _digits()
    model = GCNN(hidden_channels=4, num_layers=2)
    res = measure_equivariance(model, [batch], SymmetryCheck(CyclicGroup(4)))
    assert res["num_samples"] == 4 and res["max_error"] < 1e-12
    assert next(model.parameters()).dtype == torch.float32  # the model itself is untouched
    # a CNN under C4: the same largest error as the package's checker
    cnn = GridCNN(hidden_channels=4, num_layers=2)
    res = measure_equivariance(cnn, [batch], SymmetryCheck(CyclicGroup(4)))
    ref = equivariance_error(cnn, batch, CyclicGroup(4))
    assert res["max_error"] > 1e-4
    assert res["max_error"] == pytest.approx(ref.error, rel=1e-12)
    assert res["mean_error"] < res["max_error"]  # the identity contributes 0


def test_every_shipped_model_has_a_declared_group():
    torch.manual_seed(0)
    expected = {
        GCNN(hidden_channels=4): ["C4"],
        GCNN(hidden_channels=4, group="p4m"): ["D4"],
        GridCNN(hidden_channels=4): ["S_n", "C4"],
        GNN(3, 8, 2): ["S_n"],
        EGNN(1, 8, num_layers=1, velocity=True, level="graph"): ["E(3)"],
        NBodyGNN(7, 8, num_layers=1): ["S_n", "E(3)"],
        InteratomicPotential("gnn_xyz", species=[1, 6], hidden_channels=8, num_layers=1):
            ["S_n", "E(3)"],
        InteratomicPotential("egnn", species=[1, 6], hidden_channels=8, num_layers=1):
            ["E(3)"],
    }
    for model, names in expected.items():
        checks = model_symmetries(model)
        assert [c.group.name for c in checks] == names, type(model).__name__
        assert checks[0].role == "declared"
        assert all(c.role == "contrast" for c in checks[1:])


def test_unknown_model_gets_a_report_not_an_error():
    class Mystery(torch.nn.Module):
        def forward(self, data):
            return torch.tanh(2 * data.x)

    cb = EquivarianceReport()
    report = cb.build_report(Mystery(), [_digits()])
    assert report["group"] is None and report["checks"] == []
    assert "no declared symmetry group" in report["note"]
    assert "not measured" in cb.summary(report)
    json.dumps(report)

    # a model may declare its own checks
    class Declared(Mystery):
        def equivariance_checks(self):
            return [SymmetryCheck(Permutations(), num_samples=3)]

    report = cb.build_report(Declared(), [_digits()])
    assert report["group"] == "S_n" and report["num_samples"] == 3
    assert report["max_error"] < 1e-12


def test_a_check_that_cannot_run_is_reported():
    class WrongShape(torch.nn.Module):
        def forward(self, data):
            return data.x[:1]  # neither node nor graph level

        def equivariance_checks(self):
            return [SymmetryCheck(Permutations())]

    cb = EquivarianceReport()
    report = cb.build_report(WrongShape(), [_digits()])
    check = report["checks"][0]
    assert check["max_error"] is None and "ValueError" in check["error"]
    assert "not measured" in cb.summary(report)


def test_arguments_and_repr():
    assert repr(EquivarianceReport()) == \
        "EquivarianceReport(num_batches=2, filename='equivariance.json')"
    with pytest.raises(ValueError, match="num_batches"):
        EquivarianceReport(num_batches=0)
    with pytest.raises(ValueError, match=".json"):
        EquivarianceReport(filename="report.txt")
    with pytest.raises(ValueError, match="role"):
        SymmetryCheck(Permutations(), role="maybe")


def test_nothing_written_in_fast_dev_run(tmp_path):
    root = tmp_path / "fdr"
    main(["fit", "--config", "gnn_karate", "--trainer.default_root_dir", str(root),
          "--trainer.fast_dev_run", "1", REPORT] + QUIET)
    assert not any(f == "equivariance.json" for _, _, files in os.walk(root) for f in files)


def test_spheres_are_checked_one_by_one_in_float32_batches():
    # a float32 batch of two spheres: the icosahedral group permutes the
    # vertices of one sphere, so the check splits the batch into examples
    from torch_geometric.data import Data

    from gdl_pyg.domains import icosphere
    from gdl_pyg.nn.models import SphericalCNN
    torch.manual_seed(0)
    spheres = []
    for seed in range(3):
        d = icosphere(2, dtype=torch.float32)
        gen = torch.Generator().manual_seed(seed)
        spheres.append(Data(x=torch.randn(d.num_nodes, 1, generator=gen), pos=d.pos,
                            edge_index=d.edge_index, mass=d.mass))
    model = SphericalCNN(1, 4, 3, num_layers=2, lmax=2, num_coarsenings=1)
    (check,) = model_symmetries(model)
    assert check.group.name.startswith("I") and check.per_example
    res = measure_equivariance(model, [Batch.from_data_list(spheres)], check)
    assert res["num_samples"] == check.max_examples * check.max_elements == 24
    assert res["max_error"] < 1e-9
