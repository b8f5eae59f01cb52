"""Reading and writing signals: WAV in (volts = sample values), `.npy`/`.wav` out, atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import soundfile

from .errors import SignalError


def read_wav(path: str | Path, gain: float = 1.0) -> tuple[np.ndarray, float]:
    """A mono WAV file -> (volts [time] float64, sample rate in Hz). Sample values are volts."""
    path = Path(path)
    if not path.is_file():
        raise SignalError(f"{path}: no such file")
    try:
        data, rate = soundfile.read(str(path), dtype="float64", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as exc:
        raise SignalError(f"{path}: not a readable audio file ({exc})") from None
    if data.shape[1] != 1:
        raise SignalError(f"{path}: has {data.shape[1]} channels; nodalnet drives one input "
                          "source per file: give a mono file (mix down or split the channels)")
    if data.shape[0] == 0:
        raise SignalError(f"{path}: is empty")
    x = data[:, 0] * gain
    if not np.all(np.isfinite(x)):
        bad = int(np.argmax(~np.isfinite(x)))
        raise SignalError(f"{path}: contains NaN or infinite samples (first at sample {bad})")
    return x, float(rate)


def read_signal(path: str | Path, gain: float = 1.0) -> tuple[np.ndarray, float | None]:
    """A `.wav` (with its rate) or a `.npy` [time] of volts (rate None: the caller's)."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        if not path.is_file():
            raise SignalError(f"{path}: no such file")
        x = np.load(path).astype(np.float64)
        if x.ndim != 1:
            raise SignalError(f"{path}: a .npy signal must be one-dimensional [time], got "
                              f"shape {x.shape}")
        if not np.all(np.isfinite(x)):
            raise SignalError(f"{path}: contains NaN or infinite samples")
        return x * gain, None
    return read_wav(path, gain)


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes files private; outputs are for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_signal(path: str | Path, x: np.ndarray, sample_rate: float,
                 normalize: bool = False) -> None:
    """`.npy`: float64 volts as given; `.wav`: float32 volts (or peak-normalised for listening)."""
    path = Path(path)
    x = np.asarray(x, dtype=np.float64)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        _atomic(path, lambda tmp: np.save(tmp, x))
    elif suffix == ".wav":
        y = x
        if normalize:
            peak = np.max(np.abs(y)) if y.size else 0.0
            y = y / peak * 0.99 if peak > 0 else y
        _atomic(path, lambda tmp: soundfile.write(tmp, y.astype(np.float32), int(sample_rate),
                                                   subtype="FLOAT", format="WAV"))
    else:
        raise SignalError(f"{path}: write .npy (float64 volts) or .wav (float32)")
