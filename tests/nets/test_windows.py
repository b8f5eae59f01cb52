"""The one parser of training windows: "inf", "0" (= inf) or an integer N >= 1."""

import json
import math

import pytest

from nets.errors import NetsError
from nets.windows import WindowError, format_window, parse_window, sort_key, to_config


@pytest.mark.parametrize("text, value", [("inf", math.inf), ("INF", math.inf), (" inf ", math.inf),
                                         ("0", math.inf), ("1", 1), ("16", 16), (" 1024", 1024),
                                         (0, math.inf), (7, 7), (math.inf, math.inf),
                                         (64.0, 64)])
def test_allowed_spellings(text, value):
    k = parse_window(text)
    assert k == value
    assert k is math.inf or type(k) is int


@pytest.mark.parametrize("window", [1, 2, 16, 1024, 10**9, math.inf])
def test_format_and_parse_round_trip(window):
    text = format_window(window)
    assert parse_window(text) == window
    assert format_window(parse_window(text)) == text
    assert parse_window(to_config(window)) == window      # through a run folder's config
    assert json.loads(json.dumps(to_config(window))) == to_config(window)   # strict JSON


def test_formats():
    assert format_window(math.inf) == "inf" and format_window(0) == "inf"
    assert format_window(16) == "16" and format_window("16") == "16"
    assert to_config(math.inf) == 0 and to_config("inf") == 0 and to_config(4) == 4


def test_sorting_puts_inf_last():
    assert sorted(["inf", "16", "1", "1024", "4"], key=sort_key) == ["1", "4", "16", "1024",
                                                                     "inf"]


@pytest.mark.parametrize("bad", ["abc", "-5", "1.5", "", "infinity", "1e3", "nan", "16 k", "+3",
                                 -1, 2.5, math.nan, -math.inf, True, None, [16]])
def test_bad_windows_are_named_with_the_allowed_values(bad):
    with pytest.raises(WindowError) as err:
        parse_window(bad, "--window")
    message = str(err.value)
    assert message.startswith("--window: ")
    assert repr(bad) in message or str(bad) in message
    assert '"inf", "0" (= inf, free-running) or an integer N >= 1' in message
    assert isinstance(err.value, NetsError) and isinstance(err.value, ValueError)


def test_run_folders_that_store_0_read_as_inf():
    """Run folders keep the integer their TrainConfig had (0 for inf): labels and evaluations
    read it through parse_window."""
    from pathlib import Path

    from nets import compare

    info = {"model": {"name": "gru-sm", "kwargs": {"hidden": 8}},
            "config": {"window": 0, "state_weight": 1.0, "seed": 2, "epochs": 1},
            "history": [{}]}
    assert compare.run_label(info) == "gru-sm k=inf seed=2"
    assert compare.run_meta(Path("r"), info)["window"] == math.inf
    info["config"]["window"] = 16
    assert compare.run_label(info) == "gru-sm k=16 seed=2"
    info["config"]["window"] = -3
    with pytest.raises(WindowError, match="r: config window"):
        compare.run_meta(Path("r"), info)


def test_study_jobs_keep_their_folder_names_and_train_settings():
    """A free-running job is still `...-kinf-...` (resumable studies find their runs) and
    trains with the TrainConfig's 0 and a segment of the model's default."""
    from nets import study

    quick = study.PROFILES["quick"]
    jobs = study.jobs("exposure-bias", quick)
    free = [j for j in jobs if j.window == math.inf]
    assert free and all("-kinf-" in j.name for j in free)
    settings = study._settings(free[0], quick)
    assert settings["window"] == 0 and settings["segment"] is None
    k16 = next(j for j in jobs if j.window == 16)
    assert "-k16-" in k16.name and study._settings(k16, quick)["window"] == 16
    # a profile written with the old 0 means the same jobs
    old = study.Profile(**{**quick.__dict__, "windows": (1, 16, 0)})
    assert study.jobs("exposure-bias", old) == jobs


def test_report_rows_and_json_spell_inf():
    from nodal.files import to_json

    assert to_json({"window": math.inf, "rtf": math.nan}) == \
        '{\n  "window": "inf",\n  "rtf": null\n}'
    rows = [{"model": "stn", "window": w, "esr": {"mean": e, "min": e, "max": e},
             "exposure_bias": {"mean": 1e3 * e, "min": 1e3 * e, "max": 1e3 * e}}
            for w, e in ((1, 1e-2), (16, 5e-3), ("inf", 1e-3))]   # as read back from JSON
    from nets import study
    b = study.verdict_exposure_bias(rows)["b"]["by_model"]["stn"]
    assert b["best window"] == "inf" and list(b["exposure_bias"]) == ["1", "16", "inf"]
