import re
from pathlib import Path

import pytest
import torch
from conftest import load_script as load

SCRIPTS = Path(__file__).parents[2] / "scripts"


def test_tiny_run_prints_every_row(capsys):
    threads = torch.get_num_threads()
    try:
        rows = load("bench_grid").main(["--batch", "1", "--channels", "4", "--size", "6",
                                        "--repeats", "3", "--warmup", "1", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    text = capsys.readouterr().out
    labels = [label for label, _, _ in rows]
    assert any(label.startswith("GroupConv p4 fast path vs dense conv2d (") for label in labels)
    assert any(label.startswith("GroupConv p4m fast path") for label in labels)
    assert any(label.startswith("LiftingConv p4 fast path") for label in labels)
    assert all(t_ref > 0 and t_cand > 0 for _, t_ref, t_cand in rows)
    # every timed row prints a ratio and its IQR; escnn is timed or skipped
    for label in labels:
        assert re.search(re.escape(label) + r"\s+[\d.]+\s+[\d.]+\s+[\d.]+x\s+[\d.]+", text)
    # escnn (C4 and D4 rows) is timed or skipped with the reason
    for group in ("C4", "D4"):
        if not any(f"escnn R2Conv, {group} regular" in label for label in labels):
            assert re.search(rf"vs escnn R2Conv, {group} regular \(.*\): .*skipped", text)


def test_p4_references_agree_with_the_layers():
    from types import SimpleNamespace
    args = SimpleNamespace(device="cpu", dtype=torch.float64, batch=2, channels=8, size=5,
                           kernel_size=3)
    assert load("_bench_p4").check_agreement(args) < 1e-10


def test_paired_times_reports_ratio_and_spread():
    bench = load("bench_grid")
    args = bench.parse_args(["--repeats", "4", "--warmup", "0"])
    calls = []
    t_ref, t_cand, ratio, iqr = bench.paired_times(lambda: calls.append("r"),
                                                   lambda: calls.append("c"), args)
    assert calls == ["r", "c", "c", "r", "r", "c", "c", "r"]  # interleaved, alternating
    assert t_ref > 0 and t_cand > 0 and ratio > 0 and iqr >= 0


def _p4_args(dtype=torch.float64, channels=8):
    from types import SimpleNamespace
    return SimpleNamespace(device="cpu", dtype=dtype, batch=2, channels=channels, size=5,
                           kernel_size=3)


def test_escnn_rows_say_why_they_are_skipped(monkeypatch, capsys):
    import sys
    import types
    bench_p4 = load("_bench_p4")
    for name in [name for name in sys.modules if name.startswith("escnn.")]:
        monkeypatch.delitem(sys.modules, name)  # where escnn is installed and imported
    monkeypatch.setitem(sys.modules, "escnn", None)  # as if not installed
    rows = bench_p4.escnn_cases(_p4_args(), "s4", "s8")
    assert [label for label, _, _ in rows] == [
        "GroupConv p4 fast path vs escnn R2Conv, C4 regular (s4): escnn not installed",
        "GroupConv p4m fast path vs escnn R2Conv, D4 regular (s8): escnn not installed"]
    assert all(ref is None and cand is None for _, ref, cand in rows)
    # installed but broken (a dependency that does not import): the error is named
    broken = types.ModuleType("escnn")

    def fail(name):
        raise ImportError("numpy.core.multiarray failed to import")
    broken.__getattr__ = fail
    monkeypatch.setitem(sys.modules, "escnn", broken)
    labels = [label for label, _, _ in bench_p4.escnn_cases(_p4_args(), "s4", "s8")]
    assert all(label.endswith("escnn does not import (ImportError: numpy.core.multiarray "
                              "failed to import)") for label in labels), labels
    # bench_grid prints such rows as skipped and times the others
    threads = torch.get_num_threads()
    try:
        rows = load("bench_grid").main(["--batch", "1", "--channels", "4", "--size", "4",
                                        "--repeats", "1", "--warmup", "0", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    text = capsys.readouterr().out
    assert len(re.findall(r"vs escnn R2Conv, [CD]4 regular .*escnn does not import.*skipped",
                          text)) == 2
    assert not any("escnn" in label for label, _, _ in rows)


def test_group_conv_from_escnn_rejects_other_filters():
    bench_p4 = load("_bench_p4")
    C, k = 2, 3
    plain = torch.nn.Conv2d(4 * C, 4 * C, k)  # a random filter: not rotation-tied
    with pytest.raises(ValueError, match="not a G-CNN filter"):
        bench_p4.group_conv_from_escnn(plain, C, k, bench_p4.CyclicGroup(4))
    with pytest.raises(ValueError, match="expected the exported Conv2d"):
        bench_p4.group_conv_from_escnn(torch.nn.Conv2d(3 * C, 4 * C, k), C, k,
                                       bench_p4.CyclicGroup(4))
    # a filter that is one: the expanded weight of a GroupConv round-trips
    for group in (bench_p4.CyclicGroup(4), "p4m"):
        ref = bench_p4.GroupConv(C, C, k, group)
        G = ref.order
        exported = torch.nn.Conv2d(G * C, G * C, k)
        with torch.no_grad():
            exported.weight.copy_(ref.expanded_weight())
            exported.bias.copy_(ref.bias.repeat_interleave(G))
        ours = bench_p4.group_conv_from_escnn(exported, C, k, group)
        assert torch.equal(ours.weight, ref.weight) and torch.equal(ours.bias, ref.bias)


def test_escnn_rows_compute_the_same_fields():
    pytest.importorskip("escnn")
    rows = load("_bench_p4").escnn_cases(_p4_args())
    assert len(rows) == 4, [label for label, _, _ in rows]  # C4, D4: R2Conv and exported
    for label, reference, candidate in rows:
        ref = reference()  # [B, C, |G|, H, W]
        ref = ref.permute(0, 3, 4, 2, 1).reshape(-1, ref.size(1))
        assert ref.abs().max() > 0.1
        # escnn samples its basis in float32: its filter's rotated copies agree
        # to that precision (ours are exact copies of its h = e row)
        assert (candidate() - ref).abs().max() < 1e-5 * ref.abs().max(), label
