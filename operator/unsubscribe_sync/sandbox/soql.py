"""A small SOQL parser for the subset the project issues (a real tokenizer and recursive-descent parser).

    SELECT field [, field]... | COUNT() | COUNT(field) [alias]  FROM Object
    [WHERE condition]  [ORDER BY field [ASC|DESC] [NULLS FIRST|LAST] [, ...]]  [LIMIT n]  [OFFSET n]

    condition := factor (AND factor)* | factor (OR factor)*   (mixing AND and OR needs parentheses, as in Salesforce)
    factor := NOT factor | '(' condition ')' | test
    test := field (= | != | <> | < | <= | > | >=) literal | field [NOT] IN (literal, ...) | field LIKE 'pattern'
    literal := true | false | null | 'string' | number | 2026-01-31 | 2026-01-31T12:00:00Z (or .000+0000, -08:00)
             | TODAY | YESTERDAY | TOMORROW | LAST_N_DAYS:n | NEXT_N_DAYS:n | N_DAYS_AGO:n

Keywords and field names are case-insensitive, as in Salesforce. Field names are checked later, against the
object's fields (the parser knows no schema).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import TypeAlias


@dataclass(frozen=True)
class DateRange:
    """A relative date literal (TODAY, LAST_N_DAYS:n, ...): resolved against the org's clock when the query runs."""

    name: str  # upper case, without ":n"
    n: int = 0

    def days(self, today: dt.date) -> tuple[dt.date, dt.date]:
        """[first day, day after the last) of the range."""
        one = dt.timedelta(days=1)
        if self.name == "TODAY":
            return today, today + one
        if self.name == "YESTERDAY":
            return today - one, today
        if self.name == "TOMORROW":
            return today + one, today + 2 * one
        if self.name == "LAST_N_DAYS":  # the n days before today, and today (the docs: "includes the current day")
            return today - self.n * one, today + one
        if self.name == "NEXT_N_DAYS":  # the n days after today, without today
            return today + one, today + (self.n + 1) * one
        return today - self.n * one, today - (self.n - 1) * one  # N_DAYS_AGO: that one day


Literal: TypeAlias = bool | str | int | float | dt.datetime | dt.date | DateRange | None
DAY_LITERALS = {"TODAY", "YESTERDAY", "TOMORROW"}

KEYWORDS = {
    "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER", "BY", "ASC", "DESC",
    "NULLS", "FIRST", "LAST", "LIMIT", "OFFSET", "TRUE", "FALSE", "NULL",
}  # fmt: skip
COMPARISONS = {"=", "!=", "<>", "<", "<=", ">", ">="}

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:?\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2}(?![\dT]))
  | (?P<range>(?i:LAST_N_DAYS|NEXT_N_DAYS|N_DAYS_AGO):\d+)
  | (?P<number>-?\d+(?:\.\d+)?(?![A-Za-z_]))
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<punct>[(),])
    """,
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "'": "'", '"': '"', "\\": "\\"}


MAX_SOQL_LENGTH = 100_000  # characters of one SOQL statement (Salesforce refuses longer ones before parsing)
TOO_LONG_MESSAGE = "SOQL statements cannot be longer than 100,000 characters."


class SoqlError(Exception):
    """A syntax error; `message` reads like Salesforce's MALFORMED_QUERY text.

    ``pointed`` is False for errors Salesforce reports without the query line and caret (the length limit).
    """

    def __init__(self, message: str, column: int, pointed: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.column = column
        self.pointed = pointed


@dataclass(frozen=True)
class Token:
    kind: str  # string | number | literal (date, datetime, date range) | name | keyword | op | punct | end
    text: str
    value: Literal
    column: int  # 0-based offset into the query text


@dataclass(frozen=True)
class Comparison:
    field: str
    op: str  # = != < <= > >= IN NOT IN LIKE
    value: Literal | tuple[Literal, ...]
    column: int


@dataclass(frozen=True)
class BoolOp:
    op: str  # AND | OR
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    item: Condition


Condition: TypeAlias = Comparison | BoolOp | Not


@dataclass(frozen=True)
class OrderBy:
    field: str
    descending: bool = False
    column: int = 0


@dataclass(frozen=True)
class Query:
    text: str
    sobject: str
    fields: tuple[str, ...]  # empty for COUNT() and COUNT(field)
    count: bool  # COUNT(): totalSize only
    where: Condition | None
    order_by: tuple[OrderBy, ...]
    limit: int | None
    offset: int | None
    field_columns: tuple[int, ...] = ()  # where each selected field starts in the text
    sobject_column: int = 0  # where the object name starts
    aggregate: tuple[str, str, int] | None = None  # COUNT(field): (field, result key such as expr0, its column)
    stray_column: int = 0  # a plain field selected beside COUNT(field) (not grouped: an error)


def _unescape(body: str, column: int) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            nxt = body[i + 1]
            if nxt not in _ESCAPES:
                raise SoqlError(f"Invalid string literal: escape sequence \\{nxt} is not valid", column + i)
            out.append(_ESCAPES[nxt])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _temporal(kind: str, raw: str, column: int) -> Literal:
    try:
        if kind == "range":
            name, _, n = raw.partition(":")
            return DateRange(name.upper(), int(n))
        if kind == "date":
            return dt.date.fromisoformat(raw)
        moment = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise SoqlError(f"unexpected token: '{raw}'", column) from exc
    return moment.astimezone(dt.UTC)


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise SoqlError(f"unexpected token: '{text[pos]}'", pos)
        kind = match.lastgroup or ""
        raw = match.group()
        if kind == "string":
            tokens.append(Token("string", raw, _unescape(raw[1:-1], pos + 1), pos))
        elif kind in ("datetime", "date", "range"):
            tokens.append(Token("literal", raw, _temporal(kind, raw, pos), pos))
        elif kind == "number":
            tokens.append(Token("number", raw, float(raw) if "." in raw else int(raw), pos))
        elif kind == "name":
            upper = raw.upper()
            if upper in KEYWORDS:
                value: Literal = {"TRUE": True, "FALSE": False}.get(upper)
                tokens.append(Token("keyword", upper, value, pos))
            else:
                tokens.append(Token("name", raw, raw, pos))
        elif kind in ("op", "punct"):
            tokens.append(Token(kind, raw, raw, pos))
        pos = match.end()
    tokens.append(Token("end", "<EOF>", None, len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def fail(self, token: Token | None = None) -> SoqlError:
        token = token or self.tok
        shown = token.text if token.kind != "end" else "<EOF>"
        return SoqlError(f"unexpected token: '{shown}'", token.column)

    def take(self) -> Token:
        token = self.tok
        self.i += 1
        return token

    def keyword(self, *words: str) -> bool:
        if self.tok.kind == "keyword" and self.tok.text in words:
            self.i += 1
            return True
        return False

    def expect_keyword(self, word: str) -> None:
        if not self.keyword(word):
            raise self.fail()

    def punct(self, symbol: str) -> bool:
        if self.tok.kind == "punct" and self.tok.text == symbol:
            self.i += 1
            return True
        return False

    def expect_punct(self, symbol: str) -> None:
        if not self.punct(symbol):
            raise self.fail()

    def name(self) -> str:
        if self.tok.kind != "name":
            raise self.fail()
        return str(self.take().text)

    def integer(self) -> int:
        token = self.tok
        if token.kind != "number" or not isinstance(token.value, int) or token.value < 0:
            raise self.fail()
        self.i += 1
        return token.value

    def query(self) -> Query:
        self.expect_keyword("SELECT")
        fields: list[str] = []
        columns: list[int] = []
        count = False
        aggregate: tuple[str, str, int] | None = None
        while True:
            if self.tok.kind == "name" and self.tok.text.upper() == "COUNT" and self.tokens[self.i + 1].text == "(":
                column = self.tok.column
                self.i += 2
                if self.punct(")"):
                    count = True
                else:
                    counted = self.name()
                    self.expect_punct(")")
                    alias = self.name() if self.tok.kind == "name" else "expr0"
                    aggregate = (counted, alias, column)
            else:
                columns.append(self.tok.column)
                fields.append(self.name())
            if not self.punct(","):
                break
        if count and (fields or aggregate):
            raise self.fail()
        self.expect_keyword("FROM")
        sobject_column = self.tok.column
        sobject = self.name()
        where = self.condition() if self.keyword("WHERE") else None
        order_by: list[OrderBy] = []
        if self.keyword("ORDER"):
            self.expect_keyword("BY")
            while True:
                column = self.tok.column
                field = self.name()
                descending = self.keyword("DESC")
                if not descending:
                    self.keyword("ASC")
                if self.keyword("NULLS") and not self.keyword("FIRST", "LAST"):
                    raise self.fail()
                order_by.append(OrderBy(field, descending, column))
                if not self.punct(","):
                    break
        limit = self.integer() if self.keyword("LIMIT") else None
        offset = self.integer() if self.keyword("OFFSET") else None
        if self.tok.kind != "end":
            raise self.fail()
        stray = columns[0] if aggregate and columns else 0
        return Query(
            self.text, sobject, () if aggregate else tuple(fields), count, where, tuple(order_by), limit, offset,
            () if aggregate else tuple(columns), sobject_column, aggregate, stray,
        )  # fmt: skip

    def condition(self) -> Condition:
        """Factors joined by one operator: `a AND b OR c` is refused at the OR, as Salesforce does."""
        items = [self.factor()]
        op: str | None = None
        while self.tok.kind == "keyword" and self.tok.text in ("AND", "OR"):
            if op is not None and self.tok.text != op:
                raise self.fail()
            op = str(self.take().text)
            items.append(self.factor())
        return items[0] if op is None else BoolOp(op, tuple(items))

    def factor(self) -> Condition:
        if self.keyword("NOT"):
            return Not(self.factor())
        if self.punct("("):
            inner = self.condition()
            self.expect_punct(")")
            return inner
        return self.test()

    def literal(self) -> Literal:
        token = self.tok
        if token.kind in ("string", "number", "literal") or (
            token.kind == "keyword" and token.text in ("TRUE", "FALSE")
        ):
            self.i += 1
            return token.value
        if token.kind == "name" and token.text.upper() in DAY_LITERALS:
            self.i += 1
            return DateRange(token.text.upper())
        if self.keyword("NULL"):
            return None
        raise self.fail()

    def test(self) -> Comparison:
        column = self.tok.column
        field = self.name()
        if self.tok.kind == "op" and self.tok.text in COMPARISONS:
            op = str(self.take().text)
            return Comparison(field, "!=" if op == "<>" else op, self.literal(), column)
        negated = self.keyword("NOT")
        if self.keyword("IN"):
            self.expect_punct("(")
            values = [self.literal()]
            while self.punct(","):
                values.append(self.literal())
            self.expect_punct(")")
            return Comparison(field, "NOT IN" if negated else "IN", tuple(values), column)
        if not negated and self.keyword("LIKE"):
            pattern = self.literal()
            if not isinstance(pattern, str):
                raise self.fail(self.tokens[self.i - 1])
            return Comparison(field, "LIKE", pattern, column)
        raise self.fail()


def parse(text: str) -> Query:
    """Parse a SOQL query; raises SoqlError with a Salesforce-like message on bad syntax or a too long statement."""
    if len(text) > MAX_SOQL_LENGTH:
        raise SoqlError(TOO_LONG_MESSAGE, 0, pointed=False)
    return _Parser(text).query()


def pointed_message(text: str, column: int, reason: str) -> str:
    """Salesforce's text for a query error: the query line, a caret under the column, the position, the reason."""
    line_start = text.rfind("\n", 0, column) + 1
    row = text.count("\n", 0, column) + 1
    line_end = text.find("\n", column)
    line = text[line_start : line_end if line_end >= 0 else len(text)]
    col = column - line_start
    return f"\n{line}\n{' ' * col}^\nERROR at Row:{row}:Column:{col + 1}\n{reason}"


def malformed_message(text: str, error: SoqlError) -> str:
    """The MALFORMED_QUERY text of a syntax error."""
    if not error.pointed:
        return error.message
    return pointed_message(text, error.column, error.message)


def like_regex(pattern: str) -> re.Pattern[str]:
    """SOQL LIKE: % any run, _ one character, case-insensitive."""
    parts = []
    for ch in pattern:
        parts.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)
