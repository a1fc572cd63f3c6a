"""include.dag_params: one declaration per field gives the Param's schema, the validation and its messages."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from include.dag_params import airflow_params, check_fields, defaults, from_mapping, param, param_specs


@dataclass(frozen=True)
class Knobs:
    count: int = param(3, "How many.", minimum=1, maximum=10)
    rate: float = param(0.5, "How fast.", exclusive_minimum=0, exclusive_maximum=1)
    mode: str = param("a", "Which mode.", enum=("a", "b"))
    dry_run: bool = param(False, "Only print.")
    tags: tuple[str, ...] = param(("x",), "Labels.", items_enum=("x", "y"), min_items=1, unique_items=True)


def test_schema_type_comes_from_the_annotation():
    schemas = {name: spec.schema() for name, spec in param_specs(Knobs).items()}
    assert schemas == {
        "count": {"type": "integer", "minimum": 1, "maximum": 10},
        "rate": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        "mode": {"type": "string", "enum": ["a", "b"]},
        "dry_run": {"type": "boolean"},
        "tags": {
            "type": "array",
            "items": {"type": "string", "enum": ["x", "y"]},
            "minItems": 1,
            "uniqueItems": True,
        },
    }
    assert defaults(Knobs) == {"count": 3, "rate": 0.5, "mode": "a", "dry_run": False, "tags": ["x"]}


def test_airflow_params_carry_default_description_and_schema():
    params = airflow_params(Knobs)
    assert list(params) == ["count", "rate", "mode", "dry_run", "tags"]
    assert params["count"].value == 3 and params["count"].description == "How many."
    assert params["tags"].value == ["x"]  # JSON form of the tuple default
    assert params["rate"].schema == {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"count": 0}, "count must be an integer between 1 and 10, got 0"),
        ({"count": 2.0}, "count must be an integer between 1 and 10, got 2.0"),
        ({"rate": 1}, "rate must be a number greater than 0 and less than 1, got 1"),
        ({"rate": float("nan")}, "rate must be a number greater than 0 and less than 1, got nan"),
        ({"mode": "c"}, "mode must be one of 'a', 'b', got 'c'"),
        ({"dry_run": "yes"}, "dry_run must be true or false, got 'yes'"),
        ({"tags": []}, "tags must be a non-empty list of distinct values from x, y, got []"),
        ({"tags": ["z"]}, "tags has unknown value(s) 'z'; allowed values are x, y"),
        ({"tags": ["x", "x"]}, "tags lists a value more than once: ['x', 'x']"),
    ],
)
def test_check_fields_names_field_and_value(values, message):
    knobs = from_mapping(Knobs, values, "knob")
    with pytest.raises(ValueError) as info:
        check_fields(knobs)
    assert str(info.value) == message


def test_from_mapping_rejects_unknown_keys_and_non_mappings():
    with pytest.raises(
        ValueError, match=r"unknown knob parameter\(s\) 'speed'; known parameters are count, rate"
    ):
        from_mapping(Knobs, {"speed": 1}, "knob")
    with pytest.raises(ValueError, match="knob params must be a mapping of names to values, got 3"):
        from_mapping(Knobs, 3, "knob")
    assert from_mapping(Knobs, None, "knob") == Knobs()
    assert from_mapping(Knobs, {"tags": ["y"]}, "knob").tags == ("y",)


def test_a_field_without_a_declaration_or_a_bad_default_is_refused():
    @dataclass(frozen=True)
    class Undeclared:
        plain: int = 3

    with pytest.raises(TypeError, match="Undeclared.plain is not declared with include.dag_params.param"):
        param_specs(Undeclared)

    @dataclass(frozen=True)
    class BadDefault:
        n: int = param(0, "n", minimum=1)

    with pytest.raises(ValueError, match="n must be an integer at least 1, got 0"):
        param_specs(BadDefault)

    @dataclass(frozen=True)
    class NoJsonType:
        when: dict = field(default=None, metadata={"dag_param": {"description": "x"}})

    with pytest.raises(TypeError, match="no JSON-schema type"):
        param_specs(NoJsonType)
