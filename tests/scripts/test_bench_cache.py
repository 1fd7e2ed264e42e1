import json

import pytest
from conftest import load_script

bench_cache = load_script("bench_cache")
bench_all = load_script("bench_all")


def test_quick_run_checks_every_pair_and_writes_json(tmp_path, capsys):
    out = tmp_path / "cache.json"
    assert bench_cache.main(["--quick", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    saved = json.loads(out.read_text())
    rows = saved["rows"]
    cases = {(r["case"], r["peer"]) for r in rows}
    assert ("ConvolutionalConv, edge_index", "GCNConv, edge_index") in cases
    assert ("MessagePassingConv (GIN), CSR adj_t", "GINConv, CSR adj_t") in cases
    assert any(p.endswith("(cache gain)") for _, p in cases)
    for r in rows:  # the same weights on the same graphs: the same outputs
        assert r["check"] and r["max_rel_diff"] <= bench_cache.TOL, r
        assert r["ratio"] > 0 and r["ours_ms"] > 0 and r["peer_ms"] > 0
    assert set(saved["collate_ms"]) >= {"edge_index", "CSR adj_t (GCNNorm)", "CSR adj_t"}
    # bench_all reads the printed table, one row per case
    parsed = bench_all.parse_cache(text, {})
    assert len(parsed) == len(rows)
    assert all(p["bench"] == "cache" and p["ratio"] > 0 for p in parsed)


def test_a_failed_check_fails_the_run(monkeypatch, capsys):
    monkeypatch.setattr(bench_cache, "TOL", -1.0)  # nothing passes
    assert bench_cache.main(["--quick"]) == 1
    parsed = bench_all.parse_cache(capsys.readouterr().out, {})
    assert parsed and all(p["ratio"] is None and "FAILED" in p["basis"] for p in parsed)


def test_rejects_sizes_below_one():
    with pytest.raises(SystemExit):
        bench_cache.main(["--graphs", "0"])
