import json
from pathlib import Path

import pytest
import torch
from conftest import load_script

SCRIPT = Path(__file__).parents[2] / "scripts" / "bench_compile.py"

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def table(text):
    lines = text.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith("| layer"))
    header = [c.strip() for c in lines[i].strip("|").split("|")]
    rows = {}
    for line in lines[i + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells))
    return rows


# aot_eager: the traced graphs without inductor's kernel builds (minutes on a
# cold cache); one round each
QUICK = ["--quick", "--compile-backend", "aot_eager", "--repeats", "1", "--warmup", "0"]


def test_quick_run_of_every_case(capsys, tmp_path):
    bench = load_script("bench_compile")
    out = tmp_path / "compile.json"
    assert bench.main(QUICK + ["--out", str(out)]) == 0
    rows = table(capsys.readouterr().out)
    assert set(rows) == set(bench.CASES)
    for name, row in rows.items():
        assert row["graphs / breaks"] == "1 / 0", (name, row)
        assert float(row["eager ms"]) > 0 and float(row["compiled ms"]) > 0
        assert float(row["compiled / eager"]) > 0
        diff = float(row["check"].split()[0])
        assert row["check"].endswith("(ok)") and diff <= 1e-4, (name, row)
    saved = json.loads(out.read_text())
    assert saved["backend"] == "aot_eager" and len(saved["rows"]) == len(bench.CASES)
    assert all(r["rounds"] == 1 for r in saved["rows"])


def test_breaks_failures_and_mismatches_are_reported(capsys, monkeypatch):
    bench = load_script("bench_compile")

    class Reads(torch.nn.Module):  # a data-dependent size: a graph break
        def forward(self, x):
            return x[: int(x.detach().abs().argmax()) + 1].sum() * x

    class Differs(torch.nn.Module):  # compiled and eager disagree
        def forward(self, x):
            return x * (1.0 if torch.compiler.is_compiling() else 2.0)

    def broken(args):
        raise RuntimeError("no input today")

    leaf = lambda: torch.randn(5, 3).requires_grad_()  # noqa: E731
    monkeypatch.setattr(bench, "CASES", {
        "reads": lambda args: (Reads(), (leaf(),), {}, "x [5, 3]"),
        "differs": lambda args: (Differs(), (leaf(),), {}, "x [5, 3]"),
        "broken": broken})
    assert bench.main(QUICK) == 1
    rows = table(capsys.readouterr().out)
    assert rows["reads"]["graphs / breaks"] == "2 / 1"
    assert rows["reads"]["check"].endswith("(ok)")
    assert rows["differs"]["check"].endswith("(FAILED)")
    assert "FAILED: RuntimeError: no input today" in rows["broken"]["check"]


def test_only_selects_by_name_or_prefix(capsys):
    bench = load_script("bench_compile")
    assert bench.main(QUICK + ["--only", "SphereConv,DeepSetsConv"]) == 0
    assert set(table(capsys.readouterr().out)) == {
        "SphereConv (isotropic)", "SphereConv (harmonic)", "DeepSetsConv"}
    with pytest.raises(SystemExit):
        bench.main(QUICK + ["--only", "SphereConv,Nope"])


def test_models_of_the_configs(capsys, tmp_path, monkeypatch):
    bench = load_script("bench_compile")
    monkeypatch.chdir(tmp_path)  # nothing may be written where it runs
    assert bench.main(QUICK + ["--models", "--only", "model: deepsets_sets"]) == 0
    row = table(capsys.readouterr().out)["model: deepsets_sets"]
    assert row["input"].startswith("DeepSets, config deepsets_sets: one training batch")
    assert row["graphs / breaks"] == "1 / 0" and row["check"].endswith("(ok)")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SystemExit):  # model rows only with --models
        bench.main(QUICK + ["--only", "model: deepsets_sets"])
