"""Firehose S3 prefix expressions (``!{namespace:value}``) and the Java date patterns they may contain.

Firehose evaluates ``!{timestamp:<DateTimeFormatter pattern>}`` with the arrival time of the oldest record in
the object, ``!{firehose:random-string}`` once per object, ``!{firehose:error-output-type}`` with the reason
records failed, and ``!{partitionKeyFromQuery:<key>}`` with the keys the MetadataExtraction (jq) processor
produced. A prefix without any expression gets the default ``yyyy/MM/dd/HH/`` layout appended.
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

EXPRESSION_RE = re.compile(r"!\{([^{}:]*):([^{}]*)\}")
NAMESPACES = ("firehose", "timestamp", "partitionKeyFromQuery", "partitionKeyFromLambda")
FIREHOSE_VALUES = ("random-string", "error-output-type")
DEFAULT_TIME_LAYOUT = "yyyy/MM/dd/HH/"
_RANDOM_ALPHABET = string.ascii_letters + string.digits

_MONTHS = ("January February March April May June July August September October November December").split()
_DAYS = ("Monday Tuesday Wednesday Thursday Friday Saturday Sunday").split()


class PrefixError(ValueError):
    """A prefix or date pattern Firehose would reject; the message names the offending text."""


def java_date_formatter(pattern: str) -> Callable[[datetime], str]:
    """Compile a Java ``DateTimeFormatter`` pattern (the subset Firehose prefixes use) into a formatter.

    Letters y/u M/L d D H h k K m s S a E are supported; text in single quotes is literal ('' is a quote).
    Anything else that Java treats as a pattern letter raises :class:`PrefixError`, so a typo fails at
    CreateDeliveryStream instead of producing odd keys.
    """
    pieces: list[Callable[[datetime], str] | str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "'":
            end = i + 1
            literal = []
            while True:
                if end >= len(pattern):
                    raise PrefixError(f"unterminated quote in date pattern {pattern!r}")
                if pattern[end] == "'":
                    if end + 1 < len(pattern) and pattern[end + 1] == "'":
                        literal.append("'")
                        end += 2
                        continue
                    break
                literal.append(pattern[end])
                end += 1
            pieces.append("".join(literal) if literal or end > i + 1 else "'")
            i = end + 1
            continue
        if ch in "[]{}#":
            raise PrefixError(f"date pattern {pattern!r} uses the reserved character {ch!r}")
        if not ch.isascii() or not ch.isalpha():
            pieces.append(ch)
            i += 1
            continue
        run = 1
        while i + run < len(pattern) and pattern[i + run] == ch:
            run += 1
        pieces.append(_field(ch, run, pattern))
        i += run

    def render(when: datetime) -> str:
        return "".join(p if isinstance(p, str) else p(when) for p in pieces)

    return render


def _field(letter: str, count: int, pattern: str) -> Callable[[datetime], str]:
    def number(get: Callable[[datetime], int], max_width: int = 2) -> Callable[[datetime], str]:
        if count > max_width:
            raise PrefixError(f"too many pattern letters {letter * count!r} in date pattern {pattern!r}")
        return lambda d: str(get(d)).zfill(count)

    if letter in "yu":
        if count == 2:
            return lambda d: f"{d.year % 100:02d}"
        return lambda d: str(d.year).zfill(count)
    if letter in "ML":
        if count <= 2:
            return number(lambda d: d.month)
        if count == 3:
            return lambda d: _MONTHS[d.month - 1][:3]
        if count == 4:
            return lambda d: _MONTHS[d.month - 1]
        raise PrefixError(f"too many pattern letters {letter * count!r} in date pattern {pattern!r}")
    if letter == "d":
        return number(lambda d: d.day)
    if letter == "D":
        return number(lambda d: d.timetuple().tm_yday, 3)
    if letter == "H":
        return number(lambda d: d.hour)
    if letter == "k":
        return number(lambda d: d.hour or 24)
    if letter == "K":
        return number(lambda d: d.hour % 12)
    if letter == "h":
        return number(lambda d: d.hour % 12 or 12)
    if letter == "m":
        return number(lambda d: d.minute)
    if letter == "s":
        return number(lambda d: d.second)
    if letter == "S":
        if count > 9:
            raise PrefixError(f"too many pattern letters {letter * count!r} in date pattern {pattern!r}")
        return lambda d: f"{d.microsecond:06d}000"[:count]
    if letter == "a":
        if count != 1:
            raise PrefixError(f"too many pattern letters {letter * count!r} in date pattern {pattern!r}")
        return lambda d: "AM" if d.hour < 12 else "PM"
    if letter == "E":
        if count <= 3:
            return lambda d: _DAYS[d.weekday()][:3]
        if count == 4:
            return lambda d: _DAYS[d.weekday()]
        raise PrefixError(f"too many pattern letters {letter * count!r} in date pattern {pattern!r}")
    raise PrefixError(f"unsupported pattern letter {letter!r} in date pattern {pattern!r}")


@dataclass(frozen=True)
class Expression:
    namespace: str
    value: str

    def __str__(self) -> str:
        return f"!{{{self.namespace}:{self.value}}}"


class PrefixTemplate:
    """A parsed Prefix or ErrorOutputPrefix; :meth:`render` evaluates it for one S3 object."""

    def __init__(self, text: str, *, role: str, error_prefix: bool = False):
        self.text = text
        self.role = role
        self.error_prefix = error_prefix
        self.parts: list[str | Expression] = []
        self._formatters: dict[str, Callable[[datetime], str]] = {}
        pos = 0
        for match in EXPRESSION_RE.finditer(text):
            self._literal(text[pos : match.start()])
            namespace, value = match.group(1).strip(), match.group(2).strip()
            self._check(namespace, value, match.group(0))
            self.parts.append(Expression(namespace, value))
            pos = match.end()
        self._literal(text[pos:])
        self.has_expressions = any(isinstance(p, Expression) for p in self.parts)
        if not self.has_expressions:
            # Firehose appends its default layout to a prefix without expressions.
            if error_prefix:
                self.parts.append(Expression("firehose", "error-output-type"))
                self.parts.append("/")
            self._check("timestamp", DEFAULT_TIME_LAYOUT, DEFAULT_TIME_LAYOUT)
            self.parts.append(Expression("timestamp", DEFAULT_TIME_LAYOUT))

    def _literal(self, chunk: str) -> None:
        if "!{" in chunk:
            bad = chunk[chunk.index("!{") :][:60]
            raise PrefixError(
                f"{self.role} {self.text!r} contains a malformed expression near {bad!r}; "
                "expressions look like !{namespace:value}"
            )
        if chunk:
            self.parts.append(chunk)

    def _check(self, namespace: str, value: str, raw: str) -> None:
        if namespace not in NAMESPACES:
            raise PrefixError(
                f"{self.role} {self.text!r}: unknown namespace {namespace!r} in {raw!r} "
                f"(valid: {', '.join(NAMESPACES)})"
            )
        if not value:
            raise PrefixError(f"{self.role} {self.text!r}: expression {raw!r} has an empty value")
        if namespace == "firehose":
            if value not in FIREHOSE_VALUES:
                raise PrefixError(
                    f"{self.role} {self.text!r}: {raw!r} is not a firehose expression "
                    f"(valid: {', '.join(FIREHOSE_VALUES)})"
                )
            if value == "error-output-type" and not self.error_prefix:
                raise PrefixError(
                    f"{self.role} {self.text!r}: !{{firehose:error-output-type}} is only allowed in "
                    "ErrorOutputPrefix"
                )
        elif namespace == "timestamp":
            try:
                self._formatters[value] = java_date_formatter(value)
            except PrefixError as exc:
                raise PrefixError(f"{self.role} {self.text!r}: {exc}") from None
        elif namespace in ("partitionKeyFromQuery", "partitionKeyFromLambda") and self.error_prefix:
            raise PrefixError(f"{self.role} {self.text!r}: {raw!r} is not allowed in ErrorOutputPrefix")

    @property
    def query_keys(self) -> tuple[str, ...]:
        """partitionKeyFromQuery keys, in order of first use."""
        seen: dict[str, None] = {}
        for p in self.parts:
            if isinstance(p, Expression) and p.namespace == "partitionKeyFromQuery":
                seen.setdefault(p.value)
        return tuple(seen)

    @property
    def lambda_keys(self) -> tuple[str, ...]:
        return tuple(
            p.value
            for p in self.parts
            if isinstance(p, Expression) and p.namespace == "partitionKeyFromLambda"
        )

    def uses(self, namespace: str, value: str | None = None) -> bool:
        return any(
            isinstance(p, Expression) and p.namespace == namespace and (value is None or p.value == value)
            for p in self.parts
        )

    def render(
        self,
        when: datetime,
        partition_keys: dict[str, str] | None = None,
        error_output_type: str | None = None,
    ) -> str:
        """Evaluate the prefix for one object; ``when``: the oldest record's arrival, in the stream's zone."""
        out: list[str] = []
        random_string: str | None = None
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            elif part.namespace == "timestamp":
                out.append(self._formatters[part.value](when))
            elif part.namespace == "firehose" and part.value == "random-string":
                if random_string is None:
                    random_string = "".join(secrets.choice(_RANDOM_ALPHABET) for _ in range(11))
                out.append(random_string)
            elif part.namespace == "firehose":
                if error_output_type is None:
                    raise PrefixError(f"{self.role} {self.text!r} needs an error-output-type to render")
                out.append(error_output_type)
            else:
                keys = partition_keys or {}
                if part.value not in keys:
                    raise PrefixError(
                        f"partition key {part.value!r} has no value for {self.role} {self.text!r}"
                    )
                out.append(keys[part.value])
        return "".join(out)
