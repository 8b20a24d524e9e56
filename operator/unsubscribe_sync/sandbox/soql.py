"""A small SOQL parser for the subset the project issues (a real tokenizer and recursive-descent parser).

    SELECT field [, field]... | COUNT()  FROM Object
    [WHERE condition]  [ORDER BY field [ASC|DESC] [, ...]]  [LIMIT n]  [OFFSET n]

    condition := term (OR term)* ; term := factor (AND factor)* ; factor := NOT factor | '(' condition ')' | test
    test := field (= | != | <> | < | <= | > | >=) literal | field [NOT] IN (literal, ...) | field LIKE 'pattern'
    literal := true | false | null | 'string' | number

Keywords and field names are case-insensitive, as in Salesforce. Field names are checked later, against the
object's fields (the parser knows no schema).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeAlias

Literal: TypeAlias = bool | str | int | float | None

KEYWORDS = {
    "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER", "BY", "ASC", "DESC",
    "NULLS", "FIRST", "LAST", "LIMIT", "OFFSET", "TRUE", "FALSE", "NULL",
}  # fmt: skip
COMPARISONS = {"=", "!=", "<>", "<", "<=", ">", ">="}

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<number>-?\d+(?:\.\d+)?(?![A-Za-z_]))
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<punct>[(),])
    """,
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "'": "'", '"': '"', "\\": "\\"}


class SoqlError(Exception):
    """A syntax error; `message` reads like Salesforce's MALFORMED_QUERY text."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(message)
        self.message = message
        self.column = column


@dataclass(frozen=True)
class Token:
    kind: str  # string | number | name | keyword | op | punct | end
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
    fields: tuple[str, ...]  # empty for COUNT()
    count: bool
    where: Condition | None
    order_by: tuple[OrderBy, ...]
    limit: int | None
    offset: int | None
    field_columns: tuple[int, ...] = ()  # where each selected field starts in the text


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
        return SoqlError(f"unexpected token: {shown}", token.column)

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
        if self.tok.kind == "name" and self.tok.text.upper() == "COUNT" and self.tokens[self.i + 1].text == "(":
            self.i += 2
            self.expect_punct(")")
            count = True
        else:
            columns.append(self.tok.column)
            fields.append(self.name())
            while self.punct(","):
                columns.append(self.tok.column)
                fields.append(self.name())
        self.expect_keyword("FROM")
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
        return Query(self.text, sobject, tuple(fields), count, where, tuple(order_by), limit, offset, tuple(columns))

    def condition(self) -> Condition:
        items = [self.term()]
        while self.keyword("OR"):
            items.append(self.term())
        return items[0] if len(items) == 1 else BoolOp("OR", tuple(items))

    def term(self) -> Condition:
        items = [self.factor()]
        while self.keyword("AND"):
            items.append(self.factor())
        return items[0] if len(items) == 1 else BoolOp("AND", tuple(items))

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
        if token.kind in ("string", "number") or (token.kind == "keyword" and token.text in ("TRUE", "FALSE")):
            self.i += 1
            return token.value
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
    """Parse a SOQL query; raises SoqlError with a Salesforce-like message on bad syntax."""
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
    return pointed_message(text, error.column, error.message)


def like_regex(pattern: str) -> re.Pattern[str]:
    """SOQL LIKE: % any run, _ one character, case-insensitive."""
    parts = []
    for ch in pattern:
        parts.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)
