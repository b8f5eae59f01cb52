import os

import pytest
import torch

# One thread: the suite runs on 2 cores beside other work; it also keeps timings honest.
torch.set_num_threads(1)
os.environ.setdefault("NUMBA_NUM_THREADS", "1")


@pytest.fixture(scope="session", autouse=True)
def shared_cache(tmp_path_factory):
    """One cache folder for the whole run (kernels, derived equations, datasets), shared by
    the pytest-xdist workers: a kernel one worker compiled, the other loads from disk. Never
    the user's own cache."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder = root / "nodalnet-cache"
    folder.mkdir(exist_ok=True)
    os.environ["NODALNET_CACHE"] = str(folder)
    return folder
