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
