import os
import sys
from pathlib import Path

# Before torch starts OpenMP: on shared 2-core machines its default spin-waiting makes each parallel region
# wait for a time slice whenever another process holds the other core (a 135M-parameter int4 decode step:
# 17 ms with PASSIVE, 1.9 s without); PASSIVE threads sleep instead.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tests never reach the network
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
torch.set_num_threads(min(2, os.cpu_count() or 1))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: loads a real pretrained file and runs transformers on it (tens of "
                                       "seconds); CI runs them, `-m 'not slow'` skips them")
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU; skipped where torch.cuda.is_available() is False")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
