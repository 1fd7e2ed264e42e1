import json
import math
from pathlib import Path

import pytest
from conftest import load_script

ROOT = Path(__file__).resolve().parents[2]


bench_all = load_script("bench_all")


def _table_rows(text):
    tables = bench_all.markdown_tables(text)
    assert tables, text
    return tables[0]


def test_quick_run_writes_a_table_of_positive_finite_ratios(tmp_path):
    out = tmp_path / "bench_all.md"
    report = bench_all.main(["--quick", "--only", "ops,memory", "--out", str(out)])
    text = out.read_text()
    assert "python scripts/bench_all.py --quick --only ops,memory" in text
    rows = _table_rows(text)
    benches = {r["bench"] for r in rows}
    assert benches == {"ops", "memory"}, rows
    assert any(r["case"].startswith("knn_graph") for r in rows)
    assert any(r["case"].startswith("radius_graph") for r in rows)
    # the layers' own sum over edges, next to PyG's gather + scatter-add
    fused = [r for r in rows if r["case"].startswith("fused gather-scatter")]
    assert len(fused) == 1 and "of copy" in fused[0]["case"], rows
    assert "index_add_" in text.split(fused[0]["case"])[1].splitlines()[0]
    for r in rows:
        ratio = float(r["ratio (ours / peer)"])
        assert math.isfinite(ratio) and ratio > 0, r
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["command"] == report["command"]
    assert [b["status"] for b in saved["benches"]] == ["ok", "ok"]
    assert len([r for b in saved["benches"] for r in b["rows"]]) == len(rows)


def test_a_failing_script_becomes_a_row(tmp_path, monkeypatch):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "bench_grid.py").write_text("import sys\nsys.exit('grid broke: IndexError')\n")
    (scripts / "bench_ops.py").write_text("print('nothing to see')\n")
    monkeypatch.setattr(bench_all, "SCRIPTS", scripts)
    out = tmp_path / "t.md"
    report = bench_all.main(["--only", "grid,ops", "--out", str(out)])
    status = {b["bench"]: b["status"] for b in report["benches"]}
    assert status == {"grid": "exit 1", "ops": "no rows"}
    text = out.read_text()
    assert "grid broke: IndexError" in text
    assert "**no rows**" in text


def test_only_rejects_unknown_names(tmp_path):
    with pytest.raises(SystemExit):
        bench_all.main(["--only", "graph,nope", "--out", str(tmp_path / "x.md")])


# the parsers, on the formats the scripts print

GRAPH = """\
device=cpu (1 threads), torch 2.13, N=2000
layer                                      eager ms  compiled ms  compile s
GCNConv (PyG)                                  10.0         8.0        3.1
GCNConv (PyG) CSR adj_t                         6.0 failed: IndexError      -
ConvolutionalConv edge_index                    5.0         4.0        2.0
ConvolutionalConv CSR adj_t (norm+spmm)         3.0         2.0        1.0
GINEConv (PyG)                                 20.0            -          -
MessagePassingConv (GINE)                      10.0            -          -
"""


def test_parse_graph_pairs_rows_with_their_pyg_peer():
    rows = {r["case"]: r for r in bench_all.parse_graph(GRAPH, {})}
    assert rows["ConvolutionalConv edge_index, eager"]["peer"] == "GCNConv (PyG), eager"
    assert rows["ConvolutionalConv edge_index, eager"]["ratio"] == pytest.approx(0.5)
    assert rows["ConvolutionalConv edge_index, compiled"]["ratio"] == pytest.approx(0.5)
    sparse = rows["ConvolutionalConv CSR adj_t (norm+spmm), eager"]
    assert sparse["peer"] == "GCNConv (PyG) CSR adj_t, eager"
    assert sparse["ratio"] == pytest.approx(0.5)
    # PyG's row failed to compile: ours compiled is set against PyG's eager time
    compiled = rows["ConvolutionalConv CSR adj_t (norm+spmm), compiled"]
    assert compiled["peer"] == "GCNConv (PyG) CSR adj_t, eager"
    assert compiled["ratio"] == pytest.approx(2. / 6.)
    assert "does not compile" in compiled["basis"]
    assert rows["MessagePassingConv (GINE), eager"]["ratio"] == pytest.approx(0.5)
    assert len(rows) == 5


# bench_graph's table with its paired compiled/eager column
GRAPH_PAIRED = """\
device=cpu (1 threads), torch 2.13, N=2000
layer                                      eager ms  compiled ms  compile s  compiled/eager
GCNConv (PyG) CSR adj_t                         6.0      skipped          -               -
GCNConv (PyG) CSR gcn_adjacency                 4.0          5.0        1.0           1.20x
ConvolutionalConv CSR adj_t (norm+spmm)         3.0          1.5        1.0           0.55x
ConvolutionalConv CSR gcn_adjacency             2.0          1.0        1.0           0.45x
GINEConv (PyG)                                 20.0         24.0        2.0           1.15x
MessagePassingConv (GINE)                      16.0          4.0        9.0           0.25x
GCNConv (PyG) SparseTensor                      5.0      skipped          -               -
ConvolutionalConv SparseTensor (norm)           2.5          1.0        3.0           0.40x
note: GCNConv (PyG) CSR adj_t: not compiled: torch.compile cannot trace PyG's gcn_norm
"""


def test_parse_graph_pairs_inputs_and_paired_compiled_rows():
    rows = {(r["case"], r["peer"]): r for r in bench_all.parse_graph(GRAPH_PAIRED, {})}
    # the precomputed adjacency pairs with PyG's row on the precomputed adjacency
    pre = rows[("ConvolutionalConv CSR gcn_adjacency, eager",
                "GCNConv (PyG) CSR gcn_adjacency, eager")]
    assert pre["ratio"] == pytest.approx(0.5)
    assert rows[("ConvolutionalConv CSR gcn_adjacency, compiled",
                 "GCNConv (PyG) CSR gcn_adjacency, compiled")]["ratio"] == pytest.approx(0.2)
    # the normalising row pairs with PyG's on adj_t: eager, and compiled against
    # PyG's eager time (PyG's is skipped)
    assert rows[("ConvolutionalConv CSR adj_t (norm+spmm), eager",
                 "GCNConv (PyG) CSR adj_t, eager")]["ratio"] == pytest.approx(0.5)
    assert rows[("ConvolutionalConv CSR adj_t (norm+spmm), compiled",
                 "GCNConv (PyG) CSR adj_t, eager")]["ratio"] == pytest.approx(0.25)
    # compiled against eager of the same layer: the script's paired ratio, not 1.5 / 3
    own = rows[("ConvolutionalConv CSR adj_t (norm+spmm), compiled",
                "ConvolutionalConv CSR adj_t (norm+spmm), eager")]
    assert own["ratio"] == pytest.approx(0.55) and own["basis"] == "median of paired ratios"
    gine = rows[("MessagePassingConv (GINE), compiled", "GINEConv (PyG), compiled")]
    assert gine["ratio"] == pytest.approx(4. / 24.)
    assert rows[("MessagePassingConv (GINE), compiled",
                 "MessagePassingConv (GINE), eager")]["ratio"] == pytest.approx(0.25)
    # a SparseTensor row pairs with PyG's SparseTensor row, not its CSR one
    assert rows[("ConvolutionalConv SparseTensor (norm), eager",
                 "GCNConv (PyG) SparseTensor, eager")]["ratio"] == pytest.approx(0.5)
    assert rows[("ConvolutionalConv SparseTensor (norm), compiled",
                 "GCNConv (PyG) SparseTensor, eager")]["ratio"] == pytest.approx(0.2)
    assert len(rows) == 4 * 3


def test_parse_grid_ops_mesh_e3_stack(tmp_path):
    grid = ("case  reference ms  candidate ms  ratio\n-----\n"
            "GridConv dense vs Conv2d          2.00          1.50    0.75x\n")
    (r,) = bench_all.parse_grid(grid, {})
    assert (r["case"], r["peer"], r["ratio"]) == ("GridConv dense", "Conv2d", 0.75)

    ops = ("op                   N     edges   torch (s)   scipy (s) cluster (s) cKDTree (s)"
           " scipy/raw torch/scipy\n"
           "knn_graph         2000     32000       0.072       0.016         n/a"
           "       0.010      1.45         4.5\n"
           "radius_graph      2000     30000     skipped       0.012         n/a"
           "       0.010      1.10           -\n")
    rows = bench_all.parse_ops(ops, {})
    assert [r["case"] for r in rows] == ["knn_graph N=2000 (backend='scipy')",
                                         "knn_graph N=2000 (backend='torch')",
                                         "radius_graph N=2000 (backend='scipy')"]
    # the scipy backend: the paired median column, not the ratio of best times (1.6)
    assert rows[0]["ratio"] == pytest.approx(1.45)
    assert rows[0]["basis"] == "median of paired ratios"
    assert rows[1]["ratio"] == pytest.approx(7.2) and rows[1]["basis"] == "ratio of best times"
    assert rows[0]["peer"] == "scipy cKDTree build + query(k+1)"
    assert rows[2]["peer"] == "scipy cKDTree build + query_pairs + stable sort by target"
    assert rows[2]["ratio"] == pytest.approx(1.1)

    mesh = ("| vertices | faces | mesh_to_data ms | us/vertex | shared part us/vertex "
            "| igl cotmatrix+massmatrix us/vertex | shared / igl | peak MiB | bytes/vertex |\n"
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
            "| 2562 | 5120 | 20.0 | 8.00 | 4.00 | 2.00 | 2.00 | 1.0 | 400 |\n"
            "| 10242 | 20480 | 100.0 | 10.00 | 5.00 | 2.00 | 2.50 | 4.0 | 400 |\n\n"
            "| layer | fwd+bwd ms | ns/edge | ratio to GMMConv (median of paired) |\n"
            "| --- | ---: | ---: | ---: |\n"
            "| GMMConv | 10.0 | 100 | 1.00 |\n| GEMConv | 8.0 | 80 | 0.80 |\n"
            "| FeaStConv | not available (ImportError) | - | - |\n")
    rows = {r["case"]: r for r in bench_all.parse_mesh(mesh, {})}
    assert rows["mesh_to_data, all geometry, N=10242"]["ratio"] == pytest.approx(5.0)
    assert rows["mesh_to_data, shared part, N=2562"]["ratio"] == pytest.approx(2.0)
    assert rows["mesh_to_data us/vertex, N=10242"]["ratio"] == pytest.approx(1.25)
    assert rows["GEMConv"]["ratio"] == pytest.approx(0.8)
    assert rows["GEMConv"]["peer"] == "GMMConv"
    assert "GMMConv" not in rows and "FeaStConv" not in rows
    assert rows["mesh_to_data, all geometry, N=10242"]["basis"] == "ratio of medians"

    # with the paired "whole / igl" column (and a lower bound for the peak)
    mesh = ("| vertices | faces | mesh_to_data ms | us/vertex | shared part us/vertex "
            "| igl cotmatrix+massmatrix us/vertex | shared / igl | whole / igl | peak MiB "
            "| bytes/vertex |\n"
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
            "| 2562 | 5120 | 20.0 | 8.00 | 4.00 | 2.00 | 1.90 | 3.90 | >=1.0 | 400 |\n"
            "| 10242 | 20480 | 100.0 | 10.00 | 5.00 | 2.00 | 2.40 | 4.80 | 4.0 | 400 |\n\n"
            "goal (issue 11): mesh_to_data at most 3x igl cotmatrix+massmatrix at N=10242: "
            "4.80x, NOT met\n")
    rows = {r["case"]: r for r in bench_all.parse_mesh(mesh, {})}
    whole = rows["mesh_to_data, all geometry, N=10242"]
    assert whole["ratio"] == pytest.approx(4.8) and whole["ours"] == pytest.approx(10.0)
    assert whole["basis"] == "median of paired ratios"
    assert rows["mesh_to_data, shared part, N=2562"]["ratio"] == pytest.approx(1.9)
    assert rows["mesh_to_data us/vertex, N=10242"]["ratio"] == pytest.approx(1.25)
    assert len(rows) == 5

    e3 = ("| pair (ours / reference) | N | E | E / N | rounds | ours ms | reference ms "
          "| ratio (median of paired) | max abs diff, float64 |\n"
          "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n"
          "| EGNNConv / dense EGNN | 250 | 5000 | 20 | 3 | 1.0 | 2.0 | 0.52 | 1e-15 |\n")
    (r,) = bench_all.parse_e3(e3, {})
    assert (r["case"], r["peer"], r["ratio"]) == ("EGNNConv, N=250", "dense EGNN", 0.52)

    path = tmp_path / "stack.json"
    path.write_text(json.dumps({
        "epoch": {"lightning_epoch_s": 2.0, "plain_epoch_s": 1.0, "ratio": 1.9},
        "startup_s": {"python -c pass": 0.1, "python -m gdl_pyg --help": 3.0}}))
    rows = {r["case"]: r for r in bench_all.parse_stack("", {"json": str(path)})}
    assert rows["gdl-pyg fit, one epoch"]["ratio"] == pytest.approx(1.9)
    assert rows["start-up: python -m gdl_pyg --help"]["ratio"] == pytest.approx(30.0)
    assert "bare Lightning (no callbacks, logging or metrics), one epoch" not in rows
    path.write_text(json.dumps({"epoch": {
        "lightning_epoch_s": 2.0, "plain_epoch_s": 1.0, "ratio": 1.9, "bare_epoch_s": 1.6,
        "bare_ratio": 1.55, "ratio_to_bare": 1.2}}))
    rows = {r["case"]: r for r in bench_all.parse_stack("", {"json": str(path)})}
    bare = rows["bare Lightning (no callbacks, logging or metrics), one epoch"]
    assert (bare["peer"], bare["ratio"]) == ("plain PyTorch loop", pytest.approx(1.55))
    over = rows["gdl-pyg fit on top of Lightning's loop, one epoch"]
    assert (over["peer"], over["ratio"]) == ("bare Lightning", pytest.approx(1.2))
    assert rows["gdl-pyg fit, one epoch"]["ratio"] == pytest.approx(1.9)


def test_parse_compile():
    text = ("## torch.compile (inductor) / eager\n\n"
            "| layer | input | graphs / breaks | compile s | eager ms | compiled ms | "
            "compiled / eager | check |\n"
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |\n"
            "| GEMConv | N=10 | 1 / 0 | 7.8 | 2.00 | 1.50 | 0.77 | "
            "1.4e-06 vs eager, float32 (ok) |\n"
            "| GridConv | B=8 | - | - | - | - | - | FAILED: RuntimeError: x |\n")
    gem, grid = bench_all.parse_compile(text, {})
    assert gem["bench"] == "compile" and gem["peer"] == "GEMConv, eager"
    assert gem["ratio"] == pytest.approx(0.77) and gem["ours"] == pytest.approx(1.5)
    assert "graphs / breaks 1 / 0" in gem["case"]
    assert grid["ratio"] is None and "FAILED" in grid["basis"]
    assert "compile" in bench_all.NAMES and "compile" in bench_all.SPECS
