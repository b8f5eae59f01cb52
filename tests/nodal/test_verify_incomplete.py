"""`verify` never reports what ngspice did not compute.

The stiff netlist below (a 50 V pulse with 1 fs edges through 10 ohm into a diode clipper)
makes ngspice stop with "Timestep too small" at the pulse edge (t = 1 ms) at the reference
tolerances; it still writes the points it reached. The old reader held the last point to the
end and `verify` reported an ESR against it. Now the short run raises `IncompleteTransient`,
and `spice.reference` reruns it once at ngspice's default accuracy with the gear method, saying
so; the rerun is checked against the diode law.
"""

import math
import subprocess

import numpy as np
import pytest

from nodal import netlist, spice
from nodal.spice import IncompleteTransient

pytestmark = pytest.mark.skipif(not spice.available(), reason="needs ngspice")

FS = 48000.0
STIFF = """* a supply pulse with femtosecond edges into a diode clipper: stiff at the edge
*@ input Vin
*@ output out
.model DX D(IS=2.52n N=1.752)
Vin in 0 0
Vp p 0 PULSE(0 50 1m 1f 1f 1m 2m)
R1 in out 2.2k
R2 p out 10
C1 out 0 10p
D1 out 0 DX
D2 0 out DX
.end
"""
N_SAMPLES = 87                 # 1.8 ms: past the edge at 1 ms, before the fall at 2 ms


@pytest.fixture(scope="module")
def stiff():
    return netlist.parse(STIFF, "stiff.cir")


def _raw_as_ngspice_writes_it(net, tmp_path):
    raw = str(tmp_path / "out.raw")
    x = np.zeros(N_SAMPLES)
    text = spice.deck(net, {"vin": x}, FS, N_SAMPLES, raw, folder=str(tmp_path))
    (tmp_path / "deck.cir").write_text(text)
    proc = subprocess.run(["ngspice", "-b", "deck.cir"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    return spice.read_raw(raw), proc.stdout + proc.stderr


def test_ngspice_stops_short_yet_writes_points_the_old_reader_turned_into_numbers(stiff,
                                                                                  tmp_path):
    (names, data), output = _raw_as_ngspice_writes_it(stiff, tmp_path)
    stop = (N_SAMPLES - 1) / FS
    assert "timestep too small" in output.lower()
    assert data[-1, 0] < 0.6 * stop                      # it stopped at the 1 ms edge
    # what the old `simulate` returned: the column interpolated (held) to the sample times,
    # finite, with nothing to tell it from a result
    held = np.interp(np.arange(N_SAMPLES) / FS, data[:, 0], data[:, names.index("v(out)")])
    assert np.all(np.isfinite(held)) and len(held) == N_SAMPLES


def test_simulate_raises_incomplete_transient_naming_where_it_stopped(stiff):
    with pytest.raises(IncompleteTransient) as info:
        spice.simulate(stiff, {"vin": np.zeros(N_SAMPLES)}, FS)
    err = info.value
    assert err.reached == pytest.approx(1e-3, rel=1e-3)
    assert err.stop == pytest.approx((N_SAMPLES - 1) / FS)
    assert "timestep too small" in str(err).lower() and "stiff.cir" in str(err)


def test_reference_reruns_looser_says_so_and_follows_the_diode_law(stiff):
    result = spice.reference(stiff, {"vin": np.zeros(N_SAMPLES)}, FS)
    assert "reltol=0.001" in result.note and "method=gear" in result.note
    assert result.options == spice.RETRY_OPTIONS
    out = result.voltage("out")
    t = np.arange(N_SAMPLES) / FS
    assert np.max(np.abs(out[t < 0.95e-3])) < 1e-6          # no pulse yet: nothing drives it
    # on the pulse: D1 carries (50 - v)/10 - v/2.2k; v = N Vt ln(1 + I/IS) (RS = 0)
    vt = 1.380649e-23 * 300.15 / 1.602176634e-19
    v = 1.0
    for _ in range(50):
        v = 1.752 * vt * math.log1p(((50 - v) / 10 - v / 2200) / 2.52e-9)
    late = out[t > 1.2e-3]
    assert np.all(np.abs(late - v) < 2e-3 * v)


def test_reference_raises_when_the_rerun_stops_short_too(stiff, monkeypatch):
    monkeypatch.setattr(spice, "RETRY_OPTIONS", dict(spice.REFERENCE_OPTIONS))
    with pytest.raises(IncompleteTransient, match="at the reference tolerances"):
        spice.reference(stiff, {"vin": np.zeros(N_SAMPLES)}, FS)


def test_a_raw_file_cut_short_is_named(tmp_path, stiff):
    spice.simulate(netlist.parse(STIFF.replace("1f 1f", "10u 10u"), "soft.cir"),
                   {"vin": np.zeros(N_SAMPLES)}, FS)          # the soft edge runs through
    (names, data), _ = _raw_as_ngspice_writes_it(stiff, tmp_path)
    blob = (tmp_path / "out.raw").read_bytes()
    (tmp_path / "cut.raw").write_bytes(blob[:-8 * len(names) - 3])
    with pytest.raises(spice.NgspiceError, match="cut short"):
        spice.read_raw(tmp_path / "cut.raw")


def test_verify_rows_carry_the_note_and_finite_figures(stiff):
    from nodal.mna import check_solvable, derive
    from nodal.verify import agreement

    eq = derive(stiff)
    check_solvable(eq)
    row = agreement(eq, np.zeros(N_SAMPLES), "zeros", FS, oversample=1)
    assert "method=gear" in row.note
    assert math.isfinite(row.output_esr) and row.output_esr < 1e-3
