"""One reader of NODALNET_CACHE (`nodal.files.cache_dir`) for the kernels and the datasets
(the datasets' side: tests/nets/test_data.py)."""

from __future__ import annotations

from pathlib import Path

from nodal import fast
from nodal.files import cache_dir

def test_each_kind_is_a_subfolder_of_nodalnet_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NODALNET_CACHE", str(tmp_path))
    assert cache_dir("datasets") == tmp_path / "datasets"
    assert fast.cache_folder() == tmp_path / "kernels"


def test_without_nodalnet_cache_it_is_under_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.delenv("NODALNET_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir("kernels") == tmp_path / "nodalnet" / "kernels"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir("datasets") == Path.home() / ".cache" / "nodalnet" / "datasets"


def test_an_empty_nodalnet_cache_switches_disk_caches_off(monkeypatch):
    monkeypatch.setenv("NODALNET_CACHE", "")
    assert cache_dir("datasets") is None
    assert fast.cache_folder() is None
