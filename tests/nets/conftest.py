"""Shared fixtures: a tiny diode-clipper dataset, cached in a temporary folder."""

from __future__ import annotations

import pytest
import torch

from nets.data import MaterialSpec, dataset

TINY = MaterialSpec(train_seconds=0.4, val_seconds=0.05, test_seconds=0.05, seed=3)


@pytest.fixture(scope="session")
def cache_root(shared_cache):
    return shared_cache


@pytest.fixture(autouse=True)
def _cache_env(cache_root, monkeypatch):
    monkeypatch.setenv("NODALNET_CACHE", str(cache_root))


@pytest.fixture(scope="session")
def tiny_data(cache_root):
    import os
    os.environ["NODALNET_CACHE"] = str(cache_root)
    torch.set_num_threads(2)
    return dataset("diode_clipper", material_spec=TINY)


#: the Tube Screamer with its drive swept (tiny): 0.3 s of training at draws every 50 ms
KNOB_TINY = MaterialSpec(train_seconds=0.3, val_seconds=0.05, test_seconds=0.02, seed=3,
                         knobs=(("drive", 0.0, 1.0),), knob_block=0.05)


@pytest.fixture(scope="session")
def knob_data(cache_root):
    import os
    os.environ["NODALNET_CACHE"] = str(cache_root)
    return dataset("tube_screamer", material_spec=KNOB_TINY)
