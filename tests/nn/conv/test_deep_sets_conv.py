import pytest
import torch
from torch_geometric.data import Batch, Data

from gdl_pyg.groups import Permutations
from gdl_pyg.nn.conv.deep_sets_conv import DeepSetsConv
from gdl_pyg.testing import assert_equivariant


def sets(dtype=torch.float64):
    gen = torch.Generator().manual_seed(0)
    return Batch.from_data_list([Data(x=torch.randn(n, 6, generator=gen, dtype=dtype))
                                 for n in (4, 7, 1, 5)])


def reference(conv, x, batch):
    out = torch.empty(x.size(0), conv.out_channels, dtype=x.dtype)
    for b in batch.unique():
        m = batch == b
        xs = x[m]
        agg = {"sum": xs.sum(0), "add": xs.sum(0), "mean": xs.mean(0),
               "max": xs.max(0).values}[conv.aggr]
        out[m] = xs @ conv.lin_self.weight.t() + conv.lin_self.bias \
            + agg @ conv.lin_set.weight.t()
    return out


def test_shapes_and_repr():
    data = sets(torch.float32)
    conv = DeepSetsConv(6, 16, aggr="mean")
    assert conv(data.x, data.batch).shape == (17, 16)
    assert conv(data.x).shape == (17, 16)
    assert str(conv) == "DeepSetsConv(6, 16, aggr=mean)"
    assert DeepSetsConv.group_name == "Permutations"
    with pytest.raises(ValueError, match="'aggr' to be one of"):
        DeepSetsConv(6, 16, aggr="std")
    with pytest.raises(ValueError, match="shape"):
        conv(data.x[0])


@pytest.mark.parametrize("aggr", ["sum", "mean", "max"])
def test_equals_reference(aggr):
    data = sets()
    conv = DeepSetsConv(6, 8, aggr=aggr).double()
    expected = reference(conv, data.x, data.batch)
    assert (conv(data.x, data.batch) - expected).abs().max() < 1e-10
    assert (conv(data.x, data.batch, batch_size=4) - expected).abs().max() < 1e-10
    single = conv(data.x)  # one set
    assert (single - reference(conv, data.x, torch.zeros_like(data.batch))).abs().max() < 1e-10


@pytest.mark.parametrize("aggr", ["sum", "mean", "max"])
def test_permutation_equivariance(aggr):
    assert_equivariant(DeepSetsConv(6, 8, aggr=aggr), sets(), Permutations())


def test_checker_fails_on_broken_layer():
    class Broken(DeepSetsConv):  # adds a term read from a fixed node index
        def forward(self, x, batch=None, batch_size=None):
            return super().forward(x, batch, batch_size) + x[:1].sum()

    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(Broken(6, 8), sets(), Permutations())


def test_compile_no_graph_breaks():
    data = sets(torch.float32)
    conv = DeepSetsConv(6, 8, aggr="max")
    torch._dynamo.reset()
    explain = torch._dynamo.explain(conv)(data.x, data.batch, 4)
    assert explain.graph_break_count == 0, explain.break_reasons
    assert explain.graph_count == 1 and not explain.break_reasons
