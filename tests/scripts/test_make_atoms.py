import gzip
import os

import numpy as np
import pytest

pytest.importorskip("ase")
import ase.io  # noqa: E402
from ase.calculators.emt import EMT  # noqa: E402
from conftest import load_script

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "make_atoms.py")
SHIPPED = os.path.join(os.path.dirname(__file__), "..", "..", "datasets", "atoms")


def test_make_atoms(tmp_path, capsys):
    script = load_script("make_atoms")
    args = ["--num-train", "6", "--num-test", "3", "--seed", "5"]
    paths = script.main(["--out", str(tmp_path / "a")] + args)
    assert [os.path.basename(p) for p in paths] == ["train.xyz.gz", "test.xyz.gz"]
    assert "wrote" in capsys.readouterr().out
    again = script.main(["--out", str(tmp_path / "b")] + args)
    other = script.main(["--out", str(tmp_path / "c")] + args[:-1] + ["6"])
    for p, q in zip(paths, again):  # byte-for-byte reproducible (gzip mtime 0)
        with open(p, "rb") as f, open(q, "rb") as g:
            assert f.read() == g.read()
    with open(paths[0], "rb") as f, open(other[0], "rb") as g:
        assert f.read() != g.read()
    frames = ase.io.read(paths[0], index=":", format="extxyz")
    assert len(frames) == 6 and len(ase.io.read(paths[1], index=":")) == 3
    for atoms in frames:
        assert not atoms.pbc.any()
        assert set(atoms.get_chemical_symbols()) <= set(script.METALS)
        assert np.abs(atoms.get_forces()).max() <= script.MAX_FORCE
        # the labels are EMT's: recompute them
        fresh = atoms.copy()
        fresh.calc = EMT()
        assert abs(fresh.get_potential_energy() - atoms.get_potential_energy()) < 1e-6
        assert np.abs(fresh.get_forces() - atoms.get_forces()).max() < 1e-6
    with gzip.open(paths[1], "rt") as f:
        f.readline()
        assert "Properties=species:S:1:pos:R:3:forces:R:3" in f.readline()


def test_shipped_data():
    sizes = {}
    for name, num in (("train.xyz.gz", 2000), ("test.xyz.gz", 500)):
        path = os.path.join(SHIPPED, name)
        with gzip.open(path, "rt") as f:  # count frames without parsing them all
            assert sum(line.startswith("Properties=") for line in f) == num
        # the first 100 frames (ase's strided read, "::20", parses the whole
        # file in Python: 17 s; the generator draws each frame's template at random)
        frames = ase.io.read(path, index=":100", format="extxyz")
        assert len(frames) == 100
        sizes[name] = os.path.getsize(path)
        n = np.array([len(a) for a in frames])
        assert n.min() >= 13 and n.max() <= 38
        f = np.concatenate([a.get_forces() for a in frames])
        assert np.abs(f).max() <= 15.0 and 0.3 < np.abs(f).mean() < 2.0
        kinds = {a.info["kind"] for a in frames}
        assert len(kinds) == 7  # all templates occur
    assert sum(sizes.values()) < 3e6
