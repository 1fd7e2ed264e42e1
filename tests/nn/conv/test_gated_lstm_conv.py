import math

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from torch_geometric.data import Data

from gdl_pyg.domains.sequence import (data_to_sequence, sequence_layout, sequence_to_data,
                                      warp_step_sizes)
from gdl_pyg.groups import TimeWarping
from gdl_pyg.nn.conv.gated_lstm_conv import GatedLSTMConv
from gdl_pyg.testing import assert_equivariant

B, T, C, H = 4, 7, 3, 5
LENGTHS = torch.tensor([7, 3, 5, 1])
MASK = (torch.arange(T).view(1, -1) < LENGTHS.view(-1, 1)).unsqueeze(-1)


def _batch(dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, C, generator=gen, dtype=dtype)
    return x, sequence_to_data(x, LENGTHS)


def _final_state(module, data, use_dt=True):
    lay = sequence_layout(data.edge_index, data.num_nodes)
    dt = warp_step_sizes(data.t, data.edge_index, layout=lay, dtype=data.x.dtype) \
        if use_dt else None
    h, c = module(data.x, data.edge_index, dt=dt, return_cell=True)
    return h[lay.last], c[lay.last]


def _input_driven(conv):
    with torch.no_grad():
        conv.weight_hh.zero_()
    return conv


def test_shapes_and_repr():
    _, data = _batch(torch.float32)
    conv = GatedLSTMConv(C, H)
    assert str(conv) == "GatedLSTMConv(3, 5)"
    assert GatedLSTMConv.group_name == "TimeWarping"
    assert conv.weight_ih.shape == (4 * H, C) and conv.weight_hh.shape == (4 * H, H)
    assert conv(data.x, data.edge_index).shape == (data.num_nodes, H)
    h, c = conv(data.x, data.edge_index, return_cell=True)
    assert h.shape == c.shape == (data.num_nodes, H)
    nobias = GatedLSTMConv(C, H, bias=False)
    assert nobias.bias_ih is None
    assert nobias(data.x, data.edge_index).shape == (data.num_nodes, H)


@pytest.mark.parametrize("bias", [True, False])
def test_equals_torch_lstm_on_packed_batches(bias):
    torch.manual_seed(0)
    x, data = _batch()
    ref = torch.nn.LSTM(C, H, batch_first=True, bias=bias).double()
    conv = GatedLSTMConv.from_torch(ref)
    h0, c0 = torch.randn(B, H, dtype=torch.float64), torch.randn(B, H, dtype=torch.float64)
    last = sequence_layout(data.edge_index, data.num_nodes).last
    packed = pack_padded_sequence(x, LENGTHS, batch_first=True, enforce_sorted=False)
    with torch.no_grad():
        for init, ref_init in [(None, None), ((h0, c0), (h0[None], c0[None])),
                               (h0, (h0[None], torch.zeros_like(c0)[None]))]:
            out, (h_n, c_n) = ref(packed, ref_init)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=T)
            h, c = conv(data.x, data.edge_index, h0=init, return_cell=True)
            padded, lengths = data_to_sequence(Data(x=h, edge_index=data.edge_index))
            assert torch.equal(lengths, LENGTHS)
            assert float((padded - out * MASK).abs().max()) < 1e-10
            assert float((h[last] - h_n[0]).abs().max()) < 1e-10
            assert float((c[last] - c_n[0]).abs().max()) < 1e-10


def test_unit_step_sizes_change_nothing_and_gradients_flow():
    _, data = _batch()
    conv = GatedLSTMConv(C, H).double()
    h = conv(data.x, data.edge_index)
    h1 = conv(data.x, data.edge_index, dt=torch.ones(data.num_nodes, dtype=torch.float64))
    assert float((h - h1).abs().max().detach()) < 1e-12
    h.sum().backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in conv.parameters())


def test_chrono_init():
    torch.manual_seed(0)
    conv = GatedLSTMConv(C, 64, chrono_init=10)
    b_i, b_f = conv.bias_ih[:64], conv.bias_ih[64:128]
    assert bool((b_f >= 0).all()) and bool((b_f <= math.log(9.0) + 1e-6).all())
    assert torch.equal(b_i, -b_f)
    assert bool((conv.bias_hh[:128] == 0).all())


def test_warp_invariance_with_known_step_sizes():
    _, data = _batch()
    conv = _input_driven(GatedLSTMConv(C, H))
    res = assert_equivariant(conv, data, TimeWarping(max_repeat=4), forward=_final_state,
                             output_keys=["h", "c"], num_samples=6)
    assert res.error < 1e-12


def test_checker_fails_on_layers_that_cannot_warp():
    _, data = _batch()
    group = TimeWarping(max_repeat=4)
    conv = _input_driven(GatedLSTMConv(C, H))
    # the same layer, not told the warp rate: its cell decays k times per step
    with pytest.raises(AssertionError, match="not equivariant to TimeWarp"):
        assert_equivariant(conv, data, group, output_keys=["h", "c"],
                           forward=lambda m, d: _final_state(m, d, use_dt=False))
    # a broken step-size rule: the forget gate follows the warp, the input gate not
    broken = _input_driven(ForgetOnlyLSTMConv(C, H))
    with pytest.raises(AssertionError, match="not equivariant to TimeWarp"):
        assert_equivariant(broken, data, group, output_keys=["h", "c"], forward=_final_state)


class ForgetOnlyLSTMConv(GatedLSTMConv):
    def cell(self, gx, h, c, dt=None):
        a = gx + torch.nn.functional.linear(h, self.weight_hh, self.bias_hh)
        a_i, a_f, a_g, a_o = a.chunk(4, dim=-1)
        f = torch.sigmoid(a_f)
        if dt is not None:
            f = f ** dt.unsqueeze(-1)
        c = f * c + torch.sigmoid(a_i) * torch.tanh(a_g)
        return torch.sigmoid(a_o) * torch.tanh(c), c


def test_compile_per_layout():
    torch._dynamo.reset()
    _, data = _batch(torch.float32)
    conv = GatedLSTMConv(C, H)
    lay = sequence_layout(data.edge_index, data.num_nodes)
    explain = torch._dynamo.explain(conv)(data.x, data.edge_index, layout=lay)
    assert explain.graph_count == 1 and explain.graph_break_count == 0
    torch._dynamo.reset()


def test_errors():
    _, data = _batch(torch.float32)
    conv = GatedLSTMConv(C, H)
    with pytest.raises(ValueError, match=r"\[num_nodes, 3\]"):
        conv(torch.randn(data.num_nodes, 4), data.edge_index)
    with pytest.raises(ValueError, match="'c0'"):
        conv(data.x, data.edge_index, h0=(torch.zeros(B, H), torch.zeros(B, 2)))
    with pytest.raises(ValueError, match="pair"):
        conv(data.x, data.edge_index, h0=(torch.zeros(B, H),))
    with pytest.raises(ValueError, match="step sizes"):
        conv(data.x, data.edge_index, dt=torch.ones(data.num_nodes, 1))
    with pytest.raises(ValueError, match="chrono_init"):
        GatedLSTMConv(C, H, chrono_init=1)
    with pytest.raises(TypeError, match="torch.nn.LSTM"):
        GatedLSTMConv.from_torch(torch.nn.GRU(C, H))
    with pytest.raises(ValueError, match="projection"):
        GatedLSTMConv.from_torch(torch.nn.LSTM(C, H, proj_size=2))
