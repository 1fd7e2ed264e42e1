import importlib.util
from pathlib import Path

import pytest
import torch
from conftest import load_script

SCRIPT = Path(__file__).parents[2] / "scripts" / "bench_e3.py"
WITH_CUE = importlib.util.find_spec("cuequivariance_torch") is not None

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def table_rows(text):
    lines = text.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith("| pair"))
    rows = []
    for line in lines[i + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


QUICK = ["--quick", "--sizes", "60", "--repeats", "1", "--warmup", "0", "--channels", "16",
         "--irreps", "4x0e + 2x1o + 1x2e", "--radial-hidden", "16", "--neighbors", "12"]


def test_quick_run_prints_the_table_and_passes_the_equality_checks(capsys):
    bench = load_script("bench_e3")
    # aot_eager: the compiled rows without inductor's kernel builds (about two
    # minutes on two cores with a cold cache, as in CI)
    assert bench.main(QUICK + ["--compile-backend", "aot_eager"]) == 0
    out = capsys.readouterr().out
    rows = {row[0]: row for row in table_rows(out)}
    egnn = rows["EGNNConv / dense EGNN"]
    tfn = rows["TensorFieldConv (e3nn) / e3nn Convolution"]
    cue = rows["TensorFieldConv (cuequivariance) / e3nn Convolution"]
    for row in (egnn, tfn) + ((cue,) if WITH_CUE else ()):
        assert row[1] == "60" and int(row[2]) > 60 * 4  # N, E: a radius graph, not empty
        assert int(row[4]) == 1                         # rounds
        assert float(row[5]) > 0 and float(row[6]) > 0 and float(row[7]) > 0
        diff = float(row[8].split()[0])
        assert row[8].endswith("(ok)") and diff < 1e-9
    if not WITH_CUE:
        assert "not available" in cue[-1]
    # the compiled rows: each layer next to itself eager, TFN next to e3nn compiled
    for name in ("EGNNConv, compiled / EGNNConv, eager",
                 "TensorFieldConv (e3nn), compiled / e3nn Convolution, compiled",
                 "TensorFieldConv (e3nn), compiled / TensorFieldConv (e3nn), eager"):
        row = rows[name]
        assert int(row[4]) == 1 and float(row[5]) > 0 and float(row[6]) > 0
        assert float(row[7]) > 0
        assert row[8].endswith("vs eager, float32 (ok)") and float(row[8].split()[0]) < 1e-4
    assert "equality check passed" in out and "compiled within 0.0001" in out


def test_a_wrong_compiled_result_fails_the_check(capsys, monkeypatch):
    bench = load_script("bench_e3")

    class Off(torch.nn.Module):  # a "compiler" whose output is off by 1e-2
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, *args):
            out = self.module(*args)
            return (out[0] + 1e-2,) + tuple(out[1:]) if isinstance(out, tuple) else out + 1e-2

    monkeypatch.setattr(torch, "compile", lambda module, backend: Off(module))
    assert bench.main(QUICK + ["--no-cue"]) == 1
    out = capsys.readouterr().out
    assert "EGNNConv, compiled vs eager" in out and "TensorFieldConv (e3nn), compiled vs eager" \
        in out
    assert "equality check passed" not in out


def test_a_broken_reference_fails_the_check(capsys, monkeypatch):
    bench = load_script("bench_e3")
    original = bench.DenseEGNN.forward

    def off_by_a_little(self, *args):
        h, pos = original(self, *args)
        return h + 1e-6, pos

    monkeypatch.setattr(bench.DenseEGNN, "forward", off_by_a_little)
    assert bench.main(QUICK + ["--no-cue", "--no-compile"]) == 1
    out = capsys.readouterr().out
    assert "equality check FAILED: EGNNConv vs dense at N=60" in out
    assert "(FAILED)" in out and "equality check passed" not in out


def test_dense_egnn_equals_egnn_conv_with_options():
    bench = load_script("bench_e3")
    from gdl_pyg.nn.conv.egnn_conv import EGNNConv

    pos, edge_index, r = bench.random_cloud(40, 8, seed=3)
    n, E = pos.size(0), edge_index.size(1)
    assert abs(E / n - 8) < 2 and r > 0
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 5, generator=gen, dtype=torch.float64)
    vel = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    ea = torch.randn(E, 2, generator=gen, dtype=torch.float64)
    pos = pos.double()
    adj = torch.zeros(n, n, dtype=torch.float64)
    adj[edge_index[1], edge_index[0]] = 1.0
    ea_dense = torch.zeros(n, n, 2, dtype=torch.float64)
    ea_dense[edge_index[1], edge_index[0]] = ea
    for kwargs in (dict(attention=True, velocity=True), dict(coords_agg="sum", tanh=True),
                   dict(normalize=False)):
        conv = EGNNConv(5, 5, 12, edge_dim=2, **kwargs).double()
        torch.nn.init.normal_(conv.coord_mlp[-1].weight)  # coordinates really move
        v = vel if conv.velocity else None
        h, p = conv(x, pos, edge_index, ea, v)
        h_ref, p_ref = bench.DenseEGNN(conv)(x, pos, adj, ea_dense, v)
        assert (p - pos).abs().max() > 1e-2
        assert (h - h_ref).abs().max() < 1e-10 and (p - p_ref).abs().max() < 1e-10


def test_dense_is_skipped_above_the_memory_cap(capsys):
    bench = load_script("bench_e3")
    assert bench.main(QUICK + ["--no-cue", "--no-compile", "--dense-max-gib", "0.0001"]) == 0
    out = capsys.readouterr().out
    rows = {row[0]: row for row in table_rows(out)}
    assert "dense skipped" in rows["EGNNConv / dense EGNN"][-1]
    assert "skipped (--no-cue)" in rows["TensorFieldConv (cuequivariance) / e3nn Convolution"][-1]


def test_interleaved_budget_cuts_rounds():
    bench = load_script("bench_e3")
    calls = []
    times = bench.interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                              repeats=50, warmup=1, device=torch.device("cpu"), budget=0.0)
    assert len(times["a"]) == len(times["b"]) == 3  # at least 3 rounds
    assert calls[:2] == ["a", "b"] and calls[2:4] == ["a", "b"] and calls[4:6] == ["b", "a"]
    assert bench.paired_ratio([2.0, 4.0, 6.0], [1.0, 1.0, 2.0]) == 3.0
