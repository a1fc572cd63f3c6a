"""Typed params declared once: a dataclass field carries its default, bounds, enum and description, and both the
DAG's ``Param``s (the UI trigger form, ``airflow dags trigger --conf``) and the code's validation come from it.

    @dataclass(frozen=True)
    class ProducerParams:
        users: int = param(10_000, "How many simulated users.", minimum=1, maximum=1_000_000)

    DAG(..., params=airflow_params(ProducerParams))           # Param(10000, type="integer", minimum=1, ...)
    from_mapping(ProducerParams, conf, "producer")             # unknown keys rejected by name
    check_fields(instance)                                     # ValueError naming the field and the value

The JSON-schema type comes from the field's annotation (``int`` → integer, ``float`` → number, ``bool`` →
boolean, ``str`` → string, ``tuple[str, ...]`` → array). Rules that span fields (e.g. a rate bounded by a
count) cannot be expressed in a Param's schema; the params class checks them after :func:`check_fields`.
This module does not import Airflow until :func:`airflow_params` is called, so code outside DAGs can use it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_META_KEY = "dag_param"


@dataclass(frozen=True)
class ParamSpec:
    """One field's contract: JSON-schema type, JSON default, description and the rules both sides enforce."""

    name: str
    type: str
    default: Any
    description: str
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    exclusive_maximum: float | None = None
    enum: tuple[Any, ...] | None = None
    items_type: str | None = None
    items_enum: tuple[Any, ...] | None = None
    min_items: int | None = None
    unique_items: bool = False

    def schema(self) -> dict[str, Any]:
        """The JSON schema Airflow validates a trigger's value against (``Param(**schema)``)."""
        out: dict[str, Any] = {"type": self.type}
        for key, value in (
            ("minimum", self.minimum),
            ("maximum", self.maximum),
            ("exclusiveMinimum", self.exclusive_minimum),
            ("exclusiveMaximum", self.exclusive_maximum),
        ):
            if value is not None:
                out[key] = value
        if self.enum is not None:
            out["enum"] = list(self.enum)
        if self.type == "array":
            items: dict[str, Any] = {"type": self.items_type}
            if self.items_enum is not None:
                items["enum"] = list(self.items_enum)
            out["items"] = items
            if self.min_items is not None:
                out["minItems"] = self.min_items
            if self.unique_items:
                out["uniqueItems"] = True
        return out

    def requirement(self) -> str:
        """What a valid value is, in words: "an integer between 1 and 1000000"."""
        if self.enum is not None:
            return "one of " + ", ".join(repr(v) for v in self.enum)
        if self.type == "boolean":
            return "true or false"
        if self.type == "array":
            noun = "non-empty list" if self.min_items else "list"
            distinct = " of distinct values" if self.unique_items else ""
            allowed = f" from {', '.join(map(str, self.items_enum))}" if self.items_enum else ""
            return f"a {noun}{distinct}{allowed}"
        kind = {"integer": "an integer", "number": "a number", "string": "a string"}[self.type]
        return f"{kind}{self._range_words()}"

    def _range_words(self) -> str:
        if self.minimum is not None and self.maximum is not None:
            return f" between {_number(self.minimum)} and {_number(self.maximum)}"
        words = []
        if self.minimum is not None:
            words.append(f"at least {_number(self.minimum)}")
        if self.exclusive_minimum is not None:
            words.append(f"greater than {_number(self.exclusive_minimum)}")
        if self.maximum is not None:
            words.append(f"at most {_number(self.maximum)}")
        if self.exclusive_maximum is not None:
            words.append(f"less than {_number(self.exclusive_maximum)}")
        return (" " + " and ".join(words)) if words else ""

    def check(self, value: Any) -> None:
        """Raise ValueError naming the field and the value when ``value`` breaks this spec."""
        if not self._accepts(value):
            raise ValueError(f"{self.name} must be {self.requirement()}, got {value!r}")
        if self.type == "array":
            if self.items_enum is not None:
                bad = [v for v in value if v not in self.items_enum]
                if bad:
                    raise ValueError(
                        f"{self.name} has unknown value(s) {', '.join(repr(v) for v in bad)}; "
                        f"allowed values are {', '.join(map(str, self.items_enum))}"
                    )
            if self.unique_items and len(set(value)) != len(value):
                raise ValueError(f"{self.name} lists a value more than once: {list(value)!r}")

    def _accepts(self, value: Any) -> bool:
        if self.enum is not None:
            return _is_type(value, self.type) and value in self.enum
        if not _is_type(value, self.type):
            return False
        if self.type in ("integer", "number"):
            return (
                (self.minimum is None or value >= self.minimum)
                and (self.maximum is None or value <= self.maximum)
                and (self.exclusive_minimum is None or value > self.exclusive_minimum)
                and (self.exclusive_maximum is None or value < self.exclusive_maximum)
            )
        if self.type == "array":
            return all(_is_type(v, self.items_type) for v in value) and len(value) >= (self.min_items or 0)
        return True


def param(
    default: Any,
    description: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: float | None = None,
    exclusive_maximum: float | None = None,
    enum: tuple[Any, ...] | None = None,
    items_enum: tuple[Any, ...] | None = None,
    min_items: int | None = None,
    unique_items: bool = False,
) -> Any:
    """A dataclass field with the given default whose metadata holds the Param's rules and help text."""
    rules = {
        "description": description,
        "minimum": minimum,
        "maximum": maximum,
        "exclusive_minimum": exclusive_minimum,
        "exclusive_maximum": exclusive_maximum,
        "enum": tuple(enum) if enum is not None else None,
        "items_enum": tuple(items_enum) if items_enum is not None else None,
        "min_items": min_items,
        "unique_items": unique_items,
    }
    return dataclasses.field(default=default, metadata={_META_KEY: rules})


@functools.cache
def param_specs(cls: type) -> dict[str, ParamSpec]:
    """Every field of ``cls`` declared with :func:`param`, in declaration order (the result is shared:
    do not mutate it)."""
    hints = typing.get_type_hints(cls)
    specs = {}
    for f in dataclasses.fields(cls):
        rules = f.metadata.get(_META_KEY)
        if rules is None:
            raise TypeError(f"{cls.__name__}.{f.name} is not declared with include.dag_params.param()")
        json_type, items_type = _json_type(hints[f.name], f"{cls.__name__}.{f.name}")
        spec = ParamSpec(
            name=f.name, type=json_type, default=_json(f.default), items_type=items_type, **rules
        )
        spec.check(f.default if not isinstance(f.default, tuple) else list(f.default))
        specs[f.name] = spec
    return specs


def defaults(cls: type) -> dict[str, Any]:
    """The JSON form of every default (what a trigger without conf runs with)."""
    return {name: spec.default for name, spec in param_specs(cls).items()}


def airflow_params(cls: type) -> dict[str, Any]:
    """``{name: Param(default, description=..., type=..., minimum=..., ...)}`` for a DAG's ``params``."""
    from airflow.sdk import Param

    return {
        name: Param(spec.default, description=spec.description, **spec.schema())
        for name, spec in param_specs(cls).items()
    }


def check_fields(instance: Any) -> None:
    """Check every field of a params instance against its spec (the first bad field raises ValueError)."""
    for name, spec in param_specs(type(instance)).items():
        value = getattr(instance, name)
        spec.check(list(value) if spec.type == "array" and isinstance(value, tuple) else value)


def from_mapping(cls: type, values: Mapping[str, Any] | None, label: str) -> Any:
    """Build ``cls`` from a mapping (DAG params, JSON); unknown keys and non-mappings fail naming them.

    Lists become tuples for array fields so instances stay hashable. Field values are *not* checked here;
    call :func:`check_fields` (the params class's ``validate``) on the result.
    """
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ValueError(f"{label} params must be a mapping of names to values, got {values!r}")
    specs = param_specs(cls)
    unknown = sorted(str(k) for k in values if k not in specs)
    if unknown:
        raise ValueError(
            f"unknown {label} parameter(s) {', '.join(repr(k) for k in unknown)}; "
            f"known parameters are {', '.join(specs)}"
        )
    kwargs = {
        k: tuple(v) if specs[k].type == "array" and isinstance(v, list) else v for k, v in values.items()
    }
    return cls(**kwargs)


def _json_type(hint: Any, where: str) -> tuple[str, str | None]:
    simple = {bool: "boolean", int: "integer", float: "number", str: "string"}
    if hint in simple:
        return simple[hint], None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (tuple, list) and args and args[0] in simple:
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            raise TypeError(f"{where}: only tuple[T, ...] arrays are supported, got {hint!r}")
        return "array", simple[args[0]]
    raise TypeError(f"{where}: no JSON-schema type for annotation {hint!r}")


def _is_type(value: Any, json_type: str | None) -> bool:
    if json_type == "boolean":
        return isinstance(value, bool)
    if json_type == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if json_type == "number":
        # NaN and infinity would poison every comparison
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if json_type == "string":
        return isinstance(value, str)
    if json_type == "array":
        return isinstance(value, list | tuple)
    return False


def _json(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _number(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(value)
