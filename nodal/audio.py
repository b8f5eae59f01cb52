"""Reading and writing signals: WAV in (volts = sample values), `.npy`/`.wav` out, atomically.

Every input is checked before it is used: a file that is missing or unreadable, a WAV cut short
(its header promises more frames than the file holds; libsndfile would read the part that is
there without a word), more than one channel, no samples, NaN or infinite samples, a `.npy`
that is not one-dimensional real numbers: each is a `SignalError` naming the file.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import soundfile

from .errors import SignalError
from .files import OutputSet, atomic_write


def _open_check(path: Path) -> None:
    if not path.exists():
        raise SignalError(f"{path}: no such file")
    if not path.is_file():
        raise SignalError(f"{path}: is a folder, not a file")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise SignalError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def wav_shortfall(path: str | Path) -> tuple[int, int] | None:
    """(frames the header promises, frames the file holds) of a RIFF WAVE file whose data chunk
    runs past the end of the file; None if it is complete, streamed (size 0 or 0xFFFFFFFF in
    the header) or not a RIFF WAVE file."""
    path = Path(path)
    size = path.stat().st_size
    block = 1
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
            return None
        order = "<" if head[:4] == b"RIFF" else ">"
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            cid, length = struct.unpack(order + "4sI", f.read(8))
            fmt = f.read(14) if cid == b"fmt " and length >= 14 else b""
            if len(fmt) == 14:    # a fmt chunk cut short is left to soundfile to name
                block = max(1, struct.unpack(order + "H", fmt[12:14])[0])
            if cid == b"data":
                if length in (0, 0xFFFFFFFF):
                    return None
                have = size - pos - 8
                return (length // block, have // block) if have < length else None
            pos += 8 + length + (length & 1)
    return None


def read_wav(path: str | Path, gain: float = 1.0) -> tuple[np.ndarray, float]:
    """A mono WAV file -> (volts [time] float64, sample rate in Hz). Sample values are volts."""
    path = Path(path)
    _open_check(path)
    short = wav_shortfall(path)
    if short is not None:
        raise SignalError(f"{path}: truncated WAV: its header promises {short[0]} frames, the "
                          f"file holds {short[1]}; export or copy it again")
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


def read_npy(path: str | Path, gain: float = 1.0) -> np.ndarray:
    """A `.npy` of volts [time]: one-dimensional, real, finite, not empty."""
    path = Path(path)
    _open_check(path)
    try:
        x = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise SignalError(f"{path}: not a readable .npy array ({exc})") from None
    if not isinstance(x, np.ndarray) or x.dtype.kind not in "biuf":
        raise SignalError(f"{path}: holds {getattr(x, 'dtype', type(x).__name__)} values; "
                          "give real numbers (volts)")
    if x.ndim != 1:
        raise SignalError(f"{path}: a .npy signal must be one-dimensional [time], got "
                          f"shape {x.shape}")
    if x.shape[0] == 0:
        raise SignalError(f"{path}: is empty")
    x = x.astype(np.float64) * gain
    if not np.all(np.isfinite(x)):
        bad = int(np.argmax(~np.isfinite(x)))
        raise SignalError(f"{path}: contains NaN or infinite samples (first at sample {bad})")
    return x


def read_signal(path: str | Path, gain: float = 1.0) -> tuple[np.ndarray, float | None]:
    """A `.wav` (with its rate) or a `.npy` [time] of volts (rate None: the caller's)."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        return read_npy(path, gain), None
    return read_wav(path, gain)


def _wav_bytes(x: np.ndarray, sample_rate: float):
    if not float(sample_rate).is_integer() or sample_rate < 1:
        raise SignalError(f"a WAV file needs a whole number of Hz, not {sample_rate:g}: write "
                          ".npy, or give an integer rate")

    def write(f):
        soundfile.write(f, x.astype(np.float32), int(sample_rate), subtype="FLOAT", format="WAV")
    return write


def signal_writer(path: str | Path, x: np.ndarray, sample_rate: float,
                  normalize: bool = False):
    """The writer of one output file for `nodal.files` (checked now, before anything is
    written): `.npy` float64 volts as given; `.wav` float32 volts (or peak-normalised)."""
    path = Path(path)
    x = np.asarray(x, dtype=np.float64)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return lambda f: np.save(f, x)
    if suffix == ".wav":
        if normalize:
            peak = np.max(np.abs(x)) if x.size else 0.0
            x = x / peak * 0.99 if peak > 0 else x
        return _wav_bytes(x, sample_rate)
    raise SignalError(f"{path}: write .npy (float64 volts) or .wav (float32)")


def write_signal(path: str | Path, x: np.ndarray, sample_rate: float,
                 normalize: bool = False, outputs: OutputSet | None = None) -> None:
    """Write one signal atomically; with `outputs`, as part of that all-or-nothing set."""
    writer = signal_writer(path, x, sample_rate, normalize)
    if outputs is None:
        atomic_write(path, writer)
    else:
        outputs.write(path, writer)
