r"""The ``gdl-pyg`` command as a user meets it: ``configs``, ``--version``,
``--config NAME``, run folders, ``best`` / ``last``, exact resume, and
checkpoints that are missing, unsafe or truncated."""
import os
import subprocess
import sys

import pytest
import torch

from gdl_pyg.lightning.checkpoint import CheckpointError, SafeCheckpointIO, load_checkpoint
from gdl_pyg.lightning.cli import list_configs, main, resolve_checkpoint, run_folder

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
         "--trainer.accelerator", "cpu"]


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "gdl_pyg", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=600)


def test_configs_version_and_help():
    proc = _cli("configs")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("  ")]
    assert [line.split()[0] for line in lines] == list_configs()
    assert all(len(line.split(None, 1)[1]) > 10 for line in lines)  # a description each
    assert "(default)" in next(line for line in lines if line.split()[0] == "gcnn_digits")

    proc = _cli("--version")
    from importlib.metadata import version
    assert proc.returncode == 0 and proc.stdout.strip() == f"gdl-pyg {version('gdl_pyg')}"

    proc = _cli("--help")
    assert proc.returncode == 0
    assert "Geometric Deep Learning" in proc.stdout and "gdl-pyg configs" in proc.stdout
    assert proc.stdout.startswith("usage: gdl-pyg")


def test_unknown_config_name_is_one_clear_error(tmp_path):
    proc = _cli("fit", "--config", "gcnn_digit", cwd=str(tmp_path))
    assert proc.returncode == 2
    assert "no shipped config of that name" in proc.stderr and "gcnn_digits" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_config_by_name_and_quickstart_without_args_warning(tmp_path, monkeypatch, recwarn):
    # '--config NAME' finds the shipped file even when a folder of that name
    # exists in the working folder (the run folders do); calling main() from a
    # script with its own sys.argv does not trigger LightningCLI's args warning
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gnn_karate").mkdir()
    monkeypatch.setattr(sys, "argv", ["quickstart.py", "--compare"])
    main(["fit", "--config", "gnn_karate", "--trainer.fast_dev_run", "1"] + QUIET)
    assert not [w for w in recwarn if "args parameter" in str(w.message)]


def _fit(root, *extra):
    main(["fit", "--config", "gnn_graphs", "--trainer.default_root_dir", str(root),
          "--trainer.max_epochs", "3", "--trainer.limit_train_batches", "4",
          "--trainer.limit_val_batches", "2"] + QUIET + list(extra))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs") / "gnn_graphs"
    _fit(root)
    return root


def test_best_and_last_resolve_in_the_run_folder(trained):
    run = trained / "version_0"
    last = resolve_checkpoint(str(trained), "last")
    best = resolve_checkpoint(str(trained), "best")
    assert last == str(run / "checkpoints" / "last.ckpt")
    assert os.path.basename(best).startswith("best-") and os.path.dirname(best) == \
        str(run / "checkpoints")
    # the one ModelCheckpoint recorded as best
    state = load_checkpoint(last)["callbacks"]
    key = next(k for k in state if k.startswith("ModelCheckpoint"))
    assert os.path.basename(state[key]["best_model_path"]) == os.path.basename(best)
    assert run_folder(best) == str(run)
    with pytest.raises(CheckpointError, match="no run under"):
        resolve_checkpoint(str(trained.parent / "elsewhere"), "best")


def test_validate_and_predict_write_beside_the_checkpoint(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["validate", "--config", "gnn_graphs", "--trainer.default_root_dir", str(trained),
          "--ckpt_path", "best", "--trainer.limit_val_batches", "1"] + QUIET)
    main(["predict", "--config", "gnn_graphs", "--trainer.default_root_dir", str(trained),
          "--ckpt_path", "best", "--trainer.limit_predict_batches", "1"] + QUIET)
    assert sorted(os.listdir(trained)) == ["version_0"]
    run = trained / "version_0"
    assert (run / "config_validate.yaml").is_file() and (run / "config_predict.yaml").is_file()
    import json
    assert 0.0 <= json.loads((run / "validate_results.json").read_text())["val/acc"] <= 1.0
    import csv
    with open(run / "predictions" / "test.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and set(rows[0]) == {"graph", "prediction", "target"}
    assert all(0 <= int(r["prediction"]) < 3 for r in rows)
    assert not os.listdir(tmp_path)  # nothing written into the working folder


def test_fit_with_a_missing_checkpoint_is_an_error_not_a_fresh_start(tmp_path):
    root = tmp_path / "r"
    with pytest.raises(CheckpointError, match="no run under"):
        _fit(root, "--ckpt_path", "last")
    with pytest.raises(CheckpointError, match="no such checkpoint file.*from scratch"):
        _fit(root, "--ckpt_path", str(tmp_path / "nope.ckpt"))
    assert not root.exists()
    proc = _cli("fit", "--config", "gnn_graphs", "--trainer.default_root_dir", str(root),
                "--ckpt_path", "last", cwd=str(tmp_path))
    assert proc.returncode == 2 and "gdl-pyg: error: --ckpt_path last" in proc.stderr


class _Payload:
    def __reduce__(self):
        return (open, (os.environ["GDL_PYG_MARKER"], "w"))


def test_unsafe_and_truncated_checkpoints_are_refused(trained, tmp_path, monkeypatch):
    src = trained / "version_0" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(src, weights_only=True)
    marker = tmp_path / "pwned"
    monkeypatch.setenv("GDL_PYG_MARKER", str(marker))
    bad_run = tmp_path / "bad" / "version_0" / "checkpoints"
    bad_run.mkdir(parents=True)
    evil = bad_run / "last.ckpt"
    ckpt["hyper_parameters"]["payload"] = _Payload()
    torch.save(ckpt, evil)
    with pytest.raises(CheckpointError, match="refusing to load.*arbitrary code"):
        load_checkpoint(evil)
    with pytest.raises(CheckpointError, match="refusing to load"):
        SafeCheckpointIO().load_checkpoint(evil)
    for sub in ("fit", "test"):
        with pytest.raises(CheckpointError, match="refusing to load"):
            main([sub, "--config", "gnn_graphs", "--trainer.default_root_dir",
                  str(tmp_path / "bad"), "--ckpt_path", "last", "--trainer.max_epochs", "4",
                  "--trainer.limit_test_batches", "1"] + QUIET)
    assert not marker.exists()

    data = src.read_bytes()
    for cut in (len(data) // 2, len(data) - 7, 100):
        short = tmp_path / f"short{cut}.ckpt"
        short.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="truncated or corrupt"):
            load_checkpoint(short)
    foreign = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not a Lightning checkpoint"):
        load_checkpoint(foreign)
    proc = _cli("test", "--config", "gnn_graphs", "--ckpt_path", str(tmp_path / f"short{100}.ckpt"),
                cwd=str(tmp_path))
    assert proc.returncode != 0 and "truncated or corrupt" in proc.stderr


def _weights(root):
    return load_checkpoint(os.path.join(root, "version_0", "checkpoints", "last.ckpt"))


@pytest.mark.parametrize("config,limit", [("gnn_graphs", 6), ("gcnn_digits", 3)])
def test_resume_from_last_matches_an_uninterrupted_run(config, limit, tmp_path, monkeypatch):
    # a cosine schedule over 4 epochs, shuffled batches and dropout: stopping
    # after 2 epochs (max_steps) and resuming with --ckpt_path last ends with
    # the same weights, optimizer state and epoch as one run of 4 epochs
    monkeypatch.chdir(tmp_path)
    common = ["--config", config, "--trainer.max_epochs", "4", "--trainer.limit_train_batches",
              str(limit), "--trainer.limit_val_batches", "1"] + QUIET
    main(["fit"] + common + ["--trainer.default_root_dir", "a"])
    main(["fit"] + common + ["--trainer.default_root_dir", "b", "--trainer.max_steps",
                             str(2 * limit)])
    assert _weights("b")["epoch"] == 1
    main(["fit"] + common + ["--trainer.default_root_dir", "b", "--ckpt_path", "last"])
    a, b = _weights("a"), _weights("b")
    assert sorted(os.listdir("b")) == ["version_0"]  # resumed into its own run folder
    assert a["epoch"] == b["epoch"] == 3 and a["global_step"] == b["global_step"]
    for k, v in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][k], v, rtol=0, atol=1e-6)
    for sa, sb in zip(a["optimizer_states"][0]["state"].values(),
                      b["optimizer_states"][0]["state"].values()):
        torch.testing.assert_close(sb["exp_avg"], sa["exp_avg"], rtol=0, atol=1e-6)
    assert a["lr_schedulers"] == b["lr_schedulers"]
    # the metrics of both halves are in one metrics.csv
    rows = open(os.path.join("b", "version_0", "metrics.csv")).read().splitlines()
    epochs = {line.split(",")[0] for line in rows[1:]}
    assert rows[0].startswith("epoch,") and {"0", "1", "2", "3"} <= epochs
