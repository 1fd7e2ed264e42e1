#!/usr/bin/env python
r"""Generates the small atomic systems of ``datasets/atoms`` (see
``datasets/atoms/README.md``): metal clusters and finite slab pieces, rattled
at random, labelled with energies and forces from ase's EMT calculator:

    python scripts/make_atoms.py --out datasets/atoms --seed 0
    python scripts/make_atoms.py --out /tmp/atoms --num-train 40 --num-test 10

Writes ``<out>/train.xyz.gz`` and ``<out>/test.xyz.gz``: extended XYZ
(``ase.io.write(..., format="extxyz")``), gzip-compressed with a zero
timestamp so that the files are byte-for-byte reproducible given ``--seed``
and the sizes. Every structure is **non-periodic** (``pbc = F F F``, no
cell): slabs are finite pieces of an fcc(111) surface with open edges, not
periodic slabs.
"""
import argparse
import gzip
import io
import os
import os.path as osp
import time
from typing import Callable, List, Optional, Tuple

import numpy as np

#: The metals of ase's EMT parameter set used here (EMT also has H, C, N, O,
#: which are left out: their EMT parameters are meant for dilute adsorbates).
METALS: Tuple[str, ...] = ("Al", "Ni", "Cu", "Pd", "Ag", "Pt", "Au")
TRAIN_FILE = "train.xyz.gz"
TEST_FILE = "test.xyz.gz"
#: Structures with a larger force component (eV/Angstrom), i.e. two atoms
#: rattled almost on top of each other (about 1 % of the draws), are redrawn.
MAX_FORCE = 15.0


def _templates() -> List[Tuple[str, Callable[[str], "object"]]]:
    from ase.build import fcc111
    from ase.cluster import Decahedron, Icosahedron, Octahedron

    def slab(size):
        def build(sym):
            atoms = fcc111(sym, size=size, vacuum=None, orthogonal=False)
            atoms.set_pbc(False)  # a finite piece: open edges, no periodic images
            atoms.set_cell(np.zeros((3, 3)))
            return atoms
        return build

    return [
        ("icosahedron13", lambda s: Icosahedron(s, noshells=2)),
        ("decahedron13", lambda s: Decahedron(s, p=2, q=2, r=0)),
        ("octahedron19", lambda s: Octahedron(s, length=3)),
        ("octahedron38", lambda s: Octahedron(s, length=4, cutoff=1)),
        ("slab111_18", slab((3, 3, 2))),
        ("slab111_24", slab((4, 3, 2))),
        ("slab111_27", slab((3, 3, 3))),
    ]


def make_structure(rng: np.random.Generator, templates=None):
    r"""One random structure (an ``ase.Atoms`` with a single-point
    calculator holding its EMT energy and forces), redrawn while its largest
    force component exceeds :data:`MAX_FORCE`."""
    while True:
        atoms = _draw(rng, templates)
        if np.abs(atoms.get_forces()).max() <= MAX_FORCE:
            return atoms


def _draw(rng: np.random.Generator, templates=None):
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    templates = _templates() if templates is None else templates
    kind, build = templates[int(rng.integers(len(templates)))]
    host = METALS[int(rng.integers(len(METALS)))]
    atoms = build(host)
    n = len(atoms)
    symbols = [host] * n
    if rng.random() < 0.5:  # an alloy: a random share of the atoms swapped for a second metal
        guest = METALS[int(rng.integers(len(METALS)))]
        share = rng.uniform(0.1, 0.5)
        for i in np.flatnonzero(rng.random(n) < share):
            symbols[i] = guest
    pos = atoms.get_positions() - atoms.get_positions().mean(axis=0)
    pos = pos * rng.uniform(0.96, 1.04)  # isotropic strain
    sigma = rng.uniform(0.05, 0.15)  # the rattling "temperature", Angstrom
    pos = pos + rng.normal(0.0, sigma, size=pos.shape)
    from ase import Atoms
    out = Atoms(symbols=symbols, positions=pos, pbc=False)
    out.calc = EMT()
    energy = float(out.get_potential_energy())
    forces = np.array(out.get_forces())
    out.calc = SinglePointCalculator(out, energy=energy, forces=forces)
    out.info["kind"] = kind
    out.info["sigma"] = round(float(sigma), 4)
    return out


def make_split(num: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    templates = _templates()
    return [make_structure(rng, templates) for _ in range(num)]


def write_gz(path: str, structures: list) -> None:
    r"""Extended XYZ through :func:`ase.io.write`, then gzip with ``mtime=0``."""
    import ase.io
    buf = io.StringIO()
    ase.io.write(buf, structures, format="extxyz")
    tmp = path + ".tmp"
    with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                                                mtime=0, compresslevel=9) as f:
        f.write(buf.getvalue().encode("ascii"))
    os.replace(tmp, path)


def main(argv: Optional[List[str]] = None) -> List[str]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="datasets/atoms", help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-train", type=int, default=2000,
                        help="structures of train.xyz.gz (training + validation)")
    parser.add_argument("--num-test", type=int, default=500)
    args = parser.parse_args(argv)
    for key in ("num_train", "num_test"):
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1 (got {getattr(args, key)})")
    start = time.time()
    os.makedirs(args.out, exist_ok=True)
    paths = []
    # independent random streams per split (seed, seed + 1)
    for offset, (fname, num) in enumerate(((TRAIN_FILE, args.num_train),
                                           (TEST_FILE, args.num_test))):
        path = osp.join(args.out, fname)
        structures = make_split(num, args.seed + offset)
        write_gz(path, structures)
        atoms = sum(len(a) for a in structures)
        print(f"wrote {path}: {num} structures, {atoms} atoms, "
              f"{osp.getsize(path) / 1e6:.2f} MB")
        paths.append(path)
    print(f"done in {time.time() - start:.1f} s")
    return paths


if __name__ == "__main__":
    main()
