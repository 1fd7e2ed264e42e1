import importlib.util
import re
from pathlib import Path

import pytest

pytest.importorskip("trimesh")

SCRIPT = Path(__file__).parents[2] / "scripts" / "bench_mesh.py"


def load_script():
    spec = importlib.util.spec_from_file_location("bench_mesh", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def table_rows(text, header_start):
    r"""The data rows of the markdown table whose header starts with
    ``header_start``."""
    lines = text.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[i + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_icosphere_sizes():
    bench = load_script()
    assert [bench.icosphere(n)[0].size(0) for n in (10, 162, 600, 2500)] == \
        [12, 162, 642, 2562]


def test_quick_run_prints_both_tables(capsys):
    bench = load_script()
    bench.main(["--quick", "--sizes", "162", "642", "--repeats", "1", "--layer-vertices", "162",
                "--rounds", "2", "--channels", "6"])
    out = capsys.readouterr().out
    mesh_rows = table_rows(out, "| vertices |")
    assert [row[0] for row in mesh_rows] == ["162", "642"]
    for row in mesh_rows:
        assert float(row[2]) > 0 and float(row[3]) > 0  # ms, us/vertex
        assert float(row[-2]) > 0  # peak MiB
        try:
            import igl  # noqa: F401
            assert float(row[6]) > 0  # shared part / igl
        except ImportError:
            assert "libigl not installed" in row[5]
    layer_rows = {row[0].split(" ")[0]: row for row in table_rows(out, "| layer |")}
    # PyG's references always run; GMMConv is the base of the ratios
    assert float(layer_rows["GMMConv"][3]) == 1.0
    assert float(layer_rows["FeaStConv"][1]) > 0
    for name in ("GEMConv", "GeodesicConv", "DiffusionConv"):
        row = layer_rows[name]
        assert row[1].startswith("not available") or float(row[3]) > 0, row
    assert re.search(r"N=162, E=960", out)


def test_missing_layer_is_reported_not_raised(capsys, monkeypatch):
    bench = load_script()
    original = bench.layer_cases

    def with_broken(*args):
        def broken():
            raise ImportError("no such layer")
        return original(*args) + [("BrokenConv", broken)]

    monkeypatch.setattr(bench, "layer_cases", with_broken)
    bench.main(["--skip-mesh", "--layer-vertices", "42", "--rounds", "1", "--channels", "3"])
    out = capsys.readouterr().out
    assert "| BrokenConv | not available (ImportError: no such layer) | - | - |" in out
    assert "## mesh_to_data" not in out
