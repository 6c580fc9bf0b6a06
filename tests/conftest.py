import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tests never reach the network
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
torch.set_num_threads(min(2, os.cpu_count() or 1))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: loads a real pretrained file and runs transformers on it (tens of "
                                       "seconds); CI runs them, `-m 'not slow'` skips them")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
