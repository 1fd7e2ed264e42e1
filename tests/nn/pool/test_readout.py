import pytest
import torch
from torch_geometric.data import Batch, Data

from gdl_pyg.groups import Permutations
from gdl_pyg.nn.pool.readout import AttentionReadout, MaxReadout, MeanReadout, SumReadout
from gdl_pyg.testing import assert_equivariant


def graphs(dtype=torch.float64):
    gen = torch.Generator().manual_seed(0)
    return Batch.from_data_list([Data(x=torch.randn(n, 5, generator=gen, dtype=dtype))
                                 for n in (4, 7, 5)])


def per_graph(fn, x, batch):
    return torch.stack([fn(x[batch == b]) for b in range(int(batch.max()) + 1)])


@pytest.mark.parametrize("cls,fn", [(SumReadout, lambda x: x.sum(0)),
                                    (MeanReadout, lambda x: x.mean(0)),
                                    (MaxReadout, lambda x: x.max(0).values)])
def test_simple_readouts(cls, fn):
    data = graphs()
    readout = cls()
    assert str(readout) == f"{cls.__name__}()"
    assert cls.group_name == "Permutations"
    out = readout(data.x, data.batch)
    assert out.shape == (3, 5)
    assert (out - per_graph(fn, data.x, data.batch)).abs().max() < 1e-10
    assert (readout(data.x) - fn(data.x)).abs().max() < 1e-10
    assert readout(data.x, data.batch, batch_size=4).shape == (4, 5)
    assert_equivariant(readout, data, Permutations())


def test_attention_readout():
    data = graphs()
    readout = AttentionReadout(5, 3).double()
    assert str(readout) == "AttentionReadout(5, 3)"
    out = readout(data.x, data.batch)
    assert out.shape == (3, 3)
    gate, nn = readout.aggr.gate_nn, readout.aggr.nn

    def fn(x):
        return (torch.softmax(gate(x), dim=0) * nn(x)).sum(0)

    assert (out - per_graph(fn, data.x, data.batch)).abs().max() < 1e-10
    assert (readout(data.x) - fn(data.x)).abs().max() < 1e-10
    assert AttentionReadout(5)(data.x.float(), data.batch).shape == (3, 5)
    assert_equivariant(readout, data, Permutations())
    with pytest.raises(TypeError, match="'gate_nn' to be a torch.nn.Module"):
        AttentionReadout(5, gate_nn=torch.sigmoid)


def test_checker_fails_on_broken_readout():
    class Broken(SumReadout):  # weights nodes by their index
        def forward(self, x, batch=None, batch_size=None):
            w = torch.arange(x.size(0), dtype=x.dtype).unsqueeze(-1)
            return super().forward(w * x, batch, batch_size)

    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(Broken(), graphs(), Permutations())


def test_bad_input():
    with pytest.raises(ValueError, match="node features"):
        SumReadout()(torch.tensor(1.0))
