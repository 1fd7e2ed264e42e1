import os

import numpy as np
from conftest import load_script

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "make_nbody.py")


def test_make_nbody(tmp_path, capsys):
    script = load_script("make_nbody")
    args = ["--num-train", "6", "--num-val", "2", "--num-test", "3", "--seed", "5"]
    path = script.main(["--out", str(tmp_path / "a")] + args)
    assert os.path.basename(path) == "nbody_charged5.npz"
    assert "wrote" in capsys.readouterr().out
    again = script.main(["--out", str(tmp_path / "b")] + args)
    other = script.main(["--out", str(tmp_path / "c")] + args[:-1] + ["6"])
    with np.load(path) as a, np.load(again) as b, np.load(other) as c:
        assert sorted(a.files) == sorted(f"{s}_{k}" for s in ("train", "val", "test")
                                         for k in ("pos", "vel", "charges", "target"))
        assert a["train_pos"].shape == (6, 5, 3) and a["val_vel"].shape == (2, 5, 3)
        assert a["test_target"].shape == (3, 5, 3) and a["test_charges"].shape == (3, 5)
        for k in a.files:  # deterministic given the seed
            assert np.array_equal(a[k], b[k])
        assert not np.array_equal(a["train_pos"], c["train_pos"])
        # initial speeds are 0.5; after 3,100 steps of Coulomb forces they are not
        assert not np.allclose(np.linalg.norm(a["train_vel"], axis=-1), 0.5)
