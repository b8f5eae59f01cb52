"""Fuzzing in `make test`: mutated netlists, damaged WAV files, bad `--set` values and bad
`nodalnet simulate` arguments. Every case must end in a result with finite output or in a named
error (one red line for a user), within its time bound; a failed CLI call writes nothing.

The long run (>= 10,000 cases) is `python bench/fuzz.py --cases 10000 --jobs 2`.
"""

import collections
import warnings

import pytest

from bench.fuzz import make_case, run_case

CASES = 300


def test_every_fuzzed_input_is_a_result_or_a_named_error(tmp_path):
    texts = None
    bad = []
    counts = collections.Counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for seed in range(CASES):
            case = make_case(seed, texts)
            outcome, detail = run_case(case, tmp_path, seconds=20.0)
            counts[outcome] += 1
            if outcome not in ("result", "named"):
                bad.append(f"seed {seed}: {outcome}: {detail}")
    # Both kinds of ending must occur, or the generator has stopped reaching the solver.
    assert counts["result"] > 0 and counts["named"] > 0, counts
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("seed", [21, 42, 67, 167, 195, 241, 1369, 3224, 3263])
def test_fuzz_regressions(seed, tmp_path):
    """Seeds that once ended in a traceback, NaN output or a hang."""
    outcome, detail = run_case(make_case(seed), tmp_path, seconds=20.0)
    assert outcome in ("result", "named"), detail
