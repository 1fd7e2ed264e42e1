r"""Every shipped config runs through the ``gdl-pyg`` command (fit in
``fast_dev_run`` mode; fit, test and predict on one batch each), and the run folder of a real (tiny) fit
holds the checkpoint, the metrics, the config and the learning curves."""
import glob
import json
import os

import pytest

from gdl_pyg.lightning.cli import config_path, describe_config, list_configs, main

CONFIG_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "gdl_pyg", "configs")
CONFIGS = sorted(glob.glob(os.path.join(CONFIG_DIR, "*.yaml")))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _skip_without_sampler(cfg):
    # neighbour-sampled configs need the [scatter] extra (torch-sparse) or
    # pyg-lib; without them they stop with an ImportError naming the extra
    # (tests/lightning/test_node_data.py checks that message)
    import torch_geometric.typing as pyg_typing
    if "loader: neighbor" in open(cfg).read() and not (
            pyg_typing.WITH_TORCH_SPARSE or pyg_typing.WITH_PYG_LIB):
        pytest.skip("neighbour sampling needs torch-sparse or pyg-lib")


def test_configs_are_shipped():
    names = [os.path.basename(c)[:-5] for c in CONFIGS]
    assert "gcnn_digits" in names and "cnn_digits" in names
    assert list_configs() == sorted(names)
    assert os.path.samefile(config_path("gcnn_digits"), config_path("gcnn_digits.yaml"))
    with pytest.raises(ValueError, match="No shipped config"):
        config_path("no_such_config")
    for name in names:  # every config says what it is in one line
        text = describe_config(name)
        assert 10 < len(text) <= 100 and "\n" not in text, (name, text)


def _fast_dev_run(cfg, tmp_path, subcommands):
    cfg = os.path.abspath(cfg)
    common = ["--config", cfg, "--trainer.fast_dev_run", "1",
              "--trainer.default_root_dir", str(tmp_path), "--trainer.accelerator", "cpu"]
    for sub in subcommands:
        main([sub] + common)
    # fast_dev_run writes no logs, checkpoints, pictures or predictions
    assert not glob.glob(str(tmp_path / "**" / "*.ckpt"), recursive=True)
    assert not glob.glob(str(tmp_path / "**" / "*.png"), recursive=True)
    assert not glob.glob(str(tmp_path / "**" / "*.csv"), recursive=True)
    assert not glob.glob(str(tmp_path / "**" / "*.ply"), recursive=True)


@pytest.mark.parametrize("cfg", CONFIGS, ids=[os.path.basename(c) for c in CONFIGS])
def test_fast_dev_run(cfg, tmp_path, monkeypatch):
    # what a user types first: every config's fit (one training and one
    # validation batch) runs as written; test and predict of every config run
    # in test_fit_test_predict_checkpoint below. Relative paths of the config
    # (runs/...) land in tmp_path, not in the repo
    _skip_without_sampler(cfg)
    monkeypatch.chdir(tmp_path)
    _fast_dev_run(cfg, tmp_path, ["fit"])


# one config per kind of prediction file (CSV of graphs, PNG of images, PLY of meshes)
@pytest.mark.parametrize("name", ["gnn_graphs", "gcnn_digits", "gem_shapes"])
def test_fast_dev_run_test_and_predict_write_nothing(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _fast_dev_run(config_path(name), tmp_path, ["fit", "test", "predict"])


def _read_predictions(folder):
    r"""Opens every file ``predict`` wrote the way a user would; returns
    them by suffix."""
    import csv

    import matplotlib.image

    from gdl_pyg.io import read_mesh, read_points
    files = sorted(os.listdir(folder))
    assert files, f"predict wrote nothing into {folder}"
    out = {}
    for name in files:
        path = os.path.join(folder, name)
        out.setdefault(os.path.splitext(name)[1], []).append(path)
        if name.endswith(".csv"):
            with open(path, newline="") as f:
                rows = list(csv.reader(f))
            assert len(rows) > 1 and "graph" in rows[0]
            assert len(set(rows[0]) - {"graph", "node"}) >= 1
            assert all(len(r) == len(rows[0]) for r in rows)
        elif name.endswith(".png"):
            img = matplotlib.image.imread(path)
            assert img.ndim == 3 and img[..., :3].std() > 0.01
        elif name.endswith(".ply"):
            try:
                data = read_mesh(path)
            except ValueError:  # a point cloud
                data = read_points(path)
            assert data.pos.size(0) > 0 and data.color.shape == (data.pos.size(0), 3)
    return out


@pytest.mark.parametrize("cfg", CONFIGS, ids=[os.path.basename(c) for c in CONFIGS])
def test_fit_test_predict_checkpoint(cfg, tmp_path, monkeypatch):
    # a one-step fit keeps a checkpoint; test and predict on it write into its
    # run folder, and predict's files open
    _skip_without_sampler(cfg)
    monkeypatch.chdir(tmp_path)
    root = str(tmp_path / "run")
    common = ["--config", os.path.abspath(cfg), "--trainer.default_root_dir", root,
              "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false",
              "--trainer.enable_model_summary", "false",
              "--trainer.limit_test_batches", "1", "--trainer.limit_predict_batches", "1"]
    main(["fit"] + common + ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1",
                             "--trainer.limit_val_batches", "1"])
    assert os.path.isfile(os.path.join(root, "version_0", "checkpoints", "last.ckpt"))
    main(["test"] + common + ["--ckpt_path", "last"])
    main(["predict"] + common + ["--ckpt_path", "last"])
    assert sorted(os.listdir(root)) == ["version_0"]  # no new version folders
    assert os.path.isfile(os.path.join(root, "version_0", "test_results.json"))
    files = _read_predictions(os.path.join(root, "version_0", "predictions"))
    assert ".csv" in files
    assert not os.path.exists(tmp_path / "runs")  # default_root_dir moved everything


def test_bad_argument_is_rejected(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):  # Literal hyperparameters are validated by the parser
        main(["fit", "--config", config_path("gcnn_digits"), "--trainer.fast_dev_run", "1",
              "--model.init_args.scheduler", "linear"])


def test_run_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = config_path("gcnn_digits")
    common = ["--config", cfg, "--trainer.default_root_dir", str(tmp_path),
              "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false",
              "--trainer.limit_val_batches", "0.2", "--trainer.limit_test_batches", "0.2"]
    main(["fit"] + common + ["--trainer.max_epochs", "2", "--trainer.limit_train_batches", "2"])
    run = tmp_path / "version_0"
    # the learning curves are a valid PNG image
    png = run / "learning_curves.png"
    assert png.read_bytes()[:8] == PNG_MAGIC
    import matplotlib.image
    img = matplotlib.image.imread(str(png))
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 200
    assert img[..., :3].std() > 0.01  # not blank
    # metrics, resolved config and the best checkpoint by val/acc
    assert (run / "config.yaml").is_file()
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    for key in ("epoch", "train/loss", "train/acc", "val/loss", "val/acc"):
        assert key in header
    ckpts = sorted((run / "checkpoints").glob("best-*.ckpt"))
    assert len(ckpts) == 1

    assert (run / "checkpoints" / "last.ckpt").is_file()

    # the README's command, in a fresh process: 'best' names the checkpoint,
    # and the results are written beside it
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-m", "gdl_pyg", "test", "--config", "gcnn_digits",
                           "--ckpt_path", "best"] + common[2:],
                          capture_output=True, text=True, cwd=str(tmp_path), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert ckpts[0].name in proc.stderr + proc.stdout  # "Loaded model weights from ..."
    assert sorted(p.name for p in tmp_path.iterdir()) == ["version_0"]
    results = json.loads((run / "test_results.json").read_text())
    assert {"test/acc_upright", "test/acc_rotated", "test/loss_upright",
            "test/loss_rotated"} <= set(results)
    assert all(0.0 <= results[k] <= 1.0 for k in ("test/acc_upright", "test/acc_rotated"))

    # the checkpoint stores the model's config: it loads without the CLI
    from gdl_pyg.lightning.task import GraphClassificationTask
    from gdl_pyg.nn.models.gcnn import GCNN
    task = GraphClassificationTask.load_from_checkpoint(str(ckpts[0]), map_location="cpu")
    assert isinstance(task.model, GCNN) and task.model.group == "p4"
    assert task.hparams["lr"] == 0.003


@pytest.mark.parametrize("extra, bar", [
    ([], "TimedProgressBar"),
    (["--trainer.enable_progress_bar", "false"], None),
    (["--trainer.callbacks+=TQDMProgressBar", "--trainer.callbacks.refresh_rate=5"],
     "TQDMProgressBar"),
])
def test_fit_trainer_has_the_lean_step_and_a_timed_progress_bar(extra, bar, tmp_path,
                                                                  monkeypatch):
    # gdl-pyg's trainer: Lightning's epoch loop with the lean step, and a
    # progress bar that redraws at most 10 times a second unless the user
    # turns the bar off or brings their own
    from gdl_pyg.lightning.cli import GdlCLI
    from gdl_pyg.lightning.loop import _LeanTrainingEpochLoop
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["gdl-pyg"])
    cli = GdlCLI(subclass_mode_model=True, subclass_mode_data=True, run=False,
                 args=["--config", config_path("gnn_graphs"),
                       "--trainer.default_root_dir", str(tmp_path)] + extra)
    bars = [type(cb).__name__ for cb in cli.trainer.callbacks if "ProgressBar" in type(cb).__name__]
    assert bars == ([] if bar is None else [bar])
    assert type(cli.trainer.progress_bar_callback).__name__ == (bar or "NoneType")
    if bar == "TQDMProgressBar":
        assert cli.trainer.progress_bar_callback.refresh_rate == 5
    assert isinstance(cli.trainer.fit_loop.epoch_loop, _LeanTrainingEpochLoop)
