import pytest
import torch
from torch_geometric.data import Batch

from gdl_pyg.domains.sequence import sequence_to_data
from gdl_pyg.groups import TimeWarping
from gdl_pyg.nn.conv.gated_lstm_conv import GatedLSTMConv
from gdl_pyg.nn.conv.gated_recurrent_conv import GatedRecurrentConv
from gdl_pyg.nn.models.sequence_rnn import SequenceClassifier
from gdl_pyg.testing import assert_equivariant


def _sequences(dtype=torch.float32):
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(n, 3, generator=gen, dtype=dtype) for n in (6, 2, 4)]


@pytest.mark.parametrize("cell,conv_cls", [("gated", GatedRecurrentConv),
                                           ("leaky", GatedRecurrentConv),
                                           ("lstm", GatedLSTMConv),
                                           ("rnn", GatedRecurrentConv)])
def test_shapes_repr_and_batching(cell, conv_cls):
    torch.manual_seed(0)
    model = SequenceClassifier(3, 8, 5, cell=cell, num_layers=2).double().eval()
    assert all(type(conv) is conv_cls for conv in model.convs)
    assert str(model) == (f"SequenceClassifier(3, 8, num_classes=5, cell='{cell}', "
                          f"num_layers=2, time_aware=False)")
    seqs = _sequences(torch.float64)
    batch = Batch.from_data_list([sequence_to_data(s) for s in seqs])
    out = model(batch)
    assert out.shape == (3, 5)
    # every sequence is classified on its own
    for i, s in enumerate(seqs):
        assert float((model(sequence_to_data(s))[0] - out[i]).abs().max().detach()) < 1e-12
    assert model.embed(batch).shape == (3, 8)


def test_final_state_readout_matches_the_layer():
    torch.manual_seed(0)
    model = SequenceClassifier(3, 8, 2, cell="gated").eval()
    data = sequence_to_data(_sequences())
    h = model.convs[0](data.x, data.edge_index)
    assert torch.equal(model.embed(data), h[torch.tensor([5, 7, 11])])


def test_time_aware_model_is_warp_invariant_and_rnn_is_not():
    torch.manual_seed(0)
    data = sequence_to_data(_sequences(torch.float64))
    group = TimeWarping(max_repeat=4)
    # one layer: a second layer would see the first layer's intermediate states
    # on the repeated copies, which are not a repeated input, so exactness is lost
    model = SequenceClassifier(3, 8, 4, cell="leaky", time_aware=True)
    with torch.no_grad():  # gate and candidate driven by the input only
        model.convs[0].weight_hh.zero_()
    res = assert_equivariant(model, data, group, num_samples=4, output_keys=["logits"])
    assert res.error < 1e-12
    rnn = SequenceClassifier(3, 8, 4, cell="rnn")
    with pytest.raises(AssertionError, match="not equivariant to TimeWarp"):
        assert_equivariant(rnn, data, group, num_samples=4, output_keys=["logits"])


@pytest.mark.slow
def test_learns_on_unwarped_sequences():
    # 40 full-batch steps of Adam fit a small event task (loss 1.45 -> 0.11 when written)
    from gdl_pyg.lightning.sequence_data import make_event_sequences
    graphs = make_event_sequences(64, length=8, generator=torch.Generator().manual_seed(0))
    batch = Batch.from_data_list(graphs)
    torch.manual_seed(0)
    model = SequenceClassifier(4, 16, 4, cell="gated")
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(batch), batch.y)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.25 * losses[0]


def test_errors():
    with pytest.raises(ValueError, match="cell in"):
        SequenceClassifier(3, 8, 2, cell="gru")
    with pytest.raises(ValueError, match="no gate"):
        SequenceClassifier(3, 8, 2, cell="rnn", time_aware=True)
    with pytest.raises(ValueError, match="num_layers"):
        SequenceClassifier(3, 8, 2, num_layers=0)
    model = SequenceClassifier(3, 8, 2, time_aware=True)
    data = sequence_to_data(torch.randn(4, 3))
    del data.t
    with pytest.raises(ValueError, match="time stamps"):
        model(data)
    with pytest.raises(TypeError, match="sequence 'Data'"):
        model(torch.randn(4, 3))
