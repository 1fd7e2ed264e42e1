import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "scripts" / "bench_graph.py"

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def load_script():
    spec = importlib.util.spec_from_file_location("bench_graph", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def table(out):
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("layer"))
    rows = {}
    for line in lines[start + 1:]:
        if line.startswith("note:"):
            break
        name, eager, compiled, ctime = line[:40].strip(), *line[40:].split()[:1], \
            *line[40:].split()[1:2], line.split()[-1]
        rows[name] = (float(eager), compiled, ctime)
    return rows


TINY = ["--nodes", "60", "--edges", "300", "--channels", "8", "--heads", "2", "--edge-dim", "4",
        "--reps", "1", "--warmup", "0"]


def test_eager_rows_all_run(capsys):
    load_script().main(TINY + ["--no-compile"])
    rows = table(capsys.readouterr().out)
    assert len(rows) == 14
    for name in ("GINConv (PyG)", "MessagePassingConv (GIN)", "MessagePassingConv (GIN) CSR adj_t",
                 "GCNConv (PyG) CSR gcn_adjacency", "MessagePassingConv (GINE)"):
        eager, compiled, _ = rows[name]
        assert eager > 0 and compiled == "-"


def test_rows_filter_and_compiled_sparse_rows(capsys):
    # the compiled CSR rows run (GIN on adj_t, GCN on the precomputed adjacency) and
    # the normalise-a-sparse-adj_t rows say why they are not compiled
    load_script().main(TINY + ["--rows", "GIN) CSR,GINConv (PyG) CSR,CSR adj_t (norm,"
                                         "GCNConv (PyG) CSR"])
    out = capsys.readouterr().out
    rows = table(out)
    assert set(rows) == {"MessagePassingConv (GIN) CSR adj_t", "GINConv (PyG) CSR adj_t",
                         "ConvolutionalConv CSR adj_t (norm+spmm)", "GCNConv (PyG) CSR adj_t",
                         "GCNConv (PyG) CSR gcn_adjacency"}
    for name in ("MessagePassingConv (GIN) CSR adj_t", "GINConv (PyG) CSR adj_t",
                 "GCNConv (PyG) CSR gcn_adjacency"):
        assert float(rows[name][1]) > 0, (name, rows[name])
    for name in ("ConvolutionalConv CSR adj_t (norm+spmm)", "GCNConv (PyG) CSR adj_t"):
        assert rows[name][1] == "skipped"
        assert f"note: {name}: not compiled: torch.compile cannot trace" in out
    assert "failed" not in out
