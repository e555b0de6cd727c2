"""A safe subset of Airtable's formula language, for ``filterByFormula``.

The controller finds its rows with formulas, so the simulator must filter the
way Airtable does instead of returning everything. This is a tokenizer and a
recursive-descent parser that builds closures; nothing is ever ``eval``-ed.

A syntax error, an unknown function, a wrong argument count or (when the table
has a declared schema) an unknown field raises :class:`FormulaError`, which the
simulator turns into 422 ``INVALID_FILTER_BY_FORMULA``. An error while
evaluating one record (e.g. a date function given text) makes the formula false
for that record, as Airtable's ``#ERROR!`` does.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

INVALID_PREFIX = "The formula for filtering records is invalid: "


class FormulaError(ValueError):
    """The formula cannot be accepted at all (Airtable answers 422)."""

    def __init__(self, detail: str = "Invalid formula. Please check your formula text.") -> None:
        super().__init__(INVALID_PREFIX + detail)
        self.detail = detail


class _EvalError(Exception):
    """Evaluation failed for one record; the record does not match."""


@dataclass(frozen=True)
class RecordView:
    """What a formula can see of one record."""

    id: str
    fields: Mapping[str, Any]
    created: datetime
    modified: datetime


@dataclass(frozen=True)
class _Ctx:
    record: RecordView
    now: datetime


_Node = Callable[[_Ctx], Any]


@dataclass(frozen=True)
class _Token:
    kind: str  # num, str, field, ident, op, end
    value: str
    pos: int


_OPS = ("<=", ">=", "!=", "<>", "=", "<", ">", "&", "+", "-", "*", "/", "(", ")", ",")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r"}
_NUMBER_RE = re.compile(r"\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?")
_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ISO_RE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch in "'\"{":
            close = "}" if ch == "{" else ch
            start, i = i, i + 1
            buf: list[str] = []
            while True:
                if i >= n:
                    raise FormulaError()
                c = text[i]
                if c == "\\" and i + 1 < n:
                    nxt = text[i + 1]
                    buf.append(_ESCAPES.get(nxt, nxt) if ch != "{" else nxt)
                    i += 2
                    continue
                if c == close:
                    i += 1
                    break
                buf.append(c)
                i += 1
            tokens.append(_Token("field" if ch == "{" else "str", "".join(buf), start))
            continue
        match = _NUMBER_RE.match(text, i)
        if match:
            tokens.append(_Token("num", match.group(), i))
            i = match.end()
            continue
        match = _IDENT_RE.match(text, i)
        if match:
            tokens.append(_Token("ident", match.group(), i))
            i = match.end()
            continue
        for op in _OPS:
            if text.startswith(op, i):
                tokens.append(_Token("op", "!=" if op == "<>" else op, i))
                i += len(op)
                break
        else:
            raise FormulaError()
    tokens.append(_Token("end", "", n))
    return tokens


# ---------------------------------------------------------------- coercions


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float)


def _fmt_num(v: float) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def iso(dt: datetime) -> str:
    """Airtable's datetime text: UTC with milliseconds and a Z."""
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _to_str(v: Any) -> str:
    if v is None:
        return ""
    if _is_num(v):
        return _fmt_num(v)
    if isinstance(v, datetime):
        return iso(v)
    if isinstance(v, list):
        return ", ".join(_to_str(x) for x in v)
    if isinstance(v, dict):
        return str(v.get("filename") or v.get("name") or v.get("url") or "")
    return str(v)


def _to_num(v: Any) -> float:
    if v is None:
        return 0.0
    if _is_num(v):
        return float(v)
    if isinstance(v, str):
        text = v.strip()
        if not text:
            return 0.0
        try:
            return float(text)
        except ValueError:
            raise _EvalError(f"not a number: {v!r}") from None
    raise _EvalError(f"not a number: {v!r}")


def parse_datetime(text: str) -> datetime:
    """Parse Airtable's ISO-8601 text (``Z`` or offset, or a bare date) as an aware datetime."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    dt = datetime.fromisoformat(value)
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def _to_dt(v: Any) -> datetime:
    if isinstance(v, datetime):
        return v if v.tzinfo is not None else v.replace(tzinfo=UTC)
    if isinstance(v, list) and len(v) == 1:
        return _to_dt(v[0])
    if isinstance(v, str) and v.strip():
        try:
            return parse_datetime(v)
        except ValueError:
            pass
    raise _EvalError(f"not a date: {v!r}")


def _maybe_dt(v: Any) -> datetime | None:
    if isinstance(v, datetime):
        return _to_dt(v)
    if isinstance(v, str) and _ISO_RE.match(v.strip()):
        try:
            return parse_datetime(v)
        except ValueError:
            return None
    return None


def _truthy(v: Any) -> bool:
    if v is None:
        return False
    if _is_num(v):
        return bool(v != 0)
    if isinstance(v, str | list | dict):
        return len(v) > 0
    return True


def _blankish(v: Any) -> bool:
    return v is None or v == "" or v == [] or (_is_num(v) and v == 0)


def _eq(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return _blankish(a) and _blankish(b)
    if isinstance(a, datetime) or isinstance(b, datetime):
        da, db = _maybe_dt(a), _maybe_dt(b)
        return da is not None and db is not None and da == db
    if _is_num(a) or _is_num(b):
        try:
            return _to_num(a) == _to_num(b)
        except _EvalError:
            return False
    return _to_str(a) == _to_str(b)


def _order(a: Any, b: Any) -> int:
    da, db = _maybe_dt(a), _maybe_dt(b)
    if isinstance(a, datetime) or isinstance(b, datetime) or (da is not None and db is not None):
        if da is None or db is None:
            raise _EvalError("cannot compare a date with a non-date")
        return (da > db) - (da < db)
    if _is_num(a) or _is_num(b) or a is None or b is None:
        na, nb = _to_num(a), _to_num(b)
        return (na > nb) - (na < nb)
    sa, sb = _to_str(a), _to_str(b)
    return (sa > sb) - (sa < sb)


# ---------------------------------------------------------------- date units

_UNIT_ALIASES = {
    "ms": "milliseconds",
    "millisecond": "milliseconds",
    "milliseconds": "milliseconds",
    "s": "seconds",
    "second": "seconds",
    "seconds": "seconds",
    "minute": "minutes",
    "minutes": "minutes",
    "h": "hours",
    "hour": "hours",
    "hours": "hours",
    "d": "days",
    "day": "days",
    "days": "days",
    "w": "weeks",
    "week": "weeks",
    "weeks": "weeks",
    "month": "months",
    "months": "months",
    "q": "quarters",
    "quarter": "quarters",
    "quarters": "quarters",
    "y": "years",
    "year": "years",
    "years": "years",
}
_UNIT_SECONDS = {
    "milliseconds": 0.001,
    "seconds": 1.0,
    "minutes": 60.0,
    "hours": 3600.0,
    "days": 86400.0,
    "weeks": 604800.0,
}
_UNIT_MONTHS = {"months": 1, "quarters": 3, "years": 12}


def _unit(v: Any) -> str:
    text = _to_str(v).strip()
    if text == "M":  # moment.js: M is months, m is minutes
        return "months"
    if text == "m":
        return "minutes"
    unit = _UNIT_ALIASES.get(text.lower())
    if unit is None:
        raise _EvalError(f"unknown unit {text!r}")
    return unit


def _add_months(dt: datetime, months: int) -> datetime:
    total = dt.year * 12 + (dt.month - 1) + months
    year, month = divmod(total, 12)
    day = min(dt.day, calendar.monthrange(year, month + 1)[1])
    return dt.replace(year=year, month=month + 1, day=day)


def _months_between(a: datetime, b: datetime) -> int:
    sign = 1
    if a < b:
        a, b, sign = b, a, -1
    months = (a.year - b.year) * 12 + (a.month - b.month)
    if _add_months(b, months) > a:
        months -= 1
    return sign * months


def _dateadd(date: Any, count: Any, unit: Any) -> datetime:
    dt, n, u = _to_dt(date), _to_num(count), _unit(unit)
    if u in _UNIT_MONTHS:
        return _add_months(dt, int(n) * _UNIT_MONTHS[u])
    return dt + timedelta(seconds=n * _UNIT_SECONDS[u])


def _datetime_diff(a: Any, b: Any, unit: Any = "seconds") -> int:
    da, db, u = _to_dt(a), _to_dt(b), _unit(unit)
    if u in _UNIT_MONTHS:
        return int(_months_between(da, db) / _UNIT_MONTHS[u])
    return int((da - db).total_seconds() / _UNIT_SECONDS[u])


def _truncate(dt: datetime, unit: str) -> tuple[int, ...]:
    parts = (dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second, dt.microsecond)
    keep = {
        "years": 1,
        "quarters": 1,
        "months": 2,
        "weeks": 3,
        "days": 3,
        "hours": 4,
        "minutes": 5,
        "seconds": 6,
        "milliseconds": 7,
    }[unit]
    if unit == "quarters":
        return (dt.year, (dt.month - 1) // 3)
    if unit == "weeks":
        iso_year, iso_week, _ = dt.isocalendar()
        return (iso_year, iso_week)
    return parts[:keep]


def _is_same(a: Any, b: Any, unit: Any = None) -> bool:
    da, db = _to_dt(a).astimezone(UTC), _to_dt(b).astimezone(UTC)
    if unit is None or _to_str(unit) == "":
        return da == db
    u = _unit(unit)
    return _truncate(da, u) == _truncate(db, u)


def _find(needle: Any, hay: Any, start: Any = 0) -> int:
    begin = max(int(_to_num(start)) - 1, 0)
    return _to_str(hay).find(_to_str(needle), begin) + 1


def _search(needle: Any, hay: Any, start: Any = 0) -> int | None:
    index = _find(needle, hay, start)
    return index or None


def _arrayjoin(values: Any, sep: Any = ", ") -> str:
    items = values if isinstance(values, list) else [values]
    return _to_str(sep).join(_to_str(x) for x in items)


# name -> (min args, max args or None, implementation over evaluated args and context)
_Impl = Callable[[_Ctx, list[Any]], Any]
_FUNCTIONS: dict[str, tuple[int, int | None, _Impl]] = {
    "AND": (1, None, lambda c, a: all(_truthy(x) for x in a)),
    "OR": (1, None, lambda c, a: any(_truthy(x) for x in a)),
    "XOR": (1, None, lambda c, a: sum(_truthy(x) for x in a) % 2 == 1),
    "NOT": (1, 1, lambda c, a: not _truthy(a[0])),
    "IF": (2, 3, lambda c, a: a[1] if _truthy(a[0]) else (a[2] if len(a) > 2 else None)),
    "TRUE": (0, 0, lambda c, a: True),
    "FALSE": (0, 0, lambda c, a: False),
    "BLANK": (0, 0, lambda c, a: None),
    "RECORD_ID": (0, 0, lambda c, a: c.record.id),
    "NOW": (0, 0, lambda c, a: c.now),
    "TODAY": (0, 0, lambda c, a: c.now.replace(hour=0, minute=0, second=0, microsecond=0)),
    "CREATED_TIME": (0, 0, lambda c, a: c.record.created),
    "LAST_MODIFIED_TIME": (0, None, lambda c, a: c.record.modified),
    "DATEADD": (3, 3, lambda c, a: _dateadd(*a)),
    "DATETIME_DIFF": (2, 3, lambda c, a: _datetime_diff(*a)),
    "DATETIME_PARSE": (1, 3, lambda c, a: _to_dt(a[0])),
    "IS_BEFORE": (2, 2, lambda c, a: _to_dt(a[0]) < _to_dt(a[1])),
    "IS_AFTER": (2, 2, lambda c, a: _to_dt(a[0]) > _to_dt(a[1])),
    "IS_SAME": (2, 3, lambda c, a: _is_same(*a)),
    "LEN": (1, 1, lambda c, a: len(_to_str(a[0]))),
    "FIND": (2, 3, lambda c, a: _find(*a)),
    "SEARCH": (2, 3, lambda c, a: _search(*a)),
    "LOWER": (1, 1, lambda c, a: _to_str(a[0]).lower()),
    "UPPER": (1, 1, lambda c, a: _to_str(a[0]).upper()),
    "TRIM": (1, 1, lambda c, a: _to_str(a[0]).strip()),
    "CONCATENATE": (1, None, lambda c, a: "".join(_to_str(x) for x in a)),
    "ARRAYJOIN": (1, 2, lambda c, a: _arrayjoin(*a)),
    "VALUE": (1, 1, lambda c, a: _to_num(a[0])),
}


def _compare(op: str, a: Any, b: Any) -> bool:
    if op == "=":
        return _eq(a, b)
    if op == "!=":
        return not _eq(a, b)
    result = _order(a, b)
    return {"<": result < 0, ">": result > 0, "<=": result <= 0, ">=": result >= 0}[op]


def _arith(op: str, a: Any, b: Any) -> float:
    x, y = _to_num(a), _to_num(b)
    if op == "+":
        return x + y
    if op == "-":
        return x - y
    if op == "*":
        return x * y
    if y == 0:
        raise _EvalError("division by zero")
    return x / y


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.i = 0
        self.fields: set[str] = set()

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def expect(self, value: str) -> None:
        token = self.take()
        if token.kind != "op" or token.value != value:
            raise FormulaError()

    def at_op(self, *values: str) -> bool:
        token = self.peek()
        return token.kind == "op" and token.value in values

    def parse(self) -> _Node:
        node = self.comparison()
        if self.peek().kind != "end":
            raise FormulaError()
        return node

    def binary(
        self,
        sub: Callable[[], _Node],
        ops: tuple[str, ...],
        apply: Callable[[str, Any, Any], Any],
        bind: Callable[[Callable[[str, Any, Any], Any], str, _Node, _Node], _Node] | None = None,
    ) -> _Node:
        left = sub()
        while self.at_op(*ops):
            op = self.take().value
            right = sub()
            left = (bind or _bind_binary)(apply, op, left, right)
        return left

    def comparison(self) -> _Node:
        return self.binary(self.concat, ("=", "!=", "<", ">", "<=", ">="), _compare, _bind_comparison)

    def concat(self) -> _Node:
        return self.binary(self.additive, ("&",), lambda op, a, b: _to_str(a) + _to_str(b))

    def additive(self) -> _Node:
        return self.binary(self.term, ("+", "-"), _arith)

    def term(self) -> _Node:
        return self.binary(self.unary, ("*", "/"), _arith)

    def unary(self) -> _Node:
        if self.at_op("-"):
            self.take()
            inner = self.unary()
            return lambda ctx: -_to_num(inner(ctx))
        if self.at_op("+"):
            self.take()
            return self.unary()
        return self.primary()

    def primary(self) -> _Node:
        token = self.take()
        if token.kind == "num":
            number = float(token.value)
            return lambda ctx: number
        if token.kind == "str":
            return _Text(token.value)
        if token.kind == "field":
            return self.field(token.value)
        if token.kind == "op" and token.value == "(":
            node = self.comparison()
            self.expect(")")
            return node
        if token.kind == "ident":
            if self.at_op("("):
                return self.call(token.value)
            if token.value.upper() in ("TRUE", "FALSE"):
                flag = token.value.upper() == "TRUE"
                return lambda ctx: flag
            return self.field(token.value)
        raise FormulaError()

    def field(self, name: str) -> _Node:
        self.fields.add(name)
        return lambda ctx: _field_value(ctx.record.fields.get(name))

    def call(self, name: str) -> _Node:
        self.expect("(")
        args: list[_Node] = []
        if not self.at_op(")"):
            args.append(self.comparison())
            while self.at_op(","):
                self.take()
                args.append(self.comparison())
        self.expect(")")
        spec = _FUNCTIONS.get(name.upper())
        if spec is None:
            raise FormulaError()
        low, high, impl = spec
        if len(args) < low or (high is not None and len(args) > high):
            raise FormulaError()
        if name.upper() == "RECORD_ID":
            return _RecordId()
        ids = [arg.record_id for arg in args if isinstance(arg, _RecordIdIs)]
        if name.upper() == "OR" and len(ids) == len(args):
            # The controller's read by ids, `OR(RECORD_ID()='rec…', …)`, as one set lookup:
            # evaluated term by term, 50 ids over 10,000 rows hold the simulator's event loop for
            # about a second, and the requests that arrive meanwhile are then counted against
            # the rate limit all at once (429s that real Airtable would not answer).
            return _RecordIdIn(frozenset(ids))
        return lambda ctx: impl(ctx, [arg(ctx) for arg in args])


@dataclass(frozen=True)
class _Text:
    text: str

    def __call__(self, ctx: _Ctx) -> str:
        return self.text


@dataclass(frozen=True)
class _RecordId:
    def __call__(self, ctx: _Ctx) -> str:
        return ctx.record.id


@dataclass(frozen=True)
class _RecordIdIs:
    record_id: str

    def __call__(self, ctx: _Ctx) -> bool:
        return ctx.record.id == self.record_id  # what _compare does with two texts


@dataclass(frozen=True)
class _RecordIdIn:
    record_ids: frozenset[str]

    def __call__(self, ctx: _Ctx) -> bool:
        return ctx.record.id in self.record_ids


def _bind_binary(apply: Callable[[str, Any, Any], Any], op: str, left: _Node, right: _Node) -> _Node:
    return lambda ctx: apply(op, left(ctx), right(ctx))


def _bind_comparison(apply: Callable[[str, Any, Any], Any], op: str, left: _Node, right: _Node) -> _Node:
    """`RECORD_ID()='…'` as its own node, so that an OR of them can become a set lookup."""
    if op == "=" and isinstance(left, _RecordId) and isinstance(right, _Text):
        return _RecordIdIs(right.text)
    return _bind_binary(apply, op, left, right)


def _field_value(value: Any) -> Any:
    """Empty text and empty lists read as BLANK(), as an empty Airtable cell does."""
    return None if value is None or value == "" or value == [] else value


class Formula:
    """A parsed ``filterByFormula``; raises :class:`FormulaError` when Airtable would 422."""

    def __init__(self, text: str, known_fields: Collection[str] | None = None) -> None:
        self.text = text
        parser = _Parser(text)
        self._node = parser.parse()
        self.fields = frozenset(parser.fields)
        if known_fields is not None:
            unknown = sorted(name for name in self.fields if name not in known_fields)
            if unknown:
                raise FormulaError("Unknown field names: " + ", ".join(n.lower() for n in unknown))

    @property
    def record_ids(self) -> frozenset[str] | None:
        """The ids of a read by ids (`OR(RECORD_ID()='rec…', …)`, looked up as a set), else None."""
        return self._node.record_ids if isinstance(self._node, _RecordIdIn) else None

    def evaluate(self, record: RecordView, now: datetime | None = None) -> Any:
        """The formula's value for ``record``; raises ValueError on #ERROR!."""
        try:
            return self._node(_Ctx(record, now or datetime.now(UTC)))
        except (_EvalError, ArithmeticError, ValueError, TypeError, OverflowError) as exc:
            raise ValueError(f"#ERROR!: {exc}") from exc

    def matches(self, record: RecordView, now: datetime | None = None) -> bool:
        """Whether Airtable would return ``record`` for this formula."""
        try:
            return _truthy(self.evaluate(record, now))
        except ValueError:
            return False
