from pathlib import Path

import pytest

from gdl_pyg.testing import with_package
from gdl_pyg.typing import WITH_TORCH_SPARSE
from conftest import load_script

SCRIPT = Path(__file__).parents[2] / "scripts" / "bench_graph.py"

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def table(out):
    r"""``{name: (eager ms, compiled, compile s, compiled/eager)}`` of the
    script's table (columns from the right: the name may hold spaces, the
    compiled cell too: ``failed: IndexError``)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("layer"))
    assert lines[start].split()[-1] == "compiled/eager"
    rows = {}
    for line in lines[start + 1:]:
        if line.startswith("note:"):
            break
        name, cells = line[:40].strip(), line[40:].split()
        eager, compiled, ctime, ratio = cells[0], " ".join(cells[1:-2]), cells[-2], cells[-1]
        rows[name] = (float(eager), compiled, ctime, ratio)
    return rows


TINY = ["--nodes", "60", "--edges", "300", "--channels", "8", "--heads", "2", "--edge-dim", "4",
        "--reps", "1", "--warmup", "0"]


def test_eager_rows_all_run(capsys):
    load_script("bench_graph").main(TINY + ["--no-compile"])
    out = capsys.readouterr().out
    rows = table(out)
    assert len(rows) == (18 if WITH_TORCH_SPARSE else 14)
    for name in ("GINConv (PyG)", "MessagePassingConv (GIN)", "MessagePassingConv (GIN) CSR adj_t",
                 "GCNConv (PyG) CSR gcn_adjacency", "MessagePassingConv (GINE)"):
        eager, compiled, _, ratio = rows[name]
        assert eager > 0 and compiled == "-" and ratio == "-"
    assert "note:" not in out


def test_rows_filter_and_compiled_sparse_rows(capsys):
    # the compiled CSR rows run (GIN on adj_t, GCN on the precomputed adjacency, and
    # ours normalising adj_t), each with its paired compiled/eager ratio; PyG's
    # normalise-a-sparse-adj_t row says why it is not compiled
    load_script("bench_graph").main(TINY + ["--rows", "GIN) CSR,GINConv (PyG) CSR,CSR adj_t (norm,"
                                         "GCNConv (PyG) CSR"])
    out = capsys.readouterr().out
    rows = table(out)
    assert set(rows) == {"MessagePassingConv (GIN) CSR adj_t", "GINConv (PyG) CSR adj_t",
                         "ConvolutionalConv CSR adj_t (norm+spmm)", "GCNConv (PyG) CSR adj_t",
                         "GCNConv (PyG) CSR gcn_adjacency"}
    for name in ("MessagePassingConv (GIN) CSR adj_t", "GINConv (PyG) CSR adj_t",
                 "GCNConv (PyG) CSR gcn_adjacency", "ConvolutionalConv CSR adj_t (norm+spmm)"):
        _, compiled, ctime, ratio = rows[name]
        assert float(compiled) > 0 and float(ctime) >= 0, (name, rows[name])
        assert ratio.endswith("x") and float(ratio[:-1]) > 0, (name, rows[name])
    assert rows["GCNConv (PyG) CSR adj_t"][1:] == ("skipped", "-", "-")
    assert "note: GCNConv (PyG) CSR adj_t: not compiled: torch.compile cannot trace" in out
    assert "ConvolutionalConv CSR adj_t (norm+spmm): not compiled" not in out
    assert "note: compiled rows on a CSR adj_t: dynamo takes no sparse tensors" in out
    assert "failed" not in out


def test_time_fwd_bwd_alternates_the_functions():
    calls = []

    def fn(name):
        def f(x):
            calls.append(name)
            return x * 2
        return f

    import torch
    x = torch.ones(3, requires_grad=True)
    times = load_script("bench_graph").time_fwd_bwd([fn("a"), fn("b")], (x, ),
                                                    torch.device("cpu"), 1, 3)
    assert calls == ["a", "b"] * 4
    assert [len(t) for t in times] == [3, 3]


@with_package("torch_sparse")
def test_sparse_tensor_rows(capsys):
    # ours compile on a SparseTensor (dynamo traces it; we read its stored
    # tensors), PyG's are skipped with the reason
    load_script("bench_graph").main(TINY + ["--rows", "SparseTensor"])
    out = capsys.readouterr().out
    rows = table(out)
    assert set(rows) == {"GCNConv (PyG) SparseTensor", "ConvolutionalConv SparseTensor (norm)",
                         "GINConv (PyG) SparseTensor", "MessagePassingConv (GIN) SparseTensor"}
    for name in ("ConvolutionalConv SparseTensor (norm)", "MessagePassingConv (GIN) SparseTensor"):
        assert float(rows[name][1]) > 0 and rows[name][3].endswith("x"), rows[name]
    for name in ("GCNConv (PyG) SparseTensor", "GINConv (PyG) SparseTensor"):
        assert rows[name][1] == "skipped"
        assert f"note: {name}: not compiled: torch.compile cannot trace torch_sparse" in out
    assert "failed" not in out
