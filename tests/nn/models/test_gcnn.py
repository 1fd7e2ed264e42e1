import pytest
import torch
from torch_geometric.data import Batch

from gdl_pyg.domains.grid import grid_to_data
from gdl_pyg.groups import CyclicGroup, DihedralGroup, Permutations
from gdl_pyg.nn.models.gcnn import GCNN
from gdl_pyg.nn.models.grid_cnn import GridCNN
from gdl_pyg.testing import assert_equivariant, equivariance_error


def digits(n=3, dtype=torch.float64):
    from sklearn.datasets import load_digits
    images = torch.as_tensor(load_digits().images[:n], dtype=dtype).unsqueeze(1) / 16.0
    return [grid_to_data(img) for img in images]


def test_shapes_and_repr():
    torch.manual_seed(0)
    model = GCNN()
    assert str(model) == ("GCNN(1, 10, hidden_channels=16, num_layers=3, kernel_size=3, "
                          "group=p4)")
    assert model.order == 4 and GCNN(group="p4m").order == 8
    # as many parameters as the default GridCNN, within 2%
    n = sum(p.numel() for p in model.parameters())
    n_cnn = sum(p.numel() for p in GridCNN().parameters())
    assert n == 18794 and abs(n - n_cnn) / n_cnn < 0.02
    batch = Batch.from_data_list(digits(4, torch.float32))
    out = model(batch)
    assert out.shape == (4, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    w = model.lifting.weight.detach().clone()
    model.reset_parameters()
    assert not torch.equal(w, model.lifting.weight)


@pytest.mark.parametrize("group", ["p4", "p4m"])
def test_dense_path_equals_message_passing(group):
    torch.manual_seed(0)
    model = GCNN(hidden_channels=4, group=group).double()
    batch = Batch.from_data_list(digits(2))
    dense = model(batch, dense=True)
    graph = model(batch, dense=False)
    assert (dense - graph).abs().max() < 1e-10
    assert torch.equal(model(batch), dense)


@pytest.mark.parametrize("group, G", [("p4", CyclicGroup(4)), ("p4m", DihedralGroup(4))])
def test_invariance(group, G):
    torch.manual_seed(0)
    model = GCNN(group=group)
    # all elements of the group, single digits and a batch, float64, tolerance 1e-9
    for data in digits(2):
        res = assert_equivariant(model, data, G)
        assert res.num_elements == G.order and res.error < 1e-12
    batch = Batch.from_data_list(digits(3))
    assert_equivariant(model, batch, G)
    # also along the message-passing path, on the lifted grid
    assert_equivariant(model, digits(1)[0], G, forward=lambda m, d: m(d, dense=False))


def test_checker_fails_on_broken_symmetry():
    torch.manual_seed(0)
    data = digits(1)[0]
    # p4 has no reflections: the checker fails on D4 (at a reflection) ...
    with pytest.raises(AssertionError, match="not equivariant to D4"):
        assert_equivariant(GCNN(group="p4"), data, DihedralGroup(4))
    res = equivariance_error(GCNN(group="p4"), data, DihedralGroup(4), elements=[0, 1, 2, 3])
    assert res.error < 1e-12  # (rotations are fine)
    # ... and a CNN fails under C4
    with pytest.raises(AssertionError, match="not equivariant to C4"):
        assert_equivariant(GridCNN(), data, CyclicGroup(4))
    # odd grid sizes break the commutation of 2x2 pooling with rotations
    odd = grid_to_data(torch.rand(1, 7, 7, dtype=torch.float64))
    with pytest.raises(AssertionError, match="not equivariant to C4"):
        assert_equivariant(GCNN(num_layers=2), odd, CyclicGroup(4))


def test_any_node_order():
    torch.manual_seed(0)
    assert_equivariant(GCNN(hidden_channels=4), digits(1)[0], Permutations())


def test_errors():
    with pytest.raises(ValueError, match="group"):
        GCNN(group="p6")
    with pytest.raises(ValueError, match="kernel_size"):
        GCNN(kernel_size=2)
    with pytest.raises(ValueError, match="group_reduce"):
        GCNN(group_reduce="sum")
    with pytest.raises(ValueError, match="2 input channels"):
        GCNN(in_channels=2)(digits(1, torch.float32)[0])
    with pytest.raises(ValueError, match="at least 8"):
        GCNN(num_layers=4)(grid_to_data(torch.rand(1, 4, 4)))
    volume = grid_to_data(torch.rand(1, 4, 4, 4))
    with pytest.raises(ValueError, match="2-D grids"):
        GCNN()(volume)
