"""Datasets: the material, disjoint splits, the cache, and bad audio refused by name."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch

import nets.data as data
from nets import AudioShapeMismatchError, SampleRateMismatchError
from nets.data import MaterialSpec, guitar_material


def test_guitar_material_is_seeded_starts_at_rest_and_stays_in_level():
    a = guitar_material(3.0, 48000, seed=1)
    b = guitar_material(3.0, 48000, seed=1)
    c = guitar_material(3.0, 48000, seed=2)
    assert a.shape == (144000,)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a[:48000], c[:48000])
    assert np.all(a[:2000] == 0)                # 50 ms of silence first: the circuit at rest
    assert 0.05 < np.max(np.abs(a)) < 2.2        # clip peaks in [0.05, 2] V (filter overshoot)


def test_splits_never_share_audio():
    spec = MaterialSpec(train_seconds=1.0, val_seconds=0.5, test_seconds=0.5, seed=0)
    parts = data.material(spec, 48000)
    for a, b in [("train", "val"), ("train", "test"), ("val", "test")]:
        n = min(len(parts[a]), len(parts[b]))
        x, y = parts[a][2400:n], parts[b][2400:n]
        assert abs(np.corrcoef(x, y)[0, 1]) < 0.2


def test_dataset_holds_the_solver_trajectory_and_is_cached(tiny_data, monkeypatch):
    assert tiny_data.train.u.shape == (1, 19200, 1)
    assert tiny_data.train.x.shape == (1, 19200, 1) and tiny_data.train.y.shape == (1, 19200, 1)
    # the diode clipper's output is its capacitor voltage
    torch.testing.assert_close(tiny_data.train.y, tiny_data.train.x)
    monkeypatch.setattr(data, "simulate_split", lambda *a, **k: pytest.fail("re-simulated"))
    again = data.dataset("diode_clipper", material_spec=tiny_data.material)
    torch.testing.assert_close(again.test.y, tiny_data.test.y, rtol=0, atol=0)


def test_segments_start_from_the_true_state_before_them(tiny_data):
    batch = next(tiny_data.segments(1000, 8, torch.Generator().manual_seed(0)))
    x = tiny_data.train.x[0, :, 0]
    for k in range(batch.u.shape[0]):
        (start,) = torch.nonzero(torch.all(
            tiny_data.train.u[0, :, 0].unfold(0, 1000, 1) == batch.u[k, :, 0], dim=1))[0]
        assert batch.x_prev[k, 0] == (x[start - 1] if start > 0 else tiny_data.train.x_init[0, 0])


def test_scaling_makes_states_unit_variance(tiny_data):
    s = tiny_data.scaling
    x = (tiny_data.train.x[0, :, 0].double() - s["x_mean"][0]) / s["x_std"][0]
    assert float(x.std()) == pytest.approx(1.0, rel=1e-6)


def test_stereo_wav_is_refused_by_name(tmp_path):
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.zeros((100, 2)), 48000)
    with pytest.raises(AudioShapeMismatchError, match="mono"):
        data.read_wav(path, 48000)


def test_wav_with_nan_is_refused_by_name(tmp_path):
    path = tmp_path / "nan.wav"
    signal = np.zeros(100)
    signal[10] = np.nan
    soundfile.write(path, signal, 48000, subtype="FLOAT")
    with pytest.raises(AudioShapeMismatchError, match="NaN"):
        data.read_wav(path, 48000)


def test_wav_at_another_rate_is_resampled_or_refused(tmp_path):
    path = tmp_path / "44k.wav"
    soundfile.write(path, 0.5 * np.sin(np.arange(4410) * 0.05), 44100, subtype="FLOAT")
    assert len(data.read_wav(path, 48000)) == 4800
    with pytest.raises(SampleRateMismatchError, match="44100"):
        data.read_wav(path, 48000, resample=False)


def test_user_wavs_make_contiguous_disjoint_splits(tmp_path):
    path = tmp_path / "take.wav"
    soundfile.write(path, 0.3 * np.sin(np.arange(48000) * 0.01), 48000, subtype="FLOAT")
    spec = MaterialSpec(train_seconds=8, val_seconds=1, test_seconds=1, wav=(str(path),))
    parts = data.material(spec, 48000)
    assert [len(parts[s]) for s in data.SPLITS] == [38400, 4800, 4800]


CACHE_TEST = MaterialSpec(train_seconds=0.05, val_seconds=0.02, test_seconds=0.02, seed=5)


def test_datasets_are_cached_in_their_folder_and_not_when_off(tmp_path, monkeypatch):
    """`nodal.files.cache_dir("datasets")`: NODALNET_CACHE/datasets, and off when it is empty."""
    monkeypatch.setenv("NODALNET_CACHE", str(tmp_path / "on"))
    first = data.dataset("rc_lowpass", material_spec=CACHE_TEST)
    files = list((tmp_path / "on" / "datasets").glob("rc_lowpass-*.npz"))
    assert len(files) == 1
    simulate = data.simulate_split
    monkeypatch.setattr(data, "simulate_split", lambda *a, **k: pytest.fail("re-simulated"))
    again = data.dataset("rc_lowpass", material_spec=CACHE_TEST)       # read back from the file
    assert again.test.y.equal(first.test.y)
    monkeypatch.setattr(data, "simulate_split", simulate)
    monkeypatch.setenv("NODALNET_CACHE", "")
    off = data.dataset("rc_lowpass", material_spec=CACHE_TEST)
    assert off.test.y.equal(first.test.y)
    assert list((tmp_path / "on" / "datasets").iterdir()) == files   # nothing new written
