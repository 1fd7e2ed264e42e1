r"""The charged-particle n-body experiment of the `"E(n) Equivariant Graph
Neural Networks" <https://arxiv.org/abs/2102.09844>`_ paper (sec. 5.1), after
the simulation of `"Neural Relational Inference for Interacting Systems"
<https://arxiv.org/abs/1802.04687>`_ (Kipf et al. 2018):

* :func:`simulate_charged_particles`: a vectorised simulation of many systems
  of 5 charged particles at once (numpy, float64, deterministic given a seed);
* :func:`make_nbody_splits`: the train / validation / test splits as plain
  arrays (what ``scripts/make_nbody.py`` writes to ``datasets/nbody``);
* :class:`NBodyDataModule`: the splits as fully connected PyG graphs, with the
  test split served twice, as simulated (``"test"``) and moved by a random
  rigid motion per sample (``"rotated"``).

The task: from the positions and velocities of the particles at one time,
predict their positions 1,000 integration steps later.
"""
import os
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data

from gdl_pyg.lightning.data import GraphDataModule, _check_positive_int

__all__ = ["simulate_charged_particles", "make_nbody_splits", "NBodyDataModule",
           "NBODY_CONSTANTS", "NBODY_FILE"]

#: The physical and sampling constants of the paper's generator
#: (``n_body_system/dataset/synthetic_sim.py`` and ``generate_dataset.py`` of
#: vgsatorras/egnn, dataset ``nbody_small``).
NBODY_CONSTANTS = dict(
    num_particles=5,
    box_size=5.0,               # initial positions are reflected into [-5, 5]^3
    loc_std=1.0,                # initial positions ~ N(0, 1)
    vel_norm=0.5,               # initial speed of every particle
    interaction_strength=1.0,   # F_i = k sum_j q_i q_j (x_i - x_j) / |x_i - x_j|^3
    dt=0.001,                   # integration step
    max_force=100.0,            # every force component is clipped to +-0.1 / dt
    sample_freq=100,            # a "frame" every 100 steps
    frame_input=30,             # input: frame 30 = 3,100 steps
    frame_target=40,            # target: frame 40 = 4,100 steps (1,000 steps later)
)

#: The file written by ``scripts/make_nbody.py`` in its output folder.
NBODY_FILE = "nbody_charged5.npz"

SPLITS = ("train", "val", "test")


def _forces(loc: np.ndarray, qq: np.ndarray, strength: float, max_force: float) -> np.ndarray:
    # loc [B, n, 3], qq [B, n, n] charge products (zero diagonal)
    diff = loc[:, :, None, :] - loc[:, None, :, :]          # x_i - x_j, [B, n, n, 3]
    r2 = (diff * diff).sum(-1)
    idx = np.arange(loc.shape[1])
    r2[:, idx, idx] = 1.0                                    # no self force (qq_ii = 0)
    size = strength * qq / r2 ** 1.5
    F = (size[..., None] * diff).sum(axis=2)
    return np.clip(F, -max_force, max_force)


def simulate_charged_particles(num_samples: int, seed: int = 0, num_steps: int = 4100,
                               record_steps: Tuple[int, ...] = (3100, 4100),
                               num_particles: int = 5, **constants) -> Dict[str, np.ndarray]:
    r"""Simulates :obj:`num_samples` independent systems of charged particles.

    Every system has :obj:`num_particles` particles with charges :math:`\pm 1`
    (probability 1/2 each), positions :math:`\sim \mathcal{N}(0, 1)` (reflected
    into the box :math:`[-5, 5]^3`) and velocities of norm 0.5 in random
    directions. Particle :math:`i` feels the force :math:`\mathbf{F}_i =
    \sum_{j \neq i} q_i q_j (\mathbf{x}_i - \mathbf{x}_j) /
    \|\mathbf{x}_i - \mathbf{x}_j\|^3` (like charges repel; every component
    clipped to :math:`\pm 100`), integrated with the leapfrog scheme of the
    paper's generator: a first kick :math:`\mathbf{v} \mathrel{+}= \Delta t
    \mathbf{F}`, then per step :math:`\mathbf{x} \mathrel{+}= \Delta t
    \mathbf{v}`, record, :math:`\mathbf{v} \mathrel{+}= \Delta t
    \mathbf{F}(\mathbf{x})`, with :math:`\Delta t = 0.001` (unit masses; the
    walls are not applied during the integration, as in the paper's code).

    All systems advance together (numpy, float64); the result is a
    deterministic function of the arguments.

    Args:
        num_samples (int): the number of systems.
        seed (int, optional): seeds :func:`numpy.random.default_rng`.
        num_steps (int, optional): integration steps. (default: :obj:`4100`)
        record_steps (tuple of int, optional): the steps after which positions
            and velocities are recorded. (default: :obj:`(3100, 4100)`, frames
            30 and 40 of the paper's ``nbody_small`` data)
        num_particles (int, optional): (default: :obj:`5`)
        **constants: overrides of :obj:`NBODY_CONSTANTS` (``box_size``,
            ``loc_std``, ``vel_norm``, ``interaction_strength``, ``dt``,
            ``max_force``).

    Returns:
        dict: ``loc`` and ``vel`` ``[len(record_steps), num_samples, n, 3]``,
        ``charges`` ``[num_samples, n]``.
    """
    c = dict(NBODY_CONSTANTS)
    unknown = set(constants) - set(c)
    if unknown:
        raise ValueError(f"'simulate_charged_particles' got unknown constants {sorted(unknown)}; "
                         f"expected some of {sorted(c)}")
    c.update(constants)
    if any(not 1 <= s <= num_steps for s in record_steps):
        raise ValueError(f"'simulate_charged_particles' expected record_steps in "
                         f"[1, {num_steps}] (got {list(record_steps)})")
    rng = np.random.default_rng(seed)
    B, n = num_samples, num_particles
    charges = rng.choice(np.array([-1.0, 1.0]), size=(B, n))
    qq = charges[:, :, None] * charges[:, None, :]
    qq[:, np.arange(n), np.arange(n)] = 0.0
    loc = rng.standard_normal((B, n, 3)) * c["loc_std"]
    vel = rng.standard_normal((B, n, 3))
    vel = vel * c["vel_norm"] / np.linalg.norm(vel, axis=-1, keepdims=True)
    # reflect initial positions into the box (elastic walls, as the generator)
    box = c["box_size"]
    over, under = loc > box, loc < -box
    loc = np.where(over, 2 * box - loc, np.where(under, -2 * box - loc, loc))
    vel = np.where(over, -np.abs(vel), np.where(under, np.abs(vel), vel))
    dt, k, fmax = c["dt"], c["interaction_strength"], c["max_force"]
    rec = {s: i for i, s in enumerate(record_steps)}
    out_loc = np.zeros((len(record_steps), B, n, 3))
    out_vel = np.zeros((len(record_steps), B, n, 3))
    vel = vel + dt * _forces(loc, qq, k, fmax)
    for step in range(1, num_steps + 1):
        loc = loc + dt * vel
        if step in rec:
            out_loc[rec[step]], out_vel[rec[step]] = loc, vel
        vel = vel + dt * _forces(loc, qq, k, fmax)
    return {"loc": out_loc, "vel": out_vel, "charges": charges}


def make_nbody_splits(num_train: int = 3000, num_val: int = 2000, num_test: int = 2000,
                      seed: int = 0) -> Dict[str, np.ndarray]:
    r"""The n-body splits as float32 arrays: ``<split>_pos``, ``<split>_vel``
    (inputs, step 3,100), ``<split>_charges`` and ``<split>_target`` (positions
    at step 4,100) for ``split`` in ``train``, ``val``, ``test``. One
    simulation of all samples (seeded by :obj:`seed`), split in this order."""
    sizes = (num_train, num_val, num_test)
    sim = simulate_charged_particles(sum(sizes), seed=seed)
    out, start = {}, 0
    for split, size in zip(SPLITS, sizes):
        sl = slice(start, start + size)
        out[f"{split}_pos"] = sim["loc"][0, sl].astype(np.float32)
        out[f"{split}_vel"] = sim["vel"][0, sl].astype(np.float32)
        out[f"{split}_charges"] = sim["charges"][sl].astype(np.float32)
        out[f"{split}_target"] = sim["loc"][1, sl].astype(np.float32)
        start += size
    return out


def _default_root() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.join(here, "..", "..", "datasets", "nbody")
    return os.path.normpath(repo) if os.path.isdir(repo) else os.path.join("datasets", "nbody")


class NBodyDataModule(GraphDataModule):
    r"""The charged-particle n-body data of the `"E(n) Equivariant Graph
    Neural Networks" <https://arxiv.org/abs/2102.09844>`_ paper: 5 particles
    with charges :math:`\pm 1`, their positions and velocities at one time,
    and as target their positions 1,000 integration steps later (see
    :func:`simulate_charged_particles` and ``datasets/nbody/README.md``).

    Every sample is a fully connected graph of 5 nodes (20 directed edges,
    no self-loops) with

    * ``pos [5, 3]``, ``vel [5, 3]``: positions and velocities (a point and
      a vector field under E(3));
    * ``x [5, 1]``: the speeds :math:`\|\mathbf{v}_i\|` (the paper's
      invariant node features), ``charge [5, 1]``;
    * ``edge_index [2, 20]``, ``edge_attr [20, 1]``: the charge products
      :math:`q_i q_j`;
    * ``y [5, 3]``: the target positions.

    Models read ``pos``, ``vel``, ``x``, ``edge_index`` and ``edge_attr``.
    The test split is served twice: as simulated (test loader ``"test"``)
    and moved by a random rigid motion :math:`(Q, \mathbf{t})` per sample,
    :math:`Q \in O(3)` Haar-random with reflections half of the time and
    :math:`\mathbf{t} \sim \mathcal{N}(0, \text{translation\_scale}^2 I)`,
    applied to ``pos``, ``vel`` *and* ``y`` (loader ``"rotated"``). The
    physics is E(3)-equivariant, so an equivariant model scores the same on
    both; a plain GNN on raw coordinates does not.

    The data are read from ``<root>/nbody_charged5.npz`` (written by
    ``scripts/make_nbody.py``); if the file is missing, :meth:`prepare_data`
    simulates it (about a minute) and writes it.

    Args:
        root (str, optional): the folder of the data file. (default:
            :obj:`None`, the repository's ``datasets/nbody``)
        num_train (int, optional): training samples, the first ones of the
            training split (at most 3,000). (default: :obj:`3000`)
        batch_size (int, optional): graphs per mini-batch. (default: :obj:`100`)
        translation_scale (float, optional): the standard deviation of the
            translations of the rotated test set. (default: :obj:`1.0`)
        seed (int, optional): seeds the rigid motions of the rotated test set.
            (default: :obj:`0`)
        num_workers (int, optional): dataloader worker processes.
            (default: :obj:`0`)
    """

    #: Particles per system.
    num_particles = 5
    #: Node feature width (the speed).
    num_features = 1
    #: Edge attribute width (the charge product).
    edge_dim = 1

    def __init__(self, root: Optional[str] = None, num_train: int = 3000, batch_size: int = 100,
                 translation_scale: float = 1.0, seed: int = 0, num_workers: int = 0):
        super().__init__(batch_size=batch_size, num_workers=num_workers)
        name = type(self).__name__
        _check_positive_int(name, "num_train", num_train)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"'{name}' expected an integer seed (got {type(seed).__name__})")
        if not isinstance(translation_scale, (int, float)) or translation_scale < 0:
            raise ValueError(f"'{name}' expected a non-negative 'translation_scale' "
                             f"(got {translation_scale!r})")
        self.root = root
        self.num_train = num_train
        self.translation_scale = float(translation_scale)
        self.seed = seed
        self.save_hyperparameters()

    @property
    def path(self) -> str:
        r"""The data file."""
        return os.path.join(self.root if self.root is not None else _default_root(), NBODY_FILE)

    def prepare_data(self) -> None:
        if not os.path.exists(self.path):
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            np.savez_compressed(self.path, **make_nbody_splits())

    def load(self) -> Dict[str, np.ndarray]:
        r"""The arrays of the data file."""
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"'{type(self).__name__}' found no data file at "
                                    f"'{self.path}'; run 'python scripts/make_nbody.py --out "
                                    f"{os.path.dirname(self.path)}' (or call prepare_data)")
        with np.load(self.path) as f:
            return {k: f[k] for k in f.files}

    @staticmethod
    def edge_index(n: int = 5) -> Tensor:
        r"""The fully connected graph on :obj:`n` nodes without self-loops
        ``[2, n (n - 1)]`` (sender in row 0)."""
        i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
        mask = i != j
        return torch.stack([j[mask], i[mask]], dim=0)

    @classmethod
    def to_graphs(cls, pos: Tensor, vel: Tensor, charges: Tensor, target: Tensor) -> List[Data]:
        r"""One ``Data`` per sample from ``pos``, ``vel``, ``target``
        ``[B, n, 3]`` and ``charges [B, n]``."""
        if pos.size(0) == 0:
            return []
        n = pos.size(1)
        ei = cls.edge_index(n)
        q = charges.unsqueeze(-1)                                # [B, n, 1]
        edge_attr = q[:, ei[0]] * q[:, ei[1]]                    # [B, E, 1]
        speed = torch.linalg.vector_norm(vel, dim=-1, keepdim=True)
        return [Data(x=speed[b], pos=pos[b], vel=vel[b], charge=q[b], edge_index=ei,
                     edge_attr=edge_attr[b], y=target[b]) for b in range(pos.size(0))]

    def rigid_motions(self, num: int) -> Tuple[Tensor, Tensor]:
        r"""``Q [num, 3, 3]`` (in O(3)) and ``t [num, 3]`` of the rotated test
        set, from a generator seeded by :attr:`seed`."""
        from gdl_pyg.groups import E3
        gen = torch.Generator().manual_seed(self.seed)
        group = E3(translation_scale=self.translation_scale)
        if num == 0:
            return torch.zeros(0, 3, 3, dtype=torch.float64), torch.zeros(0, 3,
                                                                          dtype=torch.float64)
        Q, t = zip(*[group.sample(generator=gen) for _ in range(num)])
        return torch.stack(Q), torch.stack(t)

    def _split(self, arrays: Dict[str, np.ndarray], split: str, limit: Optional[int] = None):
        keys = ("pos", "vel", "charges", "target")
        out = [torch.from_numpy(arrays[f"{split}_{k}"]) for k in keys]
        if limit is not None:
            if limit > out[0].size(0):
                raise ValueError(f"'{type(self).__name__}' expected num_train <= "
                                 f"{out[0].size(0)}, the training samples in '{self.path}' "
                                 f"(got {limit})")
            out = [o[:limit] for o in out]
        return out

    def setup(self, stage: Optional[str] = None) -> None:
        arrays = None
        if stage in (None, "fit", "validate") and self.train_dataset is None:
            arrays = self.load()
            self.train_dataset = self.to_graphs(*self._split(arrays, "train", self.num_train))
            self.val_dataset = self.to_graphs(*self._split(arrays, "val"))
        if stage in (None, "test", "predict") and not self.test_datasets:
            arrays = arrays if arrays is not None else self.load()
            pos, vel, charges, target = self._split(arrays, "test")
            Q, t = self.rigid_motions(pos.size(0))
            Q, t = Q.to(pos.dtype), t.to(pos.dtype).unsqueeze(1)
            moved = (pos @ Q.transpose(1, 2) + t, vel @ Q.transpose(1, 2), charges,
                     target @ Q.transpose(1, 2) + t)
            self.test_datasets = {"test": self.to_graphs(pos, vel, charges, target),
                                  "rotated": self.to_graphs(*moved)}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(num_train={self.num_train}, "
                f"batch_size={self.batch_size}, seed={self.seed})")
