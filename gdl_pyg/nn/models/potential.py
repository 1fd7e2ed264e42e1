r"""Machine-learned interatomic potentials: an energy per structure from an
invariant network of the atoms, and forces as its negative gradient.

:class:`InteratomicPotential` reads a ``Data`` / ``Batch`` of atomic
structures as written by :func:`gdl_pyg.io.read_xyz` (``z [N]`` atomic
numbers, ``pos [N, 3]`` in Angstrom, ``batch``) and returns the energy of
every structure (eV) and the forces on every atom (eV/Angstrom).
"""
from typing import Dict, List, Literal, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.utils import scatter

from gdl_pyg.nn.conv.egnn_conv import EGNNConv
from gdl_pyg.ops import radius_graph

__all__ = ["InteratomicPotential", "BACKBONES"]

#: The backbones of :class:`InteratomicPotential`: two E(3)-invariant ones and
#: a baseline that is not rotation invariant.
BACKBONES = ("egnn", "tfn", "gnn_xyz")


def _check_int(cls: str, name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"'{cls}' expected '{name}' to be an integer >= {minimum} "
                         f"(got {value!r})")


def _shape(value) -> str:
    return str(list(value.shape)) if isinstance(value, Tensor) else type(value).__name__


class _GaussianBasis(torch.nn.Module):
    r"""Gaussians :math:`\exp(-(d - \mu_k)^2 / 2\sigma^2)` on :math:`K` centres
    in :math:`[0, r_c]`, times the smooth cutoff :math:`\tfrac12(\cos(\pi d /
    r_c) + 1)` (zero with its derivative at :math:`d = r_c`)."""

    def __init__(self, cutoff: float, num_basis: int):
        super().__init__()
        self.cutoff = float(cutoff)
        self.register_buffer("centers", torch.linspace(0.0, cutoff, num_basis),
                             persistent=False)
        self.width = cutoff / max(num_basis - 1, 1)

    def forward(self, dist: Tensor) -> Tensor:  # [E] -> [E, K]
        d = dist.unsqueeze(-1)
        rbf = torch.exp(-0.5 * ((d - self.centers.to(d.dtype)) / self.width) ** 2)
        envelope = 0.5 * (torch.cos(torch.pi * d.clamp(max=self.cutoff) / self.cutoff) + 1.0)
        return rbf * envelope


class InteratomicPotential(torch.nn.Module):
    r"""A machine-learned interatomic potential: per-atom energies from a
    graph network of the atoms within :obj:`cutoff` of each other, summed per
    structure, and forces by automatic differentiation, as in the `"SchNet"
    <https://arxiv.org/abs/1706.08566>`_ and `"E(3)-Equivariant Graph Neural
    Networks for Data-Efficient and Accurate Interatomic Potentials"
    <https://arxiv.org/abs/2101.03164>`_ (NequIP) papers,

    .. math::
        E = \sum_{i} \left( s\, \varepsilon_\theta(i) + e_{z_i} \right),
        \qquad \mathbf{F}_i = -\frac{\partial E}{\partial \mathbf{p}_i},

    where :math:`\varepsilon_\theta(i)` is the network's scalar for atom
    :math:`i`, :math:`e_z` a reference energy per species and :math:`s` a
    scale (both fitted on the training set by :meth:`fit_statistics`, or
    :math:`e_z` learned). Backbones:

    * ``"egnn"``: an embedding of the species, then :obj:`num_layers`
      :class:`~gdl_pyg.nn.conv.EGNNConv` layers without coordinate update
      (``update_coords=False``; the invariant features only), with Gaussian
      radial features of the distances as edge attributes, then an MLP per
      atom. :math:`E` is invariant and :math:`\mathbf{F}` equivariant under
      rotations, reflections, translations and permutations of the atoms.
    * ``"tfn"``: :class:`~gdl_pyg.nn.models.TensorFieldNetwork` (gated tensor
      field convolutions on e3nn irreps :obj:`hidden_irreps`) on the one-hot
      species; same symmetry.
    * ``"gnn_xyz"``: the ``"egnn"`` network whose edge attributes also hold the
      raw relative vectors :math:`\mathbf{p}_j - \mathbf{p}_i` (a plain GNN
      that reads coordinates): translation and permutation invariant, but
      *not* rotation invariant. A baseline.

    The graph is built in :meth:`forward` with :func:`gdl_pyg.ops.radius_graph`
    (the data's ``edge_index`` is used instead when it has one). The EGNN
    messages are not forced to vanish at the cutoff, so with ``"egnn"`` the
    energy jumps slightly when an atom crosses it (the radial features, the
    TFN's messages, do vanish there).

    Args:
        backbone (str, optional): ``"egnn"``, ``"tfn"`` or ``"gnn_xyz"``.
            (default: :obj:`"egnn"`)
        species (list of int, optional): the atomic numbers the model knows;
            any other raises a :class:`ValueError`. (default: :obj:`None`)
        num_species (int, optional): instead of :obj:`species`, know the
            atomic numbers :math:`1, \dots, \text{num\_species}`.
            (default: :obj:`None`)
        cutoff (float, optional): the radius of the neighbourhoods, Angstrom.
            (default: :obj:`5.0`)
        max_num_neighbors (int, optional): see
            :func:`~gdl_pyg.ops.radius_graph`. (default: :obj:`64`)
        hidden_channels (int, optional): width of the features (``"egnn"``,
            ``"gnn_xyz"``) and of the radial MLPs (``"tfn"``). (default: :obj:`64`)
        num_layers (int, optional): message-passing layers. (default: :obj:`3`)
        num_radial_basis (int, optional): Gaussian (``"egnn"``) or Bessel
            (``"tfn"``) radial functions. (default: :obj:`16`)
        hidden_irreps (str, optional): hidden irreps of ``"tfn"``.
            (default: :obj:`"16x0e + 8x1o + 4x2e"`)
        reference_energies (str, optional): ``"fitted"`` (a buffer set by
            :meth:`fit_statistics`), ``"learned"`` (a parameter, initialised
            by :meth:`fit_statistics` when called) or ``"none"``.
            (default: :obj:`"fitted"`)
        act (str, optional): the nonlinearity (``"egnn"``, ``"gnn_xyz"``).
            (default: :obj:`"silu"`)

    Shapes:
        - **input:** a ``Data`` / ``Batch`` with ``z`` :math:`(|\mathcal{V}|)`,
          ``pos`` :math:`(|\mathcal{V}|, 3)`, ``batch`` *(optional)*,
          ``edge_index`` :math:`(2, |\mathcal{E}|)` *(optional)*
        - **output:** ``energy`` :math:`(|\mathcal{G}|)` and ``forces``
          :math:`(|\mathcal{V}|, 3)` (:obj:`None` with ``compute_forces=False``)
    """
    #: The symmetry of the equivariant backbones (not of ``"gnn_xyz"``).
    group_name = "E(3)"

    def __init__(
        self,
        backbone: Literal["egnn", "tfn", "gnn_xyz"] = "egnn",
        species: Optional[List[int]] = None,
        num_species: Optional[int] = None,
        cutoff: float = 5.0,
        max_num_neighbors: int = 64,
        hidden_channels: int = 64,
        num_layers: int = 3,
        num_radial_basis: int = 16,
        hidden_irreps: str = "16x0e + 8x1o + 4x2e",
        reference_energies: Literal["fitted", "learned", "none"] = "fitted",
        act: str = "silu",
    ):
        super().__init__()
        name = type(self).__name__
        if backbone not in BACKBONES:
            raise ValueError(f"'{name}' expected 'backbone' in {BACKBONES} (got {backbone!r})")
        if reference_energies not in ("fitted", "learned", "none"):
            raise ValueError(f"'{name}' expected 'reference_energies' in ('fitted', "
                             f"'learned', 'none') (got {reference_energies!r})")
        if (species is None) == (num_species is None):
            raise ValueError(f"'{name}' expected exactly one of 'species' (a list of atomic "
                             f"numbers) and 'num_species' (got species={species!r}, "
                             f"num_species={num_species!r})")
        if species is None:
            _check_int(name, "num_species", num_species)
            species = list(range(1, num_species + 1))
        species = [int(s) for s in species]
        if len(species) == 0 or min(species) < 1 or len(set(species)) != len(species):
            raise ValueError(f"'{name}' expected distinct atomic numbers >= 1 in 'species' "
                             f"(got {species!r})")
        if not (isinstance(cutoff, (int, float)) and 0 < cutoff < float("inf")):
            raise ValueError(f"'{name}' expected a finite 'cutoff' > 0 (got {cutoff!r})")
        for key, value in (("max_num_neighbors", max_num_neighbors),
                           ("hidden_channels", hidden_channels), ("num_layers", num_layers),
                           ("num_radial_basis", num_radial_basis)):
            _check_int(name, key, value)
        self.backbone = backbone
        self.species = species
        self.num_species = len(species)
        self.cutoff = float(cutoff)
        self.max_num_neighbors = max_num_neighbors
        self.hidden_channels = hidden_channels
        self.num_layers = num_layers
        self.reference = reference_energies
        lookup = torch.full((max(species) + 1,), -1, dtype=torch.long)
        lookup[torch.tensor(species)] = torch.arange(len(species))
        self.register_buffer("species_index", lookup, persistent=False)
        S, H = self.num_species, hidden_channels
        if backbone == "tfn":
            from gdl_pyg.nn.models.tensor_field_network import TensorFieldNetwork
            self.net = TensorFieldNetwork(S, hidden_irreps=hidden_irreps, out_channels=1,
                                          num_layers=num_layers, max_radius=self.cutoff,
                                          num_radial_basis=num_radial_basis,
                                          radial_hidden=H, level="node")
            self.embedding = self.rbf = self.convs = self.readout = None
        else:
            from torch_geometric.nn.resolver import activation_resolver
            edge_dim = num_radial_basis + (3 if backbone == "gnn_xyz" else 0)
            self.net = None
            self.embedding = torch.nn.Embedding(S, H)
            self.rbf = _GaussianBasis(self.cutoff, num_radial_basis)
            self.convs = torch.nn.ModuleList([
                EGNNConv(H, H, H, edge_dim=edge_dim, act=act, update_coords=False)
                for _ in range(num_layers)])
            self.readout = torch.nn.Sequential(torch.nn.Linear(H, H), activation_resolver(act),
                                               torch.nn.Linear(H, 1))
        self.register_buffer("scale", torch.ones(()))
        if reference_energies == "learned":
            self.atom_ref = torch.nn.Parameter(torch.zeros(S))
        else:
            self.register_buffer("atom_ref", torch.zeros(S))
        self.reset_parameters()

    def reset_parameters(self):
        r"""Resets the learnable parameters (not the fitted statistics)."""
        if self.net is not None:
            self.net.reset_parameters()
        else:
            self.embedding.reset_parameters()
            for conv in self.convs:
                conv.reset_parameters()
            for module in self.readout.modules():
                if isinstance(module, torch.nn.Linear):
                    module.reset_parameters()
        if isinstance(self.atom_ref, torch.nn.Parameter):
            with torch.no_grad():
                self.atom_ref.zero_()

    # --------------------------------------------------------------- inputs
    def species_of(self, z: Tensor) -> Tensor:
        r"""The species index ``[N]`` of atomic numbers ``z [N]``; raises a
        :class:`ValueError` for atomic numbers the model does not know."""
        name = type(self).__name__
        if not isinstance(z, Tensor) or z.dim() != 1 or z.is_floating_point():
            raise ValueError(f"'{name}' expected integer atomic numbers 'z' of shape "
                             f"[num_atoms] (got {_shape(z)}"
                             f"{', ' + str(z.dtype) if isinstance(z, Tensor) else ''})")
        lookup = self.species_index
        z = z.long()
        inside = (z >= 0) & (z < lookup.numel())
        idx = lookup[z.clamp(0, lookup.numel() - 1)]
        bad = ~inside | (idx < 0)
        if bool(bad.any()):
            unknown = sorted(set(z[bad].tolist()))
            raise ValueError(f"'{name}' got atomic numbers {unknown} it was not built for "
                             f"(species={self.species}); add them to 'species'")
        return idx

    def _check(self, data: Data) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        name = type(self).__name__
        if not isinstance(data, Data):
            raise TypeError(f"'{name}' expected a torch_geometric 'Data' or 'Batch' (got "
                            f"{type(data).__name__})")
        z, pos = data.get("z"), data.get("pos")
        if not isinstance(pos, Tensor) or pos.dim() != 2 or pos.size(-1) != 3 \
                or not pos.is_floating_point():
            raise ValueError(f"'{name}' expected floating-point positions 'pos' of shape "
                             f"[num_atoms, 3] (got {_shape(pos)})")
        if pos.size(0) == 0:
            raise ValueError(f"'{name}' got an empty structure (0 atoms)")
        if not isinstance(z, Tensor) or z.shape != pos.shape[:1]:
            raise ValueError(f"'{name}' expected atomic numbers 'z' of shape [num_atoms] = "
                             f"[{pos.size(0)}] like 'pos' (got {_shape(z)})")
        if not bool(torch.isfinite(pos).all()):
            bad = int((~torch.isfinite(pos)).any(dim=-1).sum())
            raise ValueError(f"'{name}' got {bad} atom(s) with NaN or infinite coordinates")
        batch = data.get("batch")
        if batch is not None and batch.shape != z.shape:
            raise ValueError(f"'{name}' expected 'batch' of shape [{z.numel()}] "
                             f"(got {_shape(batch)})")
        return z, pos, batch

    def _edges(self, data: Data, pos: Tensor, batch: Optional[Tensor]) -> Tensor:
        edge_index = data.get("edge_index")
        if edge_index is not None:
            return edge_index
        return radius_graph(pos.detach(), r=self.cutoff, batch=batch, loop=False,
                            max_num_neighbors=self.max_num_neighbors)

    # -------------------------------------------------------------- forward
    def atomic_energies(self, data: Data, pos: Optional[Tensor] = None) -> Tensor:
        r"""The energy of every atom ``[N]`` (eV), with reference energies.
        :obj:`pos` overrides ``data.pos`` (to differentiate with respect to it)."""
        z, data_pos, batch = self._check(data)
        pos = data_pos if pos is None else pos
        s = self.species_of(z)
        edge_index = self._edges(data, pos, batch)
        src, dst = edge_index[0], edge_index[1]
        vec = pos.index_select(0, src) - pos.index_select(0, dst)  # p_j - p_i, [E, 3]
        if self.net is not None:
            x = torch.nn.functional.one_hot(s, self.num_species).to(pos.dtype)
            graph = Data(x=x, pos=pos, edge_index=edge_index, num_nodes=z.numel())
            out = self.net(graph).squeeze(-1)
        else:
            dist = torch.linalg.vector_norm(vec, dim=-1)
            edge_attr = self.rbf(dist)
            if self.backbone == "gnn_xyz":
                edge_attr = torch.cat([edge_attr, vec], dim=-1)
            h = self.embedding(s).to(pos.dtype)
            for conv in self.convs:
                h, _ = conv(h, pos, edge_index, edge_attr)
            out = self.readout(h).squeeze(-1)
        return out * self.scale.to(out.dtype) + self.atom_ref.to(out.dtype)[s]

    def forward(self, data: Data, compute_forces: bool = True
                ) -> Tuple[Tensor, Optional[Tensor]]:
        r"""Returns ``(energy [num_graphs], forces [num_atoms, 3])``. The
        forces are :math:`-\partial E / \partial \mathbf{p}` by autograd, also
        under :func:`torch.no_grad` (gradients are enabled locally); in
        training mode their graph is kept (``create_graph=True``) so that a
        loss on them trains the model."""
        z, pos, batch = self._check(data)
        num_graphs = int(data.num_graphs) if batch is not None and hasattr(
            data, "num_graphs") else (int(batch.max()) + 1 if batch is not None else 1)
        if not compute_forces:
            e = self.atomic_energies(data)
            return self._sum(e, batch, num_graphs), None
        with torch.enable_grad():
            if not pos.requires_grad:
                pos = pos.detach().requires_grad_(True)
            e = self.atomic_energies(data, pos=pos)
            energy = self._sum(e, batch, num_graphs)
            grad, = torch.autograd.grad(energy.sum(), pos, create_graph=self.training)
        return energy, -grad

    @staticmethod
    def _sum(e: Tensor, batch: Optional[Tensor], num_graphs: int) -> Tensor:
        if batch is None:
            return e.sum().view(1)
        return scatter(e, batch, dim=0, dim_size=num_graphs, reduce="sum")

    # ------------------------------------------------------------ statistics
    @torch.no_grad()
    def fit_statistics(self, dataset: Sequence[Data]) -> Dict[str, Tensor]:
        r"""Fits the reference energies :math:`e_z` by least squares,
        :math:`E \approx \sum_z n_z e_z` over the structures of
        :obj:`dataset` (unless ``reference_energies="none"``), and the scale
        :math:`s` as the root mean square of the force components (1 if the
        data have no forces), as NequIP does. Species absent from the data get
        :math:`e_z = 0`. Returns ``{"atom_ref": [S], "scale": []}``.

        Args:
            dataset (sequence of Data): structures with ``z``, ``energy`` and
                optionally ``forces``.
        """
        name = type(self).__name__
        if len(dataset) == 0:
            raise ValueError(f"'{name}.fit_statistics' got an empty dataset")
        counts, energies, sq, n_comp = [], [], 0.0, 0
        for data in dataset:
            if data.get("energy") is None:
                raise ValueError(f"'{name}.fit_statistics' needs 'energy' on every structure")
            s = self.species_of(data.z.to(self.species_index.device))
            counts.append(torch.bincount(s, minlength=self.num_species).to(torch.float64))
            energies.append(float(data.energy.reshape(-1)[0]))
            if data.get("forces") is not None:
                f = data.forces.to(torch.float64)
                sq += float((f * f).sum())
                n_comp += f.numel()
        A = torch.stack(counts)
        b = torch.tensor(energies, dtype=torch.float64)
        if self.reference != "none":
            present = A.sum(0) > 0
            ref = torch.zeros(self.num_species, dtype=torch.float64)
            ref[present] = torch.linalg.lstsq(A[:, present], b.unsqueeze(-1)).solution[:, 0]
            self.atom_ref.copy_(ref.to(self.atom_ref.dtype))
        scale = (sq / n_comp) ** 0.5 if n_comp > 0 and sq > 0 else 1.0
        self.scale.fill_(scale)
        return {"atom_ref": self.atom_ref.detach().clone(), "scale": self.scale.clone()}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(backbone={self.backbone!r}, "
                f"num_species={self.num_species}, cutoff={self.cutoff}, "
                f"hidden_channels={self.hidden_channels}, num_layers={self.num_layers})")
