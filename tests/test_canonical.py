"""pyward.canonical must produce exactly what json.dumps produces.

The report's hashes are computed over canonical JSON; anyone re-implementing
verification uses json.dumps(sort_keys=True, separators=(",", ":")), so the
two must agree byte for byte on everything pyward can serialise.
"""
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyward import canonical

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()  # includes surrogates, control characters, non-BMP
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=400)
@given(values)
def test_canonical_form_matches_json_dumps(value):
    expected = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    assert canonical.dumps(value) == expected


@settings(max_examples=200)
@given(values)
def test_indented_form_matches_json_dumps(value):
    assert canonical.dumps(value, sort_keys=False, indent=1) == json.dumps(value, indent=1, ensure_ascii=True)


@settings(max_examples=200)
@given(values)
def test_round_trip_through_json_loads_is_stable(value):
    text = canonical.dumps(value)
    assert canonical.dumps(json.loads(text)) == text


def test_tuples_serialise_as_lists():
    assert canonical.dumps({"a": (1, "x")}) == '{"a":[1,"x"]}'


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_are_refused(bad):
    with pytest.raises(ValueError):
        canonical.dumps({"x": bad})


@pytest.mark.parametrize("bad", [{1: "int key"}, {"x": object()}, {"x": b"bytes"}])
def test_unsupported_values_are_refused(bad):
    with pytest.raises(TypeError):
        canonical.dumps(bad)


@settings(max_examples=200)
@given(values, st.sampled_from([None, 1]))
def test_loads_reads_as_json_loads(value, indent):
    """What a Python child is handed is read without importing json: the same values as json.loads."""
    text = json.dumps(value, indent=indent, ensure_ascii=indent is None)
    assert canonical.dumps(canonical.loads(" " + text + "\n")) == canonical.dumps(json.loads(text))


@pytest.mark.parametrize("bad", ["", "{", "[1,]", "1 2", '{"a": 1}x', "{'a': 1}"])
def test_loads_refuses_what_is_not_json(bad):
    with pytest.raises(ValueError):
        json.loads(bad)
    with pytest.raises(ValueError):
        canonical.loads(bad)


def test_a_python_child_starts_without_json_re_or_enum(tmp_path):
    """python's own `-c` loads none of them; the sandbox armed in a child reads its payload without them."""
    import subprocess
    import sys

    from helpers import clean_env

    probe = "import sys; print(sorted({'json', 're', 'enum'} & set(sys.modules)))"
    program = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {probe!r}])"
    plain = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=clean_env())
    run = subprocess.run([sys.executable, "-m", "pyward", "run", "--no-report", "-c", program], cwd=tmp_path,
                         capture_output=True, text=True, env=clean_env(), timeout=60)
    assert plain.stdout == run.stdout == "[]\n", (plain, run.stderr)
