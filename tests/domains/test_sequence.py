import pytest
import torch
from torch_geometric.data import Batch

from gdl_pyg.domains.sequence import (SequenceLayout, data_to_sequence, sequence_layout,
                                      sequence_to_data, warp_step_sizes)
from gdl_pyg.groups import TimeWarping


def test_single_sequence_layout():
    x = torch.randn(5, 3)
    data = sequence_to_data(x)
    assert torch.equal(data.x, x)
    assert data.edge_index.tolist() == [[0, 1, 2, 3], [1, 2, 3, 4]]
    assert data.t.tolist() == [0, 1, 2, 3, 4]
    assert "batch" not in data
    # a 1-D signal is one channel
    data1 = sequence_to_data(torch.arange(4.0))
    assert data1.x.shape == (4, 1)


def test_batched_padded_and_list_agree_with_pyg_batching():
    torch.manual_seed(0)
    x = torch.randn(3, 6, 2)
    lengths = torch.tensor([6, 2, 4])
    data = sequence_to_data(x, lengths)
    seqs = [x[b, :int(n)] for b, n in enumerate(lengths)]
    from_list = sequence_to_data(seqs)
    collated = Batch.from_data_list([sequence_to_data(s) for s in seqs])
    for key in ("x", "edge_index", "t", "batch"):
        assert torch.equal(data[key], from_list[key]), key
        assert torch.equal(data[key], collated[key]), key
    assert data.t.tolist() == [0, 1, 2, 3, 4, 5, 0, 1, 0, 1, 2, 3]
    assert data.edge_index.size(1) == int(lengths.sum()) - 3
    assert bool((data.batch[data.edge_index[0]] == data.batch[data.edge_index[1]]).all())
    # without lengths every sequence is full
    assert sequence_to_data(x).num_nodes == 18


def test_data_to_sequence_inverts():
    torch.manual_seed(1)
    x = torch.randn(4, 5, 3, dtype=torch.float64)
    lengths = torch.tensor([1, 5, 3, 2])
    padded, lens = data_to_sequence(sequence_to_data(x, lengths))
    assert torch.equal(lens, lengths)
    mask = torch.arange(5).view(1, -1) < lengths.view(-1, 1)
    assert torch.equal(padded, x * mask.unsqueeze(-1))
    single, lens1 = data_to_sequence(sequence_to_data(x[1]))
    assert torch.equal(single[0], x[1]) and lens1.tolist() == [5]
    # any node attribute, e.g. the time stamps
    t, _ = data_to_sequence(sequence_to_data(x, lengths), key="t")
    assert t.shape == (4, 5)


def test_sequence_layout():
    data = sequence_to_data([torch.randn(3, 1), torch.randn(1, 1), torch.randn(2, 1)])
    lay = sequence_layout(data.edge_index, data.num_nodes)
    assert isinstance(lay, SequenceLayout)
    assert lay.seq.tolist() == [0, 0, 0, 1, 2, 2]
    assert lay.pos.tolist() == [0, 1, 2, 0, 0, 1]
    assert lay.lengths.tolist() == [3, 1, 2]
    assert lay.start.tolist() == [0, 3, 4]
    assert lay.last.tolist() == [2, 3, 5]
    assert (lay.num_sequences, lay.max_length) == (3, 3)
    # the edge order does not matter
    perm = torch.randperm(data.edge_index.size(1))
    lay2 = sequence_layout(data.edge_index[:, perm], data.num_nodes)
    assert torch.equal(lay2.pos, lay.pos) and torch.equal(lay2.seq, lay.seq)


def test_time_warping_and_step_sizes():
    torch.manual_seed(2)
    data = sequence_to_data([torch.randn(4, 2), torch.randn(3, 2)])
    assert torch.equal(warp_step_sizes(data.t, data.edge_index),
                       torch.ones(7, dtype=torch.get_default_dtype()))
    counts = torch.tensor([2, 1, 3, 1, 1, 2, 2])
    warped = TimeWarping(3).act(counts, data)
    # the warp keeps the original clock in 't' and each sequence's path graph
    assert warped.t.tolist() == [0, 0, 1, 2, 2, 2, 3, 0, 1, 1, 2, 2]
    padded, lens = data_to_sequence(warped)
    assert lens.tolist() == [7, 5]
    assert torch.equal(padded[0], data.x[:4].repeat_interleave(counts[:4], dim=0))
    dt = warp_step_sizes(warped.t, warped.edge_index)
    assert torch.allclose(dt, 1.0 / counts.repeat_interleave(counts).float())
    assert warp_step_sizes(warped.t, warped.edge_index, dtype=torch.float64).dtype == \
        torch.float64
    # the durations of each sequence add up to its unwarped length
    lay = sequence_layout(warped.edge_index, warped.num_nodes)
    total = torch.zeros(2).index_add_(0, lay.seq, dt)
    assert torch.allclose(total, torch.tensor([4.0, 3.0]))
    # equal time stamps in two adjacent sequences are not one run
    two = sequence_to_data([torch.randn(1, 1), torch.randn(1, 1)])
    assert warp_step_sizes(two.t, two.edge_index).tolist() == [1.0, 1.0]


def test_errors():
    with pytest.raises(TypeError, match="torch.Tensor"):
        sequence_to_data([[1.0, 2.0]])
    with pytest.raises(TypeError, match="torch.Tensor or a list"):
        sequence_to_data("abc")
    with pytest.raises(ValueError, match="empty sequence"):
        sequence_to_data(torch.randn(0, 3))
    with pytest.raises(ValueError, match=r"\[T, C\]"):
        sequence_to_data(torch.randn(2, 3, 4, 5))
    with pytest.raises(ValueError, match="one number of channels"):
        sequence_to_data([torch.randn(2, 3), torch.randn(2, 4)])
    with pytest.raises(ValueError, match="lengths in 1..4"):
        sequence_to_data(torch.randn(2, 4, 1), lengths=[5, 1])
    with pytest.raises(ValueError, match="2 integers"):
        sequence_to_data(torch.randn(2, 4, 1), lengths=[3])
    with pytest.raises(ValueError, match="only with a padded"):
        sequence_to_data(torch.randn(4, 1), lengths=[3])
    with pytest.raises(ValueError, match="empty list"):
        sequence_to_data([])
    with pytest.raises(ValueError, match="consecutive nodes"):
        sequence_layout(torch.tensor([[0, 2], [1, 0]]), 3)
    with pytest.raises(ValueError, match=r"\[2, num_edges\]"):
        sequence_layout(torch.zeros(3, 2, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="tensor attribute 'h'"):
        data_to_sequence(sequence_to_data(torch.randn(3, 1)), key="h")
    with pytest.raises(ValueError, match="time stamps"):
        warp_step_sizes(torch.zeros(3, 2), torch.zeros(2, 0, dtype=torch.long))


def test_sequence_layout_validates_edge_index():
    # issue 9: a transposed / 3-row / float edge_index is rejected with the shared check
    data = sequence_to_data(torch.randn(5, 2))
    ei = data.edge_index
    with pytest.raises(ValueError, match=r"'sequence_layout'.*looks transposed"):
        sequence_layout(ei.t(), 5)
    with pytest.raises(ValueError, match=r"'sequence_layout'.*size 2 in the first dimension"):
        sequence_layout(torch.cat([ei, ei[:1]]), 5)
    with pytest.raises(ValueError, match=r"'sequence_layout'.*integer type"):
        sequence_layout(ei.float(), 5)
    with pytest.raises(TypeError, match=r"'sequence_layout'.*torch\.Tensor"):
        sequence_layout(ei.tolist(), 5)
    assert sequence_layout(ei, 5).num_sequences == 1
