import os

import torch

# One thread: the suite runs on 2 cores beside other work; it also keeps timings honest.
torch.set_num_threads(1)
os.environ.setdefault("NUMBA_NUM_THREADS", "1")
