from pathlib import Path
from conftest import load_script

SCRIPT = Path(__file__).parents[2] / "scripts" / "bench_ops.py"


def rows(text):
    return [line.split() for line in text.splitlines()
            if line.split()[:1] in (["knn_graph"], ["radius_graph"],
                                    ["fps(0.25)"])]


def test_sizes_table_with_fps_and_nothing_timed(capsys, monkeypatch):
    # The fps row used to crash (TypeError) when no backend was timed:
    # torch skipped as too large and torch_cluster missing.
    bench = load_script("bench_ops")
    monkeypatch.setattr(bench.gdl_typing, "WITH_TORCH_CLUSTER", False)
    bench.main(["--sizes", "3000", "--fps", "--repeat", "3",
                "--brute-force-max", "100"])
    out = rows(capsys.readouterr().out)
    assert [r[0] for r in out] == ["knn_graph", "radius_graph", "fps(0.25)"]
    knn, rad, fps = out
    assert knn[2] == "48000" and knn[3] == "skipped" and knn[5] == "n/a"
    assert float(knn[4]) > 0 and float(knn[6]) > 0 and float(knn[7]) > 0
    assert float(rad[4]) > 0 and float(rad[6]) > 0
    assert fps[2:5] == ["-", "skipped", "-"]


def test_sizes_table_times_torch_and_fps(capsys):
    bench = load_script("bench_ops")
    bench.main(["--sizes", "2000", "--fps", "--k", "4"])
    out = rows(capsys.readouterr().out)
    assert out[2][0] == "fps(0.25)" and out[2][2] == "500"
    assert float(out[2][3]) > 0
    assert all(float(r[3]) > 0 and float(r[8]) >= 0 for r in out[:2])


def test_pairs_by_target_is_the_radius_graph():
    import torch

    from gdl_pyg.ops import radius_graph
    bench = load_script("bench_ops")
    x = torch.rand(500, 3, generator=torch.Generator().manual_seed(0),
                   dtype=torch.float64)
    ref = torch.from_numpy(bench.pairs_by_target(x.numpy(), 0.15))
    out = radius_graph(x, 0.15, max_num_neighbors=None, backend="scipy")
    assert torch.equal(ref[1], out[1])  # Sorted by target.
    key = lambda e: set(map(tuple, e.t().tolist()))  # noqa: E731
    assert key(ref) == key(out)
