from __future__ import annotations

import pytest

from include.producer import MALFORMED_KINDS, ProducerParams


def test_defaults_are_valid_and_round_trip():
    params = ProducerParams().validate()
    assert ProducerParams.from_dict(params.to_dict()) == params
    assert params.to_dict()["malformed_kinds"] == list(MALFORMED_KINDS)


def test_from_dict_accepts_json_values():
    params = ProducerParams.from_dict(
        {
            "seed": 3,
            "users": 500,
            "events_per_second": 4,
            "malformed_fraction": 0,
            "malformed_kinds": ["wrong_type"],
        }
    )
    assert params.events_per_second == 4
    assert params.malformed_kinds == ("wrong_type",)
    assert hash(params)  # usable as a cache key
    assert ProducerParams.from_dict(None) == ProducerParams()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"users": -3}, "users must be an integer between 1 and 1000000, got -3"),
        ({"users": 1_000_001}, "users must be an integer between 1 and 1000000, got 1000001"),
        ({"users": 10.0}, "users must be an integer between 1 and 1000000, got 10.0"),
        ({"users": True}, "users must be an integer between 1 and 1000000, got True"),
        ({"seed": -1}, "seed must be an integer between 0 and"),
        ({"seed": "x"}, "seed must be an integer between 0 and 9223372036854775807, got 'x'"),
        (
            {"events_per_second": 0},
            "events_per_second must be a number greater than 0 and at most 50000, got 0",
        ),
        ({"events_per_second": 60_000, "users": 1_000_000}, "got 60000"),
        ({"events_per_second": float("nan")}, "events_per_second must be a number greater than 0"),
        (
            {"events_per_second": "10"},
            "events_per_second must be a number greater than 0 and at most 50000, got '10'",
        ),
        ({"late_fraction": 1.5}, "late_fraction must be a number between 0 and 1, got 1.5"),
        ({"duplicate_fraction": -0.1}, "duplicate_fraction must be a number between 0 and 1, got -0.1"),
        ({"malformed_fraction": None}, "malformed_fraction must be a number between 0 and 1, got None"),
        ({"late_delay_seconds": 0}, "late_delay_seconds must be a number between 0.001 and 604800, got 0"),
        ({"resend_fraction": 2}, "resend_fraction must be a number between 0 and 1, got 2"),
        (
            {"resend_delay_seconds": -5},
            "resend_delay_seconds must be a number between 0.001 and 604800, got -5",
        ),
        (
            {"late_fraction": 0.6, "malformed_fraction": 0.5},
            "late_fraction + malformed_fraction must be at most 1",
        ),
        ({"malformed_kinds": []}, "malformed_kinds must be a non-empty list"),
        ({"malformed_kinds": "wrong_type"}, "malformed_kinds must be a non-empty list"),
        (
            {"malformed_kinds": ["wrong_type", "bogus"]},
            "malformed_kinds has unknown value(s) 'bogus'; allowed values are invalid_json",
        ),
        ({"malformed_kinds": ["wrong_type", "wrong_type"]}, "more than once"),
        (
            {"users": 1_000, "events_per_second": 100},
            "events_per_second=100 is too high for users=1000: a simulated user averages at most "
            "0.01 events/s, so use users >= 10000 or events_per_second <= 10",
        ),
    ],
)
def test_validation_names_field_and_value(values, message):
    with pytest.raises(ValueError) as info:
        ProducerParams.from_dict(values)
    assert message in str(info.value)


def test_unknown_keys_rejected_by_name():
    with pytest.raises(ValueError, match=r"unknown producer parameter\(s\) 'rate', 'user'; known parameters"):
        ProducerParams.from_dict({"user": 3, "rate": 4, "seed": 1})


def test_not_a_mapping():
    with pytest.raises(ValueError, match="must be a mapping"):
        ProducerParams.from_dict([("seed", 1)])


def test_coerce_validates_instances_too():
    with pytest.raises(ValueError, match="users must be"):
        ProducerParams.coerce(ProducerParams(users=0))
    assert ProducerParams.coerce({"seed": 2}).seed == 2
