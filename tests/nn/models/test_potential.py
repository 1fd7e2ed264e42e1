import importlib.util

import pytest
import torch
from torch_geometric.data import Batch, Data

from gdl_pyg.groups import E3, Permutations
from gdl_pyg.nn.models import InteratomicPotential
from gdl_pyg.testing import assert_equivariant, equivariance_error

SPECIES = [13, 29, 79]
HAS_TFN = importlib.util.find_spec("gdl_pyg.nn.models.tensor_field_network") is not None
EQUIVARIANT = ["egnn"] + (["tfn"] if HAS_TFN else [])


def _structure(n=9, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    # a compact random cluster: points on a jittered cubic lattice, spacing 2.4 A
    grid = torch.stack(torch.meshgrid(*[torch.arange(3)] * 3, indexing="ij"), -1).reshape(-1, 3)
    pick = torch.randperm(27, generator=gen)[:n]
    pos = 2.4 * grid[pick].to(dtype) + 0.2 * torch.randn(n, 3, generator=gen, dtype=dtype)
    z = torch.tensor(SPECIES)[torch.randint(0, 3, (n,), generator=gen)]
    return Data(z=z, pos=pos)


def _model(backbone, **kwargs):
    torch.manual_seed(0)
    kw = dict(species=SPECIES, cutoff=4.0, hidden_channels=16, num_layers=2,
              num_radial_basis=8)
    if backbone == "tfn":
        kw["hidden_irreps"] = "8x0e + 4x1o"
    kw.update(kwargs)
    model = InteratomicPotential(backbone, **kw)
    with torch.no_grad():  # non-trivial reference energies and scale
        model.atom_ref.copy_(torch.tensor([-1.0, 0.5, 2.0]))
        model.scale.fill_(1.7)
    return model


def _run(model, data):
    return model(data)


@pytest.mark.parametrize("backbone", EQUIVARIANT)
def test_e3_and_permutation_equivariance(backbone):
    model = _model(backbone)
    data = _structure(9)
    res = assert_equivariant(model, data, E3(translation_scale=3.0),
                             out_fields={"forces": "vector"}, forward=_run,
                             output_keys=["energy", "forces"], num_samples=4)
    assert res.error < 1e-9
    assert_equivariant(model, data, Permutations(), forward=_run,
                       output_keys=["energy", "forces"], num_samples=3)


@pytest.mark.parametrize("backbone", EQUIVARIANT)
def test_batch_equals_single(backbone):
    model = _model(backbone).double().eval()
    items = [_structure(n, seed=s) for s, n in ((1, 7), (2, 11), (3, 5))]
    energy, forces = model(Batch.from_data_list(items))
    assert energy.shape == (3,) and forces.shape == (23, 3)
    start = 0
    for i, d in enumerate(items):
        e, f = model(d)
        assert e.shape == (1,)
        assert torch.allclose(energy[i], e[0], atol=1e-10)
        assert torch.allclose(forces[start:start + d.num_nodes], f, atol=1e-10)
        start += d.num_nodes


@pytest.mark.parametrize("backbone", ["egnn", "tfn"])
def test_compiled_equals_eager(backbone):
    # the radius graph is built in forward: it runs eagerly inside the compiled
    # model (torch_cluster's operators cannot be traced), a graph break
    model = _model(backbone).double().eval()
    data = Batch.from_data_list([_structure(n, seed=s) for s, n in ((1, 7), (2, 11))])
    energy, forces = model(data)
    torch._dynamo.reset()
    energy_c, forces_c = torch.compile(model, backend="aot_eager")(data)
    assert (energy_c - energy).abs().max() < 1e-12
    assert (forces_c - forces).abs().max() < 1e-12


def test_checker_fails_on_baseline():
    model = _model("gnn_xyz")
    data = _structure(9)
    with pytest.raises(AssertionError, match="not equivariant to E\\(3\\)"):
        assert_equivariant(model, data, E3(), out_fields={"forces": "vector"}, forward=_run,
                           output_keys=["energy", "forces"])
    res = equivariance_error(model, data, E3(), out_fields={"forces": "vector"},
                             forward=_run, output_keys=["energy", "forces"])
    assert res.error > 1e-4
    # it is still translation and permutation invariant (relative vectors only)
    assert_equivariant(model, data, E3(), out_fields={"forces": "vector"}, forward=_run,
                       output_keys=["energy", "forces"],
                       elements=[(torch.eye(3, dtype=torch.float64),
                                  torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))])
    assert_equivariant(model, data, Permutations(), forward=_run,
                       output_keys=["energy", "forces"], num_samples=2)


@pytest.mark.parametrize("backbone", ["egnn", "gnn_xyz"] + (["tfn"] if HAS_TFN else []))
def test_forces_are_minus_gradient(backbone):
    model = _model(backbone).double().eval()
    data = _structure(6, seed=4)
    energy, forces = model(data)
    h = 1e-5
    numeric = torch.zeros_like(forces)
    for i in range(data.num_nodes):
        for k in range(3):
            plus, minus = data.clone(), data.clone()
            plus.pos[i, k] += h
            minus.pos[i, k] -= h
            e_p, _ = model(plus, compute_forces=False)
            e_m, _ = model(minus, compute_forces=False)
            numeric[i, k] = -(e_p - e_m)[0] / (2 * h)
    assert (forces - numeric).abs().max() < 1e-6
    assert forces.abs().max() > 1e-3  # not trivially zero


def test_training_mode_forces_train():
    model = _model("egnn").train()
    data = Batch.from_data_list([_structure(6, seed=s, dtype=torch.float32) for s in range(2)])
    energy, forces = model(data)
    assert forces.requires_grad  # create_graph=True in training mode
    forces.pow(2).sum().backward()
    grads = [p.grad for p in model.convs.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    model.eval()
    energy, forces = model(data)
    assert not forces.requires_grad
    with torch.no_grad():  # forces also under no_grad
        e2, f2 = model(data)
    assert torch.allclose(f2, forces)
    e3, f3 = model(data, compute_forces=False)
    assert f3 is None and torch.allclose(e3, energy)


def test_fit_statistics():
    model = InteratomicPotential("egnn", species=SPECIES, hidden_channels=8, num_layers=1)
    ref = torch.tensor([-1.5, 0.25, 3.0])
    data = []
    for s in range(12):
        d = _structure(4 + s % 5, seed=s, dtype=torch.float32)
        counts = torch.bincount(model.species_of(d.z), minlength=3).float()
        d.energy = (counts @ ref).view(1)
        d.forces = torch.full((d.num_nodes, 3), 2.0)
        data.append(d)
    out = model.fit_statistics(data)
    assert torch.allclose(out["atom_ref"], ref, atol=1e-4)
    assert torch.allclose(model.atom_ref, ref, atol=1e-4)
    assert abs(float(model.scale) - 2.0) < 1e-6
    assert "atom_ref" in model.state_dict() and "scale" in model.state_dict()
    learned = InteratomicPotential("egnn", num_species=80, reference_energies="learned",
                                   hidden_channels=8, num_layers=1)
    assert isinstance(learned.atom_ref, torch.nn.Parameter) and learned.num_species == 80
    learned.fit_statistics(data)  # absent species stay 0
    ref = learned.atom_ref.detach()
    assert abs(float(ref[78]) - 3.0) < 1e-3 and float(ref[0]) == 0
    with pytest.raises(ValueError, match="empty dataset"):
        model.fit_statistics([])


def test_bad_inputs():
    model = _model("egnn")
    good = _structure(5, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"\[num_atoms, 3\]"):
        model(Data(z=good.z, pos=good.pos[:, :2]))
    nan = good.clone()
    nan.pos[2, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        model(nan)
    with pytest.raises(ValueError, match="empty structure"):
        model(Data(z=torch.zeros(0, dtype=torch.long), pos=torch.zeros(0, 3)))
    unknown = good.clone()
    unknown.z[0] = 26
    with pytest.raises(ValueError, match=r"atomic numbers \[26\]"):
        model(unknown)
    unknown.z[0] = 500
    with pytest.raises(ValueError, match=r"\[500\]"):
        model(unknown)
    with pytest.raises(ValueError, match="'z' of shape"):
        model(Data(z=good.z[:3], pos=good.pos))
    with pytest.raises(TypeError, match="Data"):
        model(good.pos)
    with pytest.raises(ValueError, match="backbone"):
        InteratomicPotential("schnet", species=SPECIES)
    with pytest.raises(ValueError, match="exactly one"):
        InteratomicPotential("egnn")
    with pytest.raises(ValueError, match="distinct"):
        InteratomicPotential("egnn", species=[29, 29])
    with pytest.raises(ValueError, match="cutoff"):
        InteratomicPotential("egnn", species=SPECIES, cutoff=-1.0)


def test_uses_given_edge_index_and_repr():
    model = _model("egnn").double().eval()
    data = _structure(6, seed=5)
    e_radius, _ = model(data)
    data.edge_index = torch.empty(2, 0, dtype=torch.long)  # no edges: atoms isolated
    e_isolated, f_isolated = model(data)
    assert not torch.allclose(e_radius, e_isolated)
    assert f_isolated.abs().max() < 1e-12  # isolated atoms feel no force
    assert repr(model) == ("InteratomicPotential(backbone='egnn', num_species=3, cutoff=4.0, "
                           "hidden_channels=16, num_layers=2)")
    assert InteratomicPotential.group_name == "E(3)"
