"""A credential's factor expression: which factors together authorize it (CSC ``auth.expression``).

CSC allows ``AND``, ``OR``, ``XOR`` and parentheses over the IDs of the authentication objects.
rssp takes the part of that language it can explain to a signer and check at a glance: a
conjunction of groups, each group one factor ID or a parenthesised ``OR`` of IDs, e.g.
``PIN AND (OTP OR FIDO)``. ``PIN`` is always a group of its own: at level 3 the key unwraps only
with the key-encryption key derived from it (docs/level3.md), and at every level it is the
knowledge factor the others add to. XOR is refused: "one but not both" protects nothing.

A request satisfies the expression when every group has at least one of its IDs among the
factors supplied; every supplied factor is checked, and one wrong factor fails the request.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

PIN = "PIN"
_TOKEN = re.compile(r"\s*(\(|\)|[A-Z][A-Z0-9_]*)")


class ExpressionError(ValueError):
    """Not an expression rssp can check (the message says why; safe to show)."""


@dataclass(frozen=True)
class Expression:
    groups: tuple[tuple[str, ...], ...]  # AND of groups; each group an OR of factor IDs

    def __str__(self) -> str:
        return " AND ".join(g[0] if len(g) == 1 else "(" + " OR ".join(g) + ")" for g in self.groups)

    @property
    def ids(self) -> frozenset[str]:
        return frozenset(i for g in self.groups for i in g)

    def satisfied_by(self, supplied: Iterable[str]) -> bool:
        have = set(supplied)
        return all(have.intersection(g) for g in self.groups)

    def restricted_to(self, usable: Iterable[str]) -> Expression | None:
        """The expression with only ``usable`` IDs, or None if some group then has none left."""
        keep = set(usable)
        groups = tuple(tuple(i for i in g if i in keep) for g in self.groups)
        return None if any(not g for g in groups) else Expression(groups)

    @property
    def factor_count(self) -> int:
        """The fewest factors that satisfy it (one per group)."""
        return len(self.groups)


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ExpressionError(f"unexpected text at {pos}: {text[pos:pos + 10]!r}")
        out.append(match.group(1))
        pos = match.end()
    return out


def parse(text: str, known: Iterable[str]) -> Expression:
    """Parse ``text``; every ID must be one of ``known``, ``PIN`` a group of its own, no ID twice."""
    tokens = _tokens(text)
    groups = [_group(tokens)] if tokens else []
    while tokens:
        if tokens.pop(0) != "AND":
            raise ExpressionError("groups are joined with AND; OR only inside parentheses")
        if not tokens:
            raise ExpressionError("the expression ends with AND")
        groups.append(_group(tokens))
    return check(Expression(tuple(groups)), known)


def _group(tokens: list[str]) -> tuple[str, ...]:
    first = tokens.pop(0)
    if first != "(":
        _id(first)
        return (first,)
    ids = [_id(tokens.pop(0) if tokens else ")")]
    while tokens and tokens[0] == "OR":
        tokens.pop(0)
        ids.append(_id(tokens.pop(0) if tokens else ")"))
    if not tokens or tokens.pop(0) != ")":
        raise ExpressionError("a group opened with ( must close with ) after IDs joined by OR")
    return tuple(ids)


def _id(token: str) -> str:
    if token in ("AND", "OR", "XOR", "(", ")"):
        raise ExpressionError(f"a factor ID was expected, not {token}")
    return token


def check(expr: Expression, known: Iterable[str]) -> Expression:
    known_ids = set(known)
    seen: list[str] = [i for g in expr.groups for i in g]
    if not expr.groups:
        raise ExpressionError("the expression is empty")
    if len(seen) != len(set(seen)):
        raise ExpressionError("a factor appears twice")
    unknown = set(seen) - known_ids
    if unknown:
        raise ExpressionError(f"unknown factor(s): {', '.join(sorted(unknown))}")
    if (PIN,) not in expr.groups:
        raise ExpressionError("PIN must be required on its own (PIN AND ...)")
    unused = known_ids - set(seen)
    if unused:
        raise ExpressionError(f"linked factor(s) missing from the expression: {', '.join(sorted(unused))}")
    return expr


def conjunction(groups: Iterable[tuple[str, ...]]) -> Expression:
    """The default when none is given: every linked factor (CSC: an empty expression is AND of all)."""
    return Expression(tuple(groups))
