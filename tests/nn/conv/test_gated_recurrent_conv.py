import math

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from torch_geometric.data import Data

from gdl_pyg.domains.sequence import (data_to_sequence, sequence_layout, sequence_to_data,
                                      warp_step_sizes)
from gdl_pyg.groups import TimeWarping
from gdl_pyg.nn.conv.gated_recurrent_conv import GatedRecurrentConv
from gdl_pyg.testing import assert_equivariant, equivariance_error

B, T, C, H = 4, 7, 3, 5
LENGTHS = torch.tensor([7, 3, 5, 1])


def _batch(dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, C, generator=gen, dtype=dtype)
    return x, sequence_to_data(x, LENGTHS)


def _torch_reference(module, x, h0=None):
    packed = pack_padded_sequence(x, LENGTHS, batch_first=True, enforce_sorted=False)
    out, h_n = module(packed, h0)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=T)
    return out, h_n


def _final_state(module, data, use_dt=True):
    r"""The state at the last step of every sequence, with step sizes from
    the time stamps (graph-level output: one row per sequence)."""
    lay = sequence_layout(data.edge_index, data.num_nodes)
    dt = warp_step_sizes(data.t, data.edge_index, layout=lay, dtype=data.x.dtype) \
        if use_dt else None
    return module(data.x, data.edge_index, dt=dt)[lay.last]


def _input_driven(conv):
    r"""Gate and candidate depend on the input only (U = 0): the setting in
    which known step sizes make the final state exactly warp invariant."""
    with torch.no_grad():
        conv.weight_hh.zero_()
    return conv


def test_shapes_and_repr():
    _, data = _batch(torch.float32)
    for update, reset in [(True, True), (True, False), (False, False), (False, True)]:
        conv = GatedRecurrentConv(C, H, update_gate=update, reset_gate=reset)
        k = 1 + update + reset
        assert conv.weight_ih.shape == (k * H, C) and conv.weight_hh.shape == (k * H, H)
        assert conv(data.x, data.edge_index).shape == (data.num_nodes, H)
    assert str(GatedRecurrentConv(C, H)) == \
        "GatedRecurrentConv(3, 5, update_gate=True, reset_gate=True)"
    assert GatedRecurrentConv.group_name == "TimeWarping"
    conv = GatedRecurrentConv(C, H, bias=False)
    assert conv.bias_ih is None and conv(data.x, data.edge_index).shape == (data.num_nodes, H)


@pytest.mark.parametrize("cls", [torch.nn.GRU, torch.nn.RNN])
@pytest.mark.parametrize("bias", [True, False])
def test_equals_torch_rnn_on_packed_batches(cls, bias):
    torch.manual_seed(0)
    x, data = _batch()
    ref = cls(C, H, batch_first=True, bias=bias).double()
    conv = GatedRecurrentConv.from_torch(ref)
    h0 = torch.randn(B, H, dtype=torch.float64)
    for init in (None, h0):
        out, h_n = _torch_reference(ref, x, None if init is None else init.unsqueeze(0))
        h = conv(data.x, data.edge_index, h0=init)
        padded, lengths = data_to_sequence(Data(x=h, edge_index=data.edge_index))
        assert torch.equal(lengths, LENGTHS)
        mask = (torch.arange(T).view(1, -1) < LENGTHS.view(-1, 1)).unsqueeze(-1)
        assert float((padded - out * mask).abs().max().detach()) < 1e-10
        last = sequence_layout(data.edge_index, data.num_nodes).last
        assert float((h[last] - h_n[0]).abs().max().detach()) < 1e-10


def test_leaky_cell_equals_gru_with_open_reset_gate():
    torch.manual_seed(1)
    x, data = _batch()
    gru = torch.nn.GRU(C, H, batch_first=True).double()
    with torch.no_grad():  # reset gate r = sigmoid(60) == 1.0 in float64
        gru.weight_ih_l0[:H] = 0.0
        gru.weight_hh_l0[:H] = 0.0
        gru.bias_ih_l0[:H] = 60.0
        gru.bias_hh_l0[:H] = 0.0
    conv = GatedRecurrentConv(C, H, reset_gate=False).double()
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            value = getattr(gru, f"{name}_l0")[H:].clone()
            value[:H] = -value[:H]  # Gamma = 1 - z
            getattr(conv, name).copy_(value)
    out, _ = _torch_reference(gru, x)
    with torch.no_grad():
        h = conv(data.x, data.edge_index)
    padded, _ = data_to_sequence(Data(x=h, edge_index=data.edge_index))
    mask = (torch.arange(T).view(1, -1) < LENGTHS.view(-1, 1)).unsqueeze(-1)
    assert float((padded - out * mask).abs().max()) < 1e-10


def test_unit_step_sizes_change_nothing_and_gradients_flow():
    _, data = _batch()
    conv = GatedRecurrentConv(C, H).double()
    h = conv(data.x, data.edge_index)
    h1 = conv(data.x, data.edge_index, dt=torch.ones(data.num_nodes, dtype=torch.float64))
    assert float((h - h1).abs().max().detach()) < 1e-12
    lay = sequence_layout(data.edge_index, data.num_nodes)
    assert torch.equal(conv(data.x, data.edge_index, layout=lay), h)
    h.sum().backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in conv.parameters())


def test_chrono_init():
    torch.manual_seed(0)
    conv = GatedRecurrentConv(C, 64, chrono_init=10)
    gate_bias = conv.bias_ih[64:128]
    assert bool((gate_bias <= 0).all()) and bool((gate_bias >= -math.log(9.0) - 1e-6).all())
    assert bool((conv.bias_hh[64:128] == 0).all())
    leaky = GatedRecurrentConv(C, 8, reset_gate=False, chrono_init=10)
    assert bool((leaky.bias_ih[:8] <= 0).all())


def test_identity_warp_is_a_symmetry():
    # sanity: the per-node states are unchanged by the trivial warp
    _, data = _batch()
    conv = GatedRecurrentConv(C, H)
    identity = TimeWarping().identity(data)
    assert_equivariant(conv, data, TimeWarping(), elements=[identity])


def test_warp_invariance_with_known_step_sizes():
    _, data = _batch()
    group = TimeWarping(max_repeat=4)
    conv = _input_driven(GatedRecurrentConv(C, H, reset_gate=False))
    res = assert_equivariant(conv, data, group, forward=_final_state, output_keys=["h"],
                             num_samples=6)
    assert res.num_elements == 6 and res.error < 1e-12
    # stronger: the state after the last copy of every original step is the
    # unwarped state of that step
    counts = torch.tensor([1, 3, 2, 4, 1, 2, 3, 1, 2, 2, 4, 1, 3, 1, 2, 3])
    warped = group.act(counts, data)
    conv64 = conv.double()
    h = conv64(data.x, data.edge_index,
               dt=warp_step_sizes(data.t, data.edge_index, dtype=torch.float64))
    h_w = conv64(warped.x, warped.edge_index,
                 dt=warp_step_sizes(warped.t, warped.edge_index, dtype=torch.float64))
    last_copy = torch.cumsum(counts, 0) - 1
    assert float((h_w[last_copy] - h).abs().max()) < 1e-12


def test_checker_fails_on_layers_that_cannot_warp():
    _, data = _batch()
    group = TimeWarping(max_repeat=4)
    # the plain tanh RNN: no gate, its time scale is fixed (dt is ignored); with
    # U = 0 it would have no memory at all (h_t = tanh(W x_t + b), trivially
    # invariant), so it keeps its recurrent weights
    rnn = GatedRecurrentConv(C, H, update_gate=False, reset_gate=False)
    with pytest.raises(AssertionError, match="not equivariant to TimeWarp"):
        assert_equivariant(rnn, data, group, forward=_final_state, output_keys=["h"])
    # the gated layer that is not told the warp rate
    gated = _input_driven(GatedRecurrentConv(C, H, reset_gate=False))
    with pytest.raises(AssertionError, match="not equivariant to TimeWarp"):
        assert_equivariant(gated, data, group, output_keys=["h"],
                           forward=lambda m, d: _final_state(m, d, use_dt=False))
    # with recurrent weights the invariance is only approximate
    torch.manual_seed(0)
    err = equivariance_error(GatedRecurrentConv(C, H), data, group, forward=_final_state,
                             output_keys=["h"]).error
    assert 1e-9 < err < 1.0


def test_compile_per_layout():
    torch._dynamo.reset()
    _, data = _batch(torch.float32)
    conv = GatedRecurrentConv(C, H)
    lay = sequence_layout(data.edge_index, data.num_nodes)
    explain = torch._dynamo.explain(conv)(data.x, data.edge_index, layout=lay)
    assert explain.graph_count == 1 and explain.graph_break_count == 0
    torch._dynamo.reset()


def test_errors():
    _, data = _batch(torch.float32)
    conv = GatedRecurrentConv(C, H)
    with pytest.raises(ValueError, match=r"\[num_nodes, 3\]"):
        conv(torch.randn(data.num_nodes, 4), data.edge_index)
    with pytest.raises(ValueError, match=r"\[4, 5\]"):
        conv(data.x, data.edge_index, h0=torch.zeros(3, H))
    with pytest.raises(ValueError, match="step sizes"):
        conv(data.x, data.edge_index, dt=torch.ones(3))
    with pytest.raises(ValueError, match="consecutive nodes"):
        conv(data.x, data.edge_index.flip(0))
    with pytest.raises(TypeError, match="SequenceLayout"):
        conv(data.x, data.edge_index, layout=(1, 2))
    with pytest.raises(ValueError, match="positive channel"):
        GatedRecurrentConv(0, H)
    with pytest.raises(ValueError, match="chrono_init"):
        GatedRecurrentConv(C, H, update_gate=False, chrono_init=10)
    with pytest.raises(TypeError, match="torch.nn.GRU"):
        GatedRecurrentConv.from_torch(torch.nn.LSTM(C, H))
    with pytest.raises(ValueError, match="one-layer"):
        GatedRecurrentConv.from_torch(torch.nn.GRU(C, H, num_layers=2))
    with pytest.raises(ValueError, match="tanh"):
        GatedRecurrentConv.from_torch(torch.nn.RNN(C, H, nonlinearity="relu"))
