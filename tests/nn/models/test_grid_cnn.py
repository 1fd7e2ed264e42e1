import pytest
import torch
from torch_geometric.data import Batch

from gdl_pyg.domains.grid import grid_to_data
from gdl_pyg.groups import CyclicGroup, Permutations
from gdl_pyg.nn.models.grid_cnn import GridCNN
from gdl_pyg.testing import assert_equivariant


def digits(n=3, dtype=torch.float64):
    from sklearn.datasets import load_digits
    images = torch.as_tensor(load_digits().images[:n], dtype=dtype).unsqueeze(1) / 16.0
    return [grid_to_data(img) for img in images]


def test_shapes_and_repr():
    torch.manual_seed(0)
    model = GridCNN()
    assert str(model) == "GridCNN(1, 10, hidden_channels=32, num_layers=3, kernel_size=3)"
    # the documented parameter count, comparable with the default GCNN
    assert sum(p.numel() for p in model.parameters()) == 19146
    batch = Batch.from_data_list(digits(4, torch.float32))
    out = model(batch)
    assert out.shape == (4, 10) and out.dtype == torch.float32
    assert model(digits(1, torch.float32)[0]).shape == (1, 10)  # a single unbatched grid
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    # reset_parameters re-draws the weights
    w = model.convs[0].weight.detach().clone()
    model.reset_parameters()
    assert not torch.equal(w, model.convs[0].weight)


@pytest.mark.parametrize("pool, readout", [("max", "max"), ("mean", "mean"), ("max", "sum")])
def test_dense_path_equals_message_passing(pool, readout):
    torch.manual_seed(0)
    model = GridCNN(1, 10, hidden_channels=8, pool=pool, readout=readout).double()
    batch = Batch.from_data_list(digits(3))
    dense = model(batch, dense=True)
    graph = model(batch, dense=False)
    assert (dense - graph).abs().max() < 1e-10
    assert torch.equal(model(batch), dense)  # canonical input takes the dense path


def test_any_node_order():
    # the graph path makes the model invariant to relabelling the pixels
    torch.manual_seed(0)
    model = GridCNN(hidden_channels=8)
    data = digits(1)[0]
    assert_equivariant(model, data, Permutations())


def test_not_rotation_invariant():
    # a CNN is not invariant to quarter turns: the checker catches it
    torch.manual_seed(0)
    model = GridCNN()
    data = digits(1)[0]
    with pytest.raises(AssertionError, match="not equivariant to C4"):
        assert_equivariant(model, data, CyclicGroup(4))
    # ... while the identity is trivially fine
    assert_equivariant(model, data, CyclicGroup(4), elements=[0])


def test_errors():
    with pytest.raises(ValueError, match="kernel_size"):
        GridCNN(kernel_size=4)
    with pytest.raises(ValueError, match="num_layers"):
        GridCNN(num_layers=0)
    with pytest.raises(ValueError, match="pool"):
        GridCNN(pool="min")
    with pytest.raises(ValueError, match="readout"):
        GridCNN(readout="min")
    model = GridCNN(in_channels=3)
    with pytest.raises(ValueError, match="3 input channels"):
        model(digits(1, torch.float32)[0])
    with pytest.raises(TypeError, match="grid 'Data'"):
        model(torch.zeros(64, 3))
    data = digits(1, torch.float32)[0]
    del data.grid_shape
    with pytest.raises(ValueError, match="grid_shape"):
        GridCNN()(data)
    # 8x8 cannot be halved 4 times in floor mode
    with pytest.raises(ValueError, match="at least 16"):
        GridCNN(num_layers=5)(digits(1, torch.float32)[0])
