import importlib.util
import re
from pathlib import Path

import torch

SCRIPTS = Path(__file__).parents[2] / "scripts"


def load(name):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    assert "escnn" in text
    if not any("escnn R2Conv" in label for label in labels):
        assert re.search(r"escnn unavailable .*skipped", text)


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
