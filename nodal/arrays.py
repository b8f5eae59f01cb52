"""Tensors handed to numpy code (the compiled kernels): one conversion, used everywhere.

    as_numpy(t)                  t's values as a C-contiguous numpy array, detached, on the CPU
    as_numpy(t, torch.float64)   ... cast to float64 first
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def as_numpy(t: Tensor, dtype: torch.dtype | None = None) -> np.ndarray:
    """A C-contiguous numpy array of `t`'s values (detached from autograd, moved to the CPU,
    cast to `dtype` if given). It shares memory with `t` when no copy was needed."""
    t = t.detach()
    if dtype is not None:
        t = t.to(dtype)
    return np.ascontiguousarray(t.cpu().numpy())
