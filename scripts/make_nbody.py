#!/usr/bin/env python
r"""Generates the charged-particle n-body data of the EGNN paper (see
``datasets/nbody/README.md``):

    python scripts/make_nbody.py --out datasets/nbody --seed 0
    python scripts/make_nbody.py --out /tmp/nb --num-train 100 --num-val 20 --num-test 20

Writes ``<out>/nbody_charged5.npz`` (numpy, compressed, float32 arrays
``{train,val,test}_{pos,vel,charges,target}``). One vectorised simulation
(:func:`gdl_pyg.lightning.nbody_data.simulate_charged_particles`) of all
samples; deterministic given ``--seed`` and the split sizes.
"""
import argparse
import os
import os.path as osp
import sys
import time
from typing import List, Optional

import numpy as np

try:
    from gdl_pyg.lightning.nbody_data import NBODY_FILE, make_nbody_splits
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
    from gdl_pyg.lightning.nbody_data import NBODY_FILE, make_nbody_splits


def main(argv: Optional[List[str]] = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="datasets/nbody", help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-train", type=int, default=3000)
    parser.add_argument("--num-val", type=int, default=2000)
    parser.add_argument("--num-test", type=int, default=2000)
    args = parser.parse_args(argv)
    for key in ("num_train", "num_val", "num_test"):
        if getattr(args, key) < 0:
            parser.error(f"--{key.replace('_', '-')} must be >= 0 (got {getattr(args, key)})")
    start = time.time()
    arrays = make_nbody_splits(args.num_train, args.num_val, args.num_test, seed=args.seed)
    os.makedirs(args.out, exist_ok=True)
    path = osp.join(args.out, NBODY_FILE)
    np.savez_compressed(path, **arrays)
    print(f"wrote {path}: {osp.getsize(path) / 1e6:.2f} MB, {args.num_train}/{args.num_val}/"
          f"{args.num_test} samples, {time.time() - start:.1f} s")
    return path


if __name__ == "__main__":
    main()
