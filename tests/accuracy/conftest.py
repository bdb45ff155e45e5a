import pytest
import torch


@pytest.fixture(autouse=True)
def one_cpu_thread():
    """The probing models are tiny: one intra-op thread is several times faster than two on a
    shared 2-core machine (and leaves the other core to the rest of the suite)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
