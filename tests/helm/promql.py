"""Enough of PromQL to check a dashboard's queries against the series that really exist.

A query is tokenised and parsed by PromQL's grammar (selectors with label matchers, range and subquery
brackets, ``offset``, function calls, aggregations with ``by``/``without`` before or after their
arguments, binary operators by precedence with ``bool``, ``on``/``ignoring`` and
``group_left``/``group_right``), then checked by following the labels through it: a selector must name a
known series and match only labels that series has; ``by``/``on``/``ignoring`` may name only labels their
operands carry; ``histogram_quantile`` needs ``le``. :func:`check` returns one line per problem and the
label names of the result, which a panel's legend (``{{label}}``) may use.

Grafana's template syntax is accepted where Grafana substitutes it before Prometheus sees the query:
``$var`` and ``${var}`` in strings and ranges (``[$__rate_interval]``), and the ``label_values(selector,
label)`` form of a variable query (:func:`check_label_values`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

AGGREGATIONS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "group", "topk", "bottomk", "quantile",
    "count_values", "limitk", "limit_ratio",
}  # fmt: skip
PARAM_AGGREGATIONS = {"topk", "bottomk", "quantile", "count_values", "limitk", "limit_ratio"}
# Functions whose result keeps its vector argument's labels (the common case); others are listed apart.
SCALAR_FUNCTIONS = {"time", "pi", "scalar"}
LABEL_DROPPING = {"histogram_quantile": "le"}
# precedence, low to high (PromQL: or < and/unless < comparisons < +- < */% atan2 < ^)
PRECEDENCE = {
    "or": 1, "and": 2, "unless": 2,
    "==": 3, "!=": 3, "<=": 3, "<": 3, ">=": 3, ">": 3,
    "+": 4, "-": 4, "*": 5, "/": 5, "%": 5, "atan2": 5, "^": 6,
}  # fmt: skip
COMPARISONS = {"==", "!=", "<=", "<", ">=", ">"}
SET_OPERATORS = {"and", "or", "unless"}

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<duration>(?:\d+(?:ms|s|m|h|d|w|y))+)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|0x[0-9a-fA-F]+|[Ii]nf|NaN)
  | (?P<variable>\$\{[A-Za-z_][A-Za-z0-9_:]*\}|\$[A-Za-z_][A-Za-z0-9_]*)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>=~|!~|==|!=|<=|>=|[-+*/%^<>=(){}\[\],:@])
    """,
    re.VERBOSE,
)


class PromQLError(ValueError):
    pass


@dataclass(frozen=True)
class Token:
    kind: str
    text: str


def tokenize(query: str) -> list[Token]:
    tokens, pos = [], 0
    while pos < len(query):
        m = _TOKEN.match(query, pos)
        if m is None:
            raise PromQLError(f"unexpected character {query[pos]!r} at {pos} in {query!r}")
        pos = m.end()
        if m.lastgroup != "space":
            tokens.append(Token(m.lastgroup or "", m.group()))
    return tokens


@dataclass
class Result:
    """What a (sub)expression yields: a scalar, or a vector with these label names."""

    labels: frozenset[str] | None  # None: a scalar or string
    problems: list[str] = field(default_factory=list)


Catalogue = Mapping[str, frozenset[str]]  # series name -> label names a scrape gives it


class _Parser:
    def __init__(self, query: str, catalogue: Catalogue) -> None:
        self.query = query
        self.tokens = tokenize(query)
        self.pos = 0
        self.catalogue = catalogue
        self.problems: list[str] = []
        self.selectors: list[str] = []

    # --- token helpers
    def peek(self, offset: int = 0) -> Token | None:
        i = self.pos + offset
        return self.tokens[i] if i < len(self.tokens) else None

    def take(self, text: str | None = None, kind: str | None = None) -> Token:
        tok = self.peek()
        if tok is None or (text is not None and tok.text != text) or (kind is not None and tok.kind != kind):
            want = text or kind
            raise PromQLError(f"expected {want!r}, got {tok.text if tok else 'end'!r} in {self.query!r}")
        self.pos += 1
        return tok

    def at(self, text: str) -> bool:
        tok = self.peek()
        return tok is not None and tok.text == text

    def label_list(self) -> list[str]:
        self.take("(")
        names = []
        while not self.at(")"):
            names.append(self.take(kind="ident").text)
            if not self.at(")"):
                self.take(",")
        self.take(")")
        return names

    # --- grammar
    def parse(self) -> Result:
        result = self.expr(0)
        if self.peek() is not None:
            raise PromQLError(f"unexpected {self.peek().text!r} in {self.query!r}")  # type: ignore[union-attr]
        return Result(result.labels, self.problems)

    def expr(self, min_precedence: int) -> Result:
        left = self.unary()
        while True:
            tok = self.peek()
            op = tok.text.lower() if tok is not None and tok.kind in ("op", "ident") else None
            if op not in PRECEDENCE or PRECEDENCE[op] < min_precedence:
                return left
            self.pos += 1
            is_bool = False
            if self.at("bool"):
                self.take("bool")
                is_bool = True
            on = ignoring = None
            if self.at("on"):
                self.take("on")
                on = self.label_list()
            elif self.at("ignoring"):
                self.take("ignoring")
                ignoring = self.label_list()
            group: list[str] | None = None
            if self.peek() is not None and self.peek().text in ("group_left", "group_right"):  # type: ignore[union-attr]
                self.pos += 1
                group = self.label_list() if self.at("(") else []
            next_min = PRECEDENCE[op] + (0 if op == "^" else 1)  # ^ is right-associative
            right = self.expr(next_min)
            left = self.binary(op, left, right, is_bool, on, ignoring, group)

    def binary(
        self,
        op: str,
        left: Result,
        right: Result,
        is_bool: bool,
        on: list[str] | None,
        ignoring: list[str] | None,
        group: list[str] | None,
    ) -> Result:
        if left.labels is None or right.labels is None:
            return Result(left.labels if left.labels is not None else right.labels)
        both = left.labels & right.labels
        for name in on or ignoring or []:
            if name not in left.labels or name not in right.labels:
                self.problems.append(f"{op} on/ignoring label {name!r} missing on one side")
        if on is None and ignoring is None and left.labels != right.labels and op not in SET_OPERATORS:
            diff = sorted(left.labels ^ right.labels)
            self.problems.append(f"{op}: the operands' labels differ ({diff}), so no series would match")
        if op in SET_OPERATORS:
            return Result(left.labels | right.labels if op == "or" else left.labels)
        if op in COMPARISONS and not is_bool:
            return Result(left.labels)  # a filter: the left sample as it is
        if group is not None:
            return Result(left.labels | frozenset(group))
        if on is not None:
            return Result(frozenset(on))
        if ignoring is not None:
            return Result(left.labels - frozenset(ignoring))
        return Result(both)

    def unary(self) -> Result:
        if self.at("-") or self.at("+"):
            self.pos += 1
            return self.unary()
        return self.postfix(self.primary())

    def postfix(self, result: Result) -> Result:
        while True:
            if self.at("["):  # a range or subquery: labels unchanged
                self.take("[")
                while not self.at("]"):
                    self.pos += 1
                self.take("]")
            elif self.at("offset"):
                self.take("offset")
                if self.at("-"):
                    self.take("-")
                self.pos += 1
            elif self.at("@"):
                self.take("@")
                self.pos += 1
                if self.at("("):
                    self.take("(")
                    self.take(")")
            else:
                return result

    def primary(self) -> Result:
        tok = self.peek()
        if tok is None:
            raise PromQLError(f"unexpected end of {self.query!r}")
        if tok.kind in ("number", "string", "duration", "variable"):
            self.pos += 1
            return Result(None)
        if tok.text == "(":
            self.take("(")
            inner = self.expr(0)
            self.take(")")
            return inner
        if tok.text == "{":
            return self.selector(None)
        if tok.kind != "ident":
            raise PromQLError(f"unexpected {tok.text!r} in {self.query!r}")
        nxt = self.peek(1)
        if tok.text in AGGREGATIONS and nxt is not None and nxt.text in ("(", "by", "without"):
            return self.aggregation()
        if nxt is not None and nxt.text == "(":
            return self.call()
        return self.selector(self.take(kind="ident").text)

    def selector(self, name: str | None) -> Result:
        matchers: list[tuple[str, str]] = []
        if self.at("{"):
            self.take("{")
            while not self.at("}"):
                label = self.take(kind="ident").text
                op = self.take(kind="op").text
                if op not in ("=", "!=", "=~", "!~"):
                    raise PromQLError(f"bad matcher operator {op!r} in {self.query!r}")
                self.take(kind="string" if self.peek() and self.peek().kind == "string" else "variable")  # type: ignore[union-attr]
                matchers.append((label, op))
                if not self.at("}"):
                    self.take(",")
            self.take("}")
        name = name or next((m for m in matchers if m[0] == "__name__"), (None,))[0]
        if name is None:
            self.problems.append(f"a selector without a metric name in {self.query!r}")
            return Result(frozenset())
        self.selectors.append(name)
        labels = self.catalogue.get(name)
        if labels is None:
            self.problems.append(f"series {name!r} is not produced")
            return Result(frozenset())
        for label, _ in matchers:
            if label != "__name__" and label not in labels:
                self.problems.append(f"{name}: no label {label!r} (it has {sorted(labels)})")
        return Result(labels)

    def aggregation(self) -> Result:
        op = self.take(kind="ident").text
        grouping: tuple[str, list[str]] | None = None
        if self.at("by") or self.at("without"):
            grouping = (self.take().text, self.label_list())
        self.take("(")
        if op in PARAM_AGGREGATIONS:
            self.expr(0)
            self.take(",")
        inner = self.expr(0)
        self.take(")")
        if self.at("by") or self.at("without"):
            grouping = (self.take().text, self.label_list())
        have = inner.labels or frozenset()
        if grouping is None:
            return Result(frozenset())
        kind, names = grouping
        for name in names:
            if name not in have:
                self.problems.append(f"{op} {kind} ({name}): the series have no label {name!r}")
        return Result(frozenset(names) if kind == "by" else have - frozenset(names))

    def call(self) -> Result:
        name = self.take(kind="ident").text
        self.take("(")
        args: list[Result] = []
        while not self.at(")"):
            args.append(self.expr(0))
            if not self.at(")"):
                self.take(",")
        self.take(")")
        if name in SCALAR_FUNCTIONS:
            return Result(None)
        if name == "vector":
            return Result(frozenset())
        vectors = [a for a in args if a.labels is not None]
        labels = vectors[0].labels if vectors else None
        dropped = LABEL_DROPPING.get(name)
        if dropped is not None and labels is not None:
            if dropped not in labels:
                self.problems.append(f"{name} needs a {dropped!r} label (a histogram's _bucket series)")
            labels = labels - {dropped}
        return Result(labels)


def check(query: str, catalogue: Catalogue) -> tuple[frozenset[str], list[str], list[str]]:
    """(result labels, problems, series names selected) of ``query`` against ``catalogue``."""
    parser = _Parser(query, catalogue)
    result = parser.parse()
    return result.labels or frozenset(), result.problems, parser.selectors


def check_label_values(query: str, catalogue: Catalogue) -> list[str]:
    """Problems of a Grafana variable query ``label_values(selector, label)``."""
    m = re.fullmatch(r"\s*label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*", query)
    if m is None:
        return [f"not a label_values(selector, label) query: {query!r}"]
    labels, problems, _ = check(m.group(1), catalogue)
    if m.group(2) not in labels:
        problems.append(f"label_values: the series have no label {m.group(2)!r}")
    return problems


def legend_labels(legend: str) -> set[str]:
    return set(re.findall(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}", legend or ""))
