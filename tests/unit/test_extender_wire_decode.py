"""Typed decoding (msgspec, straight from bytes) gives the request the JSON path gives, and
leaves every body it cannot take to the JSON path, whose errors name the field."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.wire import WireError, decode_extender_args, parse_extender_args
from tests.extender_helpers import GU, v1_pod

_names = st.lists(st.text(min_size=1, max_size=12), max_size=30)


@settings(max_examples=200, deadline=None)
@given(names=_names, name=st.text(min_size=1, max_size=20))
def test_typed_decode_equals_the_json_path(names: list[str], name: str) -> None:
    body = json.dumps({"Pod": v1_pod(name, ("a", GU, {"cpu": "1"})), "Nodes": None, "NodeNames": names})
    fast = decode_extender_args(body.encode())
    assert fast is not None
    assert fast == parse_extender_args(json.loads(body))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(
            {"pod": {}, "NodeNames": ["w1"]}, "ExtenderArgs: missing key 'Pod'", id="wrong-case-pod"
        ),
        pytest.param({"Pod": {}, "NodeNames": [1]}, "ExtenderArgs.NodeNames[0]", id="name-not-string"),
        pytest.param({"Pod": {}, "NodeNames": ["w1", ""]}, "ExtenderArgs.NodeNames[1]", id="empty-name"),
        pytest.param({"Pod": None, "NodeNames": ["w1"]}, "ExtenderArgs.Pod", id="null-pod"),
        pytest.param({"Pod": {}, "NodeNames": "w1"}, "ExtenderArgs.NodeNames", id="names-not-list"),
    ],
)
def test_bodies_the_typed_decoder_refuses_get_the_json_path_error(body: dict[str, Any], field: str) -> None:
    raw = json.dumps(body).encode()
    assert decode_extender_args(raw) is None
    with pytest.raises(WireError) as err:
        parse_extender_args(json.loads(raw))
    assert str(err.value).startswith(field.split(":")[0])
