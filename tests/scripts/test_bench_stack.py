import json
import math
import sys
from pathlib import Path

import pytest
from conftest import load_script

SCRIPT = Path(__file__).parents[2] / "scripts" / "bench_stack.py"

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def positive(value):
    return isinstance(value, float) and math.isfinite(value) and value > 0


def test_tiny_epoch_run_writes_the_json_and_table(tmp_path, capsys):
    bench = load_script("bench_stack")
    out = tmp_path / "bench.json"
    result = bench.main(["--steps", "4", "--rounds", "2", "--warmup", "0", "--batch-size", "8",
                         "--cli-repeats", "0", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(result))
    assert saved["config"] == "gnn_graphs" and saved["threads"] == 1
    epoch = saved["epoch"]
    assert epoch["steps"] == 4 and epoch["batch_size"] == 8
    for key in ("lightning_epoch_s", "lightning_steps_s", "lightning_fit_s", "plain_epoch_s",
                "ratio", "ratio_steps_only", "plain_ms_per_step", "bare_epoch_s", "bare_ratio",
                "ratio_to_bare"):
        assert positive(epoch[key]), (key, epoch[key])
    assert epoch["ratio_min"] <= epoch["ratio"] <= epoch["ratio_max"]
    # the epoch sits inside the whole fit, the steps inside the epoch
    assert epoch["lightning_steps_s"] <= epoch["lightning_epoch_s"] < epoch["lightning_fit_s"]
    assert len(saved["epoch_rounds"]) == 2
    for row in saved["epoch_rounds"]:
        assert row["steps"] == 4
        assert row["ratio"] == pytest.approx(row["lightning_epoch_s"] / row["plain_epoch_s"])
        assert row["bare_ratio"] == pytest.approx(row["bare_epoch_s"] / row["plain_epoch_s"])
        assert row["ratio_to_bare"] == pytest.approx(row["lightning_epoch_s"] /
                                                     row["bare_epoch_s"])
    assert "startup_s" not in saved
    text = capsys.readouterr().out
    assert "| plain PyTorch |" in text and (
        "| gdl-pyg fit (manual optimization, lean step, direct optimizer step) |" in text)
    assert "| bare Lightning (automatic optimization, no callbacks or logging) |" in text
    # gnn_graphs needs nothing of Lightning's automatic loop: the task steps itself
    assert epoch["lightning_loop"] == "manual"
    assert epoch["lean_step"] is True and epoch["direct_step"] is True
    assert f"Results written to {out}" in text


def test_plain_loop_runs_the_same_steps_and_trains(tmp_path):
    # the plain loop really optimizes the task's model on the data module's batches
    import torch

    bench = load_script("bench_stack")
    args = bench.argparse.Namespace(config="gnn_graphs", device="cpu", steps=3,
                                    batch_size=8, progress_bar=False)
    epoch, fit, steps, cli = bench.run_lightning(args, str(tmp_path), lambda: None)
    assert steps == 3 and cli.timer.steps == 3 and 0 < epoch < fit
    task = cli.initial_task
    before = [p.detach().clone() for p in task.model.parameters()]
    # the copy was taken before training: Lightning's trained weights differ from it
    trained = list(cli.model.model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, trained))
    seconds, done = bench.run_plain(task, cli.datamodule, 5, torch.device("cpu"), lambda: None)
    assert done == 5 and positive(seconds)
    assert any(not torch.equal(a, p) for a, p in zip(before, task.model.parameters()))
    # so does the bare Lightning run, with the same number of steps
    bare = bench.copy.deepcopy(cli.initial_task)
    start = [p.detach().clone() for p in bare.model.parameters()]
    seconds, done = bench.run_bare(bare, cli.datamodule, 4, torch.device("cpu"), lambda: None)
    assert done == 4 and positive(seconds)
    assert any(not torch.equal(a, p) for a, p in zip(start, bare.model.parameters()))


def test_startup_timings_and_failures(tmp_path):
    bench = load_script("bench_stack")
    names = [name for name, _ in bench.startup_commands("gcnn_digits")]
    assert names[0] == "python -c pass" and "gdl-pyg --help" in names
    assert names[-1] == "gdl-pyg fit --config gcnn_digits --trainer.fast_dev_run 1"
    py = sys.executable
    times = bench.bench_startup([("pass", [py, "-c", "pass"]),
                                 ("sleep", [py, "-c", "import time; time.sleep(0.3)"])], 1, 1)
    assert positive(times["pass"]) and times["sleep"] >= 0.3
    with pytest.raises(RuntimeError, match="exited with 3"):
        bench.bench_startup([("fails", [py, "-c", "import sys; sys.exit(3)"])], 1, 1)


@pytest.mark.slow
def test_full_startup_commands_run(tmp_path):
    bench = load_script("bench_stack")
    result = bench.main(["--skip-epoch", "--cli-repeats", "1", "--out",
                         str(tmp_path / "b.json")])
    startup = result["startup_s"]
    assert len(startup) == 5 and all(positive(v) for v in startup.values())
    # --help is measured against the bare imports of the libraries under it
    assert "import torch_geometric, lightning" in startup
    # the fit includes the import and the interpreter start. (`import gdl_pyg`
    # is lazy, so it costs about an interpreter start: the two are not ordered
    # reliably against each other.)
    fit = next(v for k, v in startup.items() if k.startswith("gdl-pyg fit"))
    assert fit > startup["import gdl_pyg"] and fit > startup["python -c pass"]
