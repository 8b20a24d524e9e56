"""In-memory record storage, one column-oriented table per sObject, and SOQL execution over it.

A table keeps its rows in ID order (IDs are minted increasing and never reused), the columns as Python lists,
a set of row numbers per boolean field whose value is true (so `WHERE HasOptedOutOfEmail = true` reads ~10% of a
million rows, not all of them), an ID -> row dict, a lazily built e-mail index, and a SystemModstamp log (every
stamp written, in stamp order) so an incremental poll (`WHERE SystemModstamp >= ...`) reads only what changed.

Datetimes are stored as Salesforce renders them, `2026-12-03T10:00:00.000+0000` (UTC), so comparing the strings
compares the moments; dates as `2026-12-03`. `Name` is computed from FirstName and LastName when read.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ApiError, no_such_column
from .ids import IdMinter, normalize_id
from .schema import STAMP_FIELDS, FieldDef, ObjectSchema
from .soql import BoolOp, Comparison, Condition, DateRange, Not, Query, like_regex, pointed_message

Predicate = Callable[[int], bool]
MODSTAMP = "SystemModstamp"


def format_datetime(moment: dt.datetime) -> str:
    """A moment as Salesforce's REST API renders a datetime (UTC, milliseconds, +0000)."""
    utc = moment.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}+0000"


def parse_datetime(value: Any) -> str:
    """A datetime given to the control API (datetime or ISO text) in the stored form; ValueError when neither."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if not isinstance(value, dt.datetime):
        raise ValueError(f"not a datetime: {value!r}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return format_datetime(value)


class _FullName(Sequence[str]):
    """The computed Name column: FirstName and LastName joined, read row by row."""

    def __init__(self, first: list[Any], last: list[Any]) -> None:
        self.first = first
        self.last = last

    def __getitem__(self, row: int) -> str:  # type: ignore[override]  # rows only, no slices
        return " ".join(part for part in (self.first[row], self.last[row]) if part)

    def __len__(self) -> int:
        return len(self.first)


class Table:
    def __init__(self, schema: ObjectSchema, minter: IdMinter, clock: Callable[[], str] | None = None) -> None:
        self.schema = schema
        self.minter = minter
        self.clock = clock or (lambda: format_datetime(dt.datetime.now(dt.UTC)))  # the org's: stamps new rows
        self.ids: list[str] = []
        self.pos: dict[str, int] = {}
        self.columns: dict[str, list[Any]] = {}
        self.true_rows: dict[str, set[int]] = {}
        self._email_index: dict[str, list[int]] | None = None
        self._stamp_log: list[str] = []  # every SystemModstamp written, nondecreasing ...
        self._stamp_rows = array("q")  # ... and the row it was written to (stale when the row was stamped again)
        for definition in schema.all_fields():
            self.ensure_column(definition)
        self.name_column = _FullName(self.columns["FirstName"], self.columns["LastName"])

    def __len__(self) -> int:
        return len(self.ids)

    def ensure_column(self, definition: FieldDef) -> None:
        """Give a (new) field a column, filled with its default for the existing rows."""
        if definition.name in ("Id", "Name") or definition.name in self.columns:
            return
        self.columns[definition.name] = [definition.default] * len(self.ids)
        if definition.type == "boolean":
            self.true_rows[definition.name] = set(range(len(self.ids))) if definition.default else set()

    def append(self, values: dict[str, Any]) -> str:
        """Add one row; `values` holds canonical field names (others get their defaults)."""
        return self.append_many(1, {name: [value] for name, value in values.items()})[0]

    def append_many(self, count: int, values: dict[str, list[Any]]) -> list[str]:
        start = len(self.ids)
        new_ids = self.minter.mint_many(count)
        self.ids.extend(new_ids)
        self.pos.update(zip(new_ids, range(start, start + count), strict=True))
        defaults = {f.name: f.default for f in self.schema.all_fields()}
        stamp = self.clock()
        for name in STAMP_FIELDS:
            defaults[name] = stamp
        for name, column in self.columns.items():
            given = values.get(name)
            if given is None:
                given = [defaults.get(name)] * count
            elif len(given) != count:
                raise ValueError(f"column {name} has {len(given)} values, expected {count}")
            column.extend(given)
            trues = self.true_rows.get(name)
            if trues is not None:
                trues.update(itertools.compress(range(start, start + count), given))
        stamps = self.columns[MODSTAMP]
        if count and stamps[start] == stamps[-1] and (not self._stamp_log or stamps[start] >= self._stamp_log[-1]):
            self._stamp_log.extend(itertools.repeat(stamps[start], count))  # one stamp for all: seeding
            self._stamp_rows.extend(range(start, start + count))
        else:
            for row in range(start, start + count):
                self._log_stamp(row, stamps[row])
        if self._email_index is not None:
            for row in range(start, start + count):
                self._index_email(row)
        return new_ids

    def field_names(self) -> list[str]:
        return ["Id", *self.columns, "Name"]

    def column(self, name: str) -> Sequence[Any]:
        """The values of a field by row: stored, or computed (Id, Name)."""
        if name == "Id":
            return self.ids
        if name == "Name":
            return self.name_column
        return self.columns[name]

    def get(self, row: int, fields: Iterable[str] | None = None) -> dict[str, Any]:
        names = self.field_names() if fields is None else fields
        return {name: self.column(name)[row] for name in names}

    def _log_stamp(self, row: int, stamp: str) -> None:
        log = self._stamp_log
        if not log or stamp >= log[-1]:
            log.append(stamp)
            self._stamp_rows.append(row)
        else:  # a stamp set back by the control API: keep the log in order
            at = bisect.bisect_right(log, stamp)
            log.insert(at, stamp)
            self._stamp_rows.insert(at, row)
        if len(log) > 2 * len(self.ids) + 10_000:  # mostly stale entries: rebuild from the column
            stamps = self.columns[MODSTAMP]
            order = sorted(range(len(self.ids)), key=stamps.__getitem__)
            self._stamp_log = [stamps[r] for r in order]
            self._stamp_rows = array("q", order)

    def rows_stamped_since(self, stamp: str, inclusive: bool) -> list[int] | None:
        """Rows (in ID order) whose SystemModstamp is after `stamp` (or at it), from the log; None when every
        row qualifies (no narrowing to gain)."""
        log = self._stamp_log
        at = (bisect.bisect_left if inclusive else bisect.bisect_right)(log, stamp)
        if at == 0:
            return None
        stamps = self.columns[MODSTAMP]
        rows = self._stamp_rows
        return sorted({rows[i] for i in range(at, len(log)) if stamps[rows[i]] == log[i]})

    def touch(self, row: int, stamp: str, user: str) -> None:
        """Stamp a changed row: LastModifiedDate and SystemModstamp (logged), LastModifiedById."""
        log = self._stamp_log
        if log and stamp >= log[-1] and len(log) <= 2 * len(self.ids) + 10_000:  # the usual case, inline
            log.append(stamp)
            self._stamp_rows.append(row)
        else:
            self._log_stamp(row, stamp)
        self.columns[MODSTAMP][row] = stamp
        self.columns["LastModifiedDate"][row] = stamp
        self.columns["LastModifiedById"][row] = user

    def set(self, row: int, name: str, value: Any) -> None:
        column = self.columns[name]
        if name == MODSTAMP:
            self._log_stamp(row, value)
        if name == "Email" and self._email_index is not None:
            self._unindex_email(row)
        column[row] = value
        trues = self.true_rows.get(name)
        if trues is not None:
            if value:
                trues.add(row)
            else:
                trues.discard(row)
        if name == "Email" and self._email_index is not None:
            self._index_email(row)

    def row_of(self, id18: str) -> int | None:
        return self.pos.get(id18)

    def is_deleted(self, row: int) -> bool:
        return bool(self.columns["IsDeleted"][row])

    def _index_email(self, row: int) -> None:
        assert self._email_index is not None
        email = self.columns["Email"][row]
        if email is not None:
            self._email_index.setdefault(email.lower(), []).append(row)

    def _unindex_email(self, row: int) -> None:
        assert self._email_index is not None
        email = self.columns["Email"][row]
        if email is not None:
            rows = self._email_index.get(email.lower(), [])
            if row in rows:
                rows.remove(row)

    def rows_with_email(self, email: str) -> list[int]:
        """Rows whose Email equals `email` case-insensitively, in row order (the index is built on first use)."""
        if self._email_index is None:
            index: dict[str, list[int]] = {}
            get = index.get
            for row, value in enumerate(self.columns["Email"]):
                if value is not None:
                    key = value.lower()
                    rows = get(key)
                    if rows is None:
                        index[key] = [row]
                    else:
                        rows.append(row)
            self._email_index = index
        return sorted(self._email_index.get(email.lower(), []))


@dataclass(frozen=True)
class Selection:
    """The rows a query selected, in result order, and the canonical names of the selected fields."""

    sobject: str
    fields: tuple[str, ...]
    rows: list[int]
    count_only: bool = False  # COUNT(): only totalSize
    aggregate: tuple[str, str] | None = None  # COUNT(field): (canonical field, result key)
    count_value: int = 0  # COUNT(field): the rows whose field is not null


TEMPORAL = ("datetime", "date")
UNFOLDED = ("id", "boolean", "reference", *TEMPORAL)  # compared as stored; other fields case-insensitively


def _filter_error(message: str) -> ApiError:
    return ApiError(400, "INVALID_QUERY_FILTER_OPERATOR", message)


class _Compiler:
    """Turns a parsed WHERE clause into a row predicate, checking fields and literal types like Salesforce."""

    def __init__(self, table: Table, query: Query) -> None:
        self.table = table
        self.query = query
        self.today = dt.date.fromisoformat(table.clock()[:10])  # date range literals count days in UTC

    def bounds(self, definition: FieldDef, span: DateRange) -> tuple[str, str]:
        """[start, end) of a date range literal in the field's stored form."""
        first, after = span.days(self.today)
        if definition.type == "date":
            return first.isoformat(), after.isoformat()
        midnight = dt.time(tzinfo=dt.UTC)
        return (
            format_datetime(dt.datetime.combine(first, midnight)),
            format_datetime(dt.datetime.combine(after, midnight)),
        )

    def modstamp_floor(self, test: Comparison) -> tuple[str, bool] | None:
        """(stamp, inclusive) when the test bounds SystemModstamp from below (for the stamp log), else None."""
        definition = self.table.schema.lookup(test.field)
        if definition is None or definition.name != MODSTAMP:
            return None
        if isinstance(test.value, dt.datetime) and test.op in (">", ">="):
            return format_datetime(test.value), test.op == ">="
        if isinstance(test.value, DateRange) and test.op in ("=", ">="):
            return self.bounds(definition, test.value)[0], True
        return None

    def field(self, name: str, column: int = 0) -> FieldDef:
        definition = self.table.schema.lookup(name)
        if definition is None:
            reason = no_such_column(name, self.table.schema.name)
            raise ApiError(400, "INVALID_FIELD", pointed_message(self.query.text, column, reason))
        return definition

    def literal(self, definition: FieldDef, value: Any) -> Any:
        if value is None:
            return None
        if definition.type in TEMPORAL:
            wanted = dt.datetime if definition.type == "datetime" else dt.date
            if not isinstance(value, wanted) or (definition.type == "date" and isinstance(value, dt.datetime)):
                kind = "dateTime" if definition.type == "datetime" else "date"
                raise _filter_error(
                    f"value of filter criterion for field '{definition.name}' must be of type {kind} "
                    "and should not be enclosed in quotes"
                )
            return format_datetime(value) if isinstance(value, dt.datetime) else value.isoformat()
        if definition.type == "boolean":
            if not isinstance(value, bool):
                raise _filter_error(
                    f"value of filter criterion for field '{definition.name}' must be of type boolean "
                    "and should not be enclosed in quotes"
                )
            return value
        if not isinstance(value, str) or isinstance(value, bool):
            raise _filter_error(
                f"value of filter criterion for field '{definition.name}' must be of type "
                f"{'id' if definition.type in ('id', 'reference') else 'string'} and should be enclosed in quotes"
            )
        if definition.type in ("id", "reference"):
            id18 = normalize_id(value)
            if id18 is None:
                raise _filter_error(f"invalid ID field: {value}")
            return id18
        return value.lower()

    def column(self, definition: FieldDef) -> Sequence[Any]:
        return self.table.column(definition.name)

    def compile(self, condition: Condition) -> Predicate:
        if isinstance(condition, BoolOp):
            parts = [self.compile(item) for item in condition.items]
            if condition.op == "AND":
                return lambda row: all(p(row) for p in parts)
            return lambda row: any(p(row) for p in parts)
        if isinstance(condition, Not):
            inner = self.compile(condition.item)
            return lambda row: not inner(row)
        return self.comparison(condition)

    def comparison(self, test: Comparison) -> Predicate:
        definition = self.field(test.field, test.column)
        column = self.column(definition)
        folds = definition.type not in UNFOLDED  # string comparisons are case-insensitive

        def value_at(row: int) -> Any:
            value = column[row]
            return value.lower() if folds and value is not None else value

        op = test.op
        if op in ("IN", "NOT IN"):
            assert isinstance(test.value, tuple)
            members = {self.literal(definition, v) for v in test.value}
            if op == "IN":
                return lambda row: value_at(row) in members
            return lambda row: value_at(row) not in members
        if op == "LIKE":
            if definition.type == "boolean":
                raise _filter_error(f"invalid operator on boolean field: {definition.name}")
            pattern = like_regex(str(test.value))
            return lambda row: (v := column[row]) is not None and pattern.fullmatch(str(v)) is not None
        if isinstance(test.value, DateRange):
            return self.in_range(definition, column, op, test.value)
        literal = self.literal(definition, test.value)
        if op == "=":
            return lambda row: value_at(row) == literal
        if op == "!=":
            return lambda row: value_at(row) != literal
        if definition.type == "boolean" or literal is None:
            raise _filter_error(f"invalid operator on {definition.type} field: {definition.name}")
        compare: dict[str, Callable[[Any], bool]] = {
            "<": lambda v: v < literal,
            "<=": lambda v: v <= literal,
            ">": lambda v: v > literal,
            ">=": lambda v: v >= literal,
        }
        check = compare[op]
        return lambda row: (v := value_at(row)) is not None and check(v)

    def in_range(self, definition: FieldDef, column: Sequence[Any], op: str, span: DateRange) -> Predicate:
        """A date range literal: `=` is within it, `<` before it starts, `>` after it ends (as Salesforce reads)."""
        if definition.type not in TEMPORAL:
            raise _filter_error(
                f"value of filter criterion for field '{definition.name}' must be of type "
                f"{'boolean' if definition.type == 'boolean' else 'string'} and should be enclosed in quotes"
            )
        start, end = self.bounds(definition, span)
        checks: dict[str, Callable[[str], bool]] = {
            "=": lambda v: start <= v < end,
            "!=": lambda v: not start <= v < end,
            "<": lambda v: v < start,
            "<=": lambda v: v < end,
            ">": lambda v: v >= end,
            ">=": lambda v: v >= start,
        }
        check = checks[op]
        return lambda row: (v := column[row]) is not None and check(v)


def _conjuncts(condition: Condition | None) -> list[Condition]:
    if condition is None:
        return []
    if isinstance(condition, BoolOp) and condition.op == "AND":
        return list(condition.items)
    return [condition]


def _candidates(table: Table, where: Condition | None, compiler: _Compiler) -> Sequence[int]:
    """Rows that can match, in ID order, from the cheapest index the top-level AND offers: Id = / IN, Email = / IN,
    BooleanField = true, SystemModstamp > / >= (the stamp log), and Id > / >= as a start position (literals were
    checked by the compiler already)."""
    schema = table.schema
    best: list[int] | None = None
    start = 0
    for item in _conjuncts(where):
        if not isinstance(item, Comparison):
            continue
        definition = schema.lookup(item.field)
        if definition is None:
            continue
        rows: list[int] | None = None
        if definition.type == "id" and item.op in ("=", "IN"):
            values = item.value if isinstance(item.value, tuple) else (item.value,)
            found = {table.pos.get(normalize_id(v) or "") for v in values if isinstance(v, str)}
            rows = sorted(r for r in found if r is not None)
        elif definition.type == "id" and item.op in (">", ">=") and isinstance(item.value, str):
            id18 = normalize_id(item.value) or item.value
            position = (bisect.bisect_right if item.op == ">" else bisect.bisect_left)(table.ids, id18)
            start = max(start, position)
        elif definition.name == "Email" and item.op in ("=", "IN"):
            values = item.value if isinstance(item.value, tuple) else (item.value,)
            found_rows: set[int] = set()
            for v in values:
                if isinstance(v, str):
                    found_rows.update(table.rows_with_email(v))
            rows = sorted(found_rows)
        elif definition.type == "boolean" and item.op == "=" and item.value is True:
            rows = sorted(table.true_rows[definition.name])
        elif (floor := compiler.modstamp_floor(item)) is not None:
            rows = table.rows_stamped_since(*floor)
        if rows is not None and (best is None or len(rows) < len(best)):
            best = rows
    if best is None:
        return range(start, len(table))
    if start:
        best = best[bisect.bisect_left(best, start) :]
    return best


def select(table: Table, query: Query, include_deleted: bool = False) -> Selection:
    """Run a parsed query: check fields, pick candidate rows from an index, filter, order, offset, limit."""
    compiler = _Compiler(table, query)
    if query.aggregate is not None and query.stray_column:
        stray = query.text[query.stray_column :].split(",")[0].split()[0]
        reason = f"Field must be grouped or aggregated: {stray}"
        raise ApiError(400, "MALFORMED_QUERY", pointed_message(query.text, query.stray_column, reason))
    fields: list[str] = []
    for name, position in zip(query.fields, query.field_columns, strict=True):
        canonical = compiler.field(name, position).name
        if canonical in fields:
            raise ApiError(400, "MALFORMED_QUERY", f"duplicate field selected: {canonical}")
        fields.append(canonical)
    predicate = compiler.compile(query.where) if query.where is not None else None
    order = [(compiler.field(o.field, o.column), o.descending) for o in query.order_by]
    deleted = table.true_rows["IsDeleted"]

    def matching(rows: Iterable[int]) -> Iterator[int]:
        for row in rows:
            if not include_deleted and row in deleted:
                continue
            if predicate is None or predicate(row):
                yield row

    candidates = _candidates(table, query.where, compiler)
    by_id_only = all(definition.type == "id" for definition, _ in order)
    wanted = None if query.limit is None else query.limit + (query.offset or 0)
    if by_id_only:
        ordered: Iterable[int] = reversed(candidates) if order and order[0][1] else candidates
        rows: list[int] = []
        for row in matching(ordered):
            rows.append(row)
            if wanted is not None and len(rows) >= wanted:
                break
    else:
        rows = list(matching(candidates))
        for definition, descending in reversed(order):
            column = table.column(definition.name)
            fold = definition.type not in UNFOLDED  # text sorts case-insensitively; IDs and stamps as stored

            def key(row: int, column: Sequence[Any] = column, fold: bool = fold) -> tuple[int, Any]:
                value = column[row]
                if value is None:
                    return (0, "")
                return (1, value.lower() if fold and isinstance(value, str) else value)

            rows.sort(key=key, reverse=descending)
        if wanted is not None:
            rows = rows[:wanted]
    if query.offset:
        rows = rows[query.offset :]
    if query.aggregate is not None:
        counted, result_key, position = query.aggregate
        counted_field = compiler.field(counted, position)
        values = table.column(counted_field.name)
        total = sum(1 for row in rows if values[row] is not None)
        return Selection(table.schema.name, (), rows, aggregate=(counted_field.name, result_key), count_value=total)
    return Selection(table.schema.name, tuple(fields), rows, count_only=query.count)
