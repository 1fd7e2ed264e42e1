import pytest
import torch
from conftest import torch_threads_restored


def test_thread_count_restored_after_a_script_changed_it():
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    with torch_threads_restored():
        torch.set_num_threads(other)
        assert torch.get_num_threads() == other
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), torch_threads_restored():  # also when it raises
        torch.set_num_threads(other)
        raise RuntimeError
    assert torch.get_num_threads() == before
