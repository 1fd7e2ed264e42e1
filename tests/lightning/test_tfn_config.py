import os

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from gdl_pyg.groups import E3, Permutations
from gdl_pyg.lightning.cli import main
from gdl_pyg.lightning.nbody_data import NBODY_FILE, NBodyDataModule, make_nbody_splits
from gdl_pyg.nn.models.tensor_field_network import TensorFieldNetwork
from gdl_pyg.testing import assert_equivariant, equivariance_error

REPO = os.path.join(os.path.dirname(__file__), "..", "..")
CONFIG = os.path.join(REPO, "gdl_pyg", "configs", "tfn_nbody.yaml")
SMALL = dict(hidden_irreps="6x0e + 3x1o", num_layers=2, irreps_sh=1, max_radius=15.0,
             radial_hidden=16, num_radial_basis=6, num_neighbors=4.0, edge_dim=1,
             use_vel=True, radial_basis="bessel")

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI.s args parameter")


@pytest.fixture(scope="module")
def small_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("nbody")
    np.savez_compressed(root / NBODY_FILE, **make_nbody_splits(40, 10, 12, seed=3))
    return str(root)


def nbody_graphs(num=3, dtype=torch.float64):
    sim = make_nbody_splits(num, 1, 1, seed=5)
    graphs = NBodyDataModule.to_graphs(*(torch.from_numpy(sim[f"train_{k}"]).to(dtype)
                                         for k in ("pos", "vel", "charges", "target")))
    return graphs


def test_position_output_shapes():
    graphs = nbody_graphs(dtype=torch.float32)
    batch = Batch.from_data_list(graphs)
    torch.manual_seed(0)
    node = TensorFieldNetwork(1, output="position", **SMALL)
    graph = TensorFieldNetwork(1, output="position", level="graph", **SMALL)
    graph.load_state_dict(node.state_dict())
    out = node(batch)
    assert out.shape == (15, 3)
    assert graph(batch).shape == (3, 15)
    assert torch.equal(graph(batch), out.reshape(3, 15))
    assert graph(graphs[0]).shape == (1, 15)
    # positions = pos + the vector output of the same weights
    vector = TensorFieldNetwork(1, output="vector", **SMALL)
    vector.load_state_dict(node.state_dict())
    assert torch.allclose(out, batch.pos + vector(batch))
    assert (out - batch.pos).abs().max() > 1e-3
    assert "output=position, level=graph" in str(graph)


def test_position_output_errors():
    with pytest.raises(ValueError, match="output='position' predicts one position per node; "
                                         "set out_channels=1 \\(got 2\\)"):
        TensorFieldNetwork(1, out_channels=2, output="position", **SMALL)
    graphs = nbody_graphs(2, dtype=torch.float32)
    graphs[1] = graphs[1].subgraph(torch.arange(4))
    model = TensorFieldNetwork(1, output="position", level="graph", **SMALL)
    with pytest.raises(ValueError, match="needs graphs of equal size"):
        model(Batch.from_data_list(graphs))


def test_position_output_is_e3_equivariant():
    data = nbody_graphs(1)[0]
    model = TensorFieldNetwork(1, output="position", **SMALL)
    res = assert_equivariant(model, data, E3(), fields={"vel": "vector"},
                             out_fields={"out": "point"}, num_samples=6)
    assert res.error < 1e-9
    assert_equivariant(model, data, Permutations())
    # positions translate: checked as a (translation-blind) vector, it must fail
    assert equivariance_error(model, data, E3(), fields={"vel": "vector"},
                              out_fields={"out": "vector"}).error > 1e-3


def test_config_fast_dev_run(tmp_path, monkeypatch, small_root):
    monkeypatch.chdir(tmp_path)
    main(["fit", "--config", os.path.abspath(CONFIG), "--trainer.fast_dev_run", "1",
          "--trainer.accelerator", "cpu", "--data.init_args.root", small_root,
          "--data.init_args.num_train", "40"])
    main(["test", "--config", os.path.abspath(CONFIG), "--trainer.fast_dev_run", "1",
          "--trainer.accelerator", "cpu", "--data.init_args.root", small_root])
