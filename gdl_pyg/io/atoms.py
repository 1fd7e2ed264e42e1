r"""Reading and writing atomic structures (extended XYZ) as
:class:`~torch_geometric.data.Data`, through :mod:`ase.io` (no hand-written
XYZ parser).

An atomic ``Data`` holds

* ``z [N]`` (``long``): atomic numbers;
* ``pos [N, 3]``: positions in Angstrom;
* ``energy [1]``: the total energy in eV, where the file has one;
* ``forces [N, 3]``: forces in eV/Angstrom, where the file has them;
* ``cell [1, 3, 3]`` (rows are the lattice vectors) and ``pbc [1, 3]``
  (``bool``), only for structures with a cell or periodic boundaries (the
  leading 1 makes a batch stack them as ``[B, 3, 3]`` and ``[B, 3]``).

Files ending in ``.gz``, ``.bz2`` or ``.xz`` are (de)compressed by ase.
"""
import os
from typing import List, Sequence, Union

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data

from gdl_pyg.io._utils import (
    PathLike,
    atomic_path,
    check_final_newline,
    check_readable,
    float_tensor,
    to_numpy,
)

__all__ = ["read_xyz", "write_xyz", "atoms_to_data", "data_to_atoms"]


def _require_ase(what: str):
    try:
        import ase  # noqa: F401
    except ImportError as exc:  # pragma: no cover - ase is a dependency
        raise ImportError(f"'{what}' requires 'ase' (pip install ase)") from exc


def atoms_to_data(atoms, dtype: torch.dtype = torch.float32) -> Data:
    r"""Converts one :class:`ase.Atoms` to a ``Data`` (see the module
    docstring); the energy and forces are taken from its calculator's results
    (what :func:`ase.io.read` attaches to an extended XYZ frame) or from
    ``atoms.info["energy"]`` / ``atoms.arrays["forces"]``."""
    where = "'atoms_to_data'"
    results = dict(atoms.calc.results) if atoms.calc is not None else {}
    # float values are checked after the cast to dtype (1e39 overflows float32)
    data = Data(z=torch.as_tensor(np.asarray(atoms.numbers), dtype=torch.long),
                pos=float_tensor(np.asarray(atoms.positions, dtype=np.float64), dtype, where,
                                 "position"))
    energy = results.get("energy", atoms.info.get("energy"))
    if energy is not None:
        if not np.isfinite(float(energy)):  # a training target must not be NaN/inf
            raise ValueError(f"{where}: the energy is {float(energy)}; expected a finite "
                             f"number (drop the frame or its 'energy' entry)")
        data.energy = float_tensor(np.array([float(energy)]), dtype, where, "energy")
    forces = results.get("forces", atoms.arrays.get("forces"))
    if forces is not None:
        if not np.isfinite(np.asarray(forces, dtype=np.float64)).all():
            raise ValueError(f"{where}: the forces contain NaN or inf; expected finite "
                             f"numbers (drop the frame or its 'forces' column)")
        data.forces = float_tensor(np.asarray(forces, dtype=np.float64), dtype, where,
                                   "force").reshape(-1, 3)
    cell = np.asarray(atoms.cell.array)
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if pbc.any() or np.abs(cell).max(initial=0.0) > 0:
        data.cell = float_tensor(np.asarray(cell, dtype=np.float64), dtype, where,
                                 "cell").reshape(1, 3, 3)
        data.pbc = torch.as_tensor(pbc).reshape(1, 3)
    return data


def data_to_atoms(data: Data):
    r"""Converts a ``Data`` with ``z`` and ``pos`` (and optionally
    ``energy``, ``forces``, ``cell``, ``pbc``) to an :class:`ase.Atoms` whose
    single-point calculator holds the energy and forces."""
    _require_ase("data_to_atoms")
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    if not isinstance(data, Data):
        raise TypeError(f"Expected a torch_geometric 'Data' (got {type(data).__name__})")
    for key in ("z", "pos"):
        if not isinstance(data.get(key), Tensor):
            raise ValueError(f"Expected a 'Data' with '{key}' (got attributes "
                             f"{sorted(data.keys())})")
    z = to_numpy(data.z, "z").reshape(-1)
    pos = to_numpy(data.pos, "pos", dtype=np.float64)
    if pos.ndim != 2 or pos.shape != (z.shape[0], 3):
        raise ValueError(f"Expected 'pos' of shape [num_atoms, 3] = [{z.shape[0]}, 3] "
                         f"(got {list(pos.shape)})")
    kwargs = {}
    if data.get("cell") is not None:
        kwargs["cell"] = to_numpy(data.cell, "cell", dtype=np.float64).reshape(3, 3)
    if data.get("pbc") is not None:
        kwargs["pbc"] = to_numpy(data.pbc, "pbc").reshape(3).astype(bool)
    atoms = Atoms(numbers=z.astype(np.int64), positions=pos, **kwargs)
    results = {}
    if data.get("energy") is not None:
        energy = to_numpy(data.energy, "energy", dtype=np.float64).reshape(-1)
        if energy.shape != (1,):
            raise ValueError(f"Expected one 'energy' per structure (got shape "
                             f"{list(energy.shape)})")
        results["energy"] = float(energy[0])
    if data.get("forces") is not None:
        forces = to_numpy(data.forces, "forces", dtype=np.float64)
        if forces.shape != pos.shape:
            raise ValueError(f"Expected 'forces' of the shape of 'pos', {list(pos.shape)} "
                             f"(got {list(forces.shape)})")
        results["forces"] = forces
    if results:
        atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


_OPENERS = {".gz": "gzip", ".bz2": "bz2", ".xz": "lzma"}


def _check_atom_counts(path: str) -> None:
    r"""Walks the frames of an (extended) XYZ file by their atom-count lines
    and raises :class:`ValueError` when a frame declares more atoms than lines
    follow. ase (3.29) reads a frame by calling ``readline`` once per declared
    atom, so a count of ``2e9`` in a small file would build a list of two
    billion empty strings before failing; this walk stops at the end of the
    file instead. A count line that is not an integer is left to ase."""
    import importlib
    ext = os.path.splitext(path)[1].lower()
    if ext in _OPENERS:
        opener = importlib.import_module(_OPENERS[ext]).open
    else:
        check_final_newline(path, "xyz")  # a cut inside the last number still parses
        opener = open
    with opener(path, "rb") as f:
        frame = 0
        while True:
            line = f.readline()
            if not line:
                return
            tokens = line.split()
            if not tokens:
                continue
            try:
                natoms = int(tokens[0])
            except ValueError:
                return
            if natoms < 0:
                raise ValueError(f"Cannot read '{path}' as extended XYZ: frame {frame} "
                                 f"declares a negative number of atoms ({natoms})")
            got = 0
            while got < natoms + 1 and f.readline():
                got += 1
            if got < natoms + 1:
                raise ValueError(f"Cannot read '{path}' as extended XYZ: frame {frame} "
                                 f"declares {natoms} atoms but only {max(got - 1, 0)} atom "
                                 f"line(s) follow (truncated file or wrong atom count)")
            frame += 1


def read_xyz(path: PathLike, index: Union[int, str, slice] = ":",
             dtype: torch.dtype = torch.float32) -> List[Data]:
    r"""Reads the structures of an extended XYZ file (optionally ``.gz`` /
    ``.bz2`` / ``.xz`` compressed) with :func:`ase.io.read`.

    Args:
        path (str): the file.
        index (int, str or slice, optional): which frames, in ase's syntax
            (``":"`` all, ``"-1"`` the last, ``"10:20"``, an ``int`` or a
            ``slice``). (default: :obj:`":"`)
        dtype (torch.dtype, optional): the dtype of ``pos``, ``energy``,
            ``forces`` and ``cell``. (default: :obj:`torch.float32`)

    Returns:
        a list of ``Data`` (one per frame, even for an integer :obj:`index`).

    Raises:
        FileNotFoundError: a missing file.
        ValueError: an empty file, or content ase cannot read as extended XYZ
            (the message names the file and ase's error).
    """
    _require_ase("read_xyz")
    import ase.io

    path = check_readable(path)
    try:
        _check_atom_counts(path)
    except (OSError, EOFError) as exc:  # a corrupt compressed stream
        raise ValueError(f"Cannot read '{path}' as extended XYZ: {type(exc).__name__}: "
                         f"{exc}") from exc
    try:
        frames = ase.io.read(path, index=index, format="extxyz")
    except Exception as exc:  # ase raises many types (XYZError, ValueError, IndexError, ...)
        raise ValueError(f"Cannot read '{path}' as extended XYZ: {type(exc).__name__}: "
                         f"{exc}") from exc
    if not isinstance(frames, list):
        frames = [frames]
    out = []
    for k, atoms in enumerate(frames):
        try:
            out.append(atoms_to_data(atoms, dtype=dtype))
        except ValueError as exc:
            raise ValueError(f"'{path}' frame {k}: {exc}".replace("'atoms_to_data': ", "")
                             ) from exc
    return out


def write_xyz(path: PathLike, data_list: Union[Data, Sequence[Data]]) -> None:
    r"""Writes structures to an extended XYZ file with :func:`ase.io.write`
    (compressed by the extension ``.gz`` / ``.bz2`` / ``.xz``); the file is
    replaced atomically.

    Args:
        path (str): the file.
        data_list (Data or list of Data): structures with ``z`` and ``pos``,
            and optionally ``energy [1]``, ``forces [N, 3]``, ``cell`` and
            ``pbc``.
    """
    _require_ase("write_xyz")
    import ase.io

    if isinstance(data_list, Data):
        data_list = [data_list]
    if not isinstance(data_list, (list, tuple)) or len(data_list) == 0:
        raise ValueError(f"'write_xyz' expected a non-empty list of 'Data' (got "
                         f"{type(data_list).__name__} of length "
                         f"{len(data_list) if hasattr(data_list, '__len__') else '?'})")
    frames = [data_to_atoms(d) for d in data_list]
    with atomic_path(os.fspath(path)) as tmp:
        ase.io.write(tmp, frames, format="extxyz")
