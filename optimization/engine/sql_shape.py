"""Normalise SQL text into a *shape*: the same statement with different parameters has one shape.

The middleware calls :func:`sql_shape` once per executed query, so it has to be cheap. Django
already sends parameterised SQL (``%s`` placeholders) to ``execute_wrapper``, which means the
same ORM call produces byte-identical text nearly every time; an LRU cache in front of the regex
pipeline turns the common case into one dictionary lookup. The regexes handle what does vary
between calls: inlined literals (raw SQL), ``IN (...)`` lists whose length follows the data, and
multi-row ``VALUES`` lists.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

_COMMENTS = re.compile(r"/\*.*?\*/|--[^\n]*", re.S)
_STRING = re.compile(r"'(?:[^']|'')*'")
_PLACEHOLDER = re.compile(r"%\(\w+\)s|%s|\$\d+|(?<!:):[A-Za-z_]\w*|\?")
# A number that is not part of an identifier (t1, col_2) nor of a quoted name.
_NUMBER = re.compile(r"(?<![\w.\"])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?\b")
_WHITESPACE = re.compile(r"\s+")
_LIST = re.compile(r"\(\s*\?(?:\s*,\s*\?)*\s*\)")
_ROWS = re.compile(r"\(\?\)(?:\s*,\s*\(\?\))+")
# Django names each savepoint after the thread and a per-connection counter that only grows
# ("s140355013823360_x17"), so every SAVEPOINT / RELEASE / ROLLBACK TO statement is new text.
_SAVEPOINT = re.compile(r"\b(SAVEPOINT)\s+(?:\"[^\"]*\"|\w+)", re.I)
_SAVEPOINT_PREFIXES = ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT")


def _normalise(sql: str) -> str:
    text = _COMMENTS.sub(" ", sql)
    text = _SAVEPOINT.sub(lambda m: m.group(1).upper() + " ?", text)
    text = _STRING.sub("?", text)
    text = _PLACEHOLDER.sub("?", text)
    text = _NUMBER.sub("?", text)
    text = _WHITESPACE.sub(" ", text).strip()
    text = _LIST.sub("(?)", text)
    return _ROWS.sub("(?)", text)


_cached_normalise = lru_cache(maxsize=8192)(_normalise)


def sql_shape(sql: str) -> str:
    """Return the parameter-free shape of ``sql``.

    Literals and placeholders become ``?``; ``IN (?, ?, ?)`` and multi-row ``VALUES`` lists
    collapse to ``(?)`` so that fetching 3 or 30 ids is the same shape (an N+1 detector must
    see them as one repeated statement). Comments and whitespace runs are dropped because ORMs
    and tracers add them without changing what the database does. Savepoint names become ``?``
    too: Django's are unique per statement, so each would be a shape (an hourly row) of its
    own and would push a reusable statement out of the cache; they skip the cache.
    """
    if sql.startswith(_SAVEPOINT_PREFIXES):
        return _normalise(sql)
    return _cached_normalise(sql)


@lru_cache(maxsize=8192)
def shape_key(shape: str) -> str:
    """A short stable id for a shape, small enough to be a telemetry label value.

    A hash rather than the text because shapes can be kilobytes long and labels are indexed.
    """
    return hashlib.blake2b(shape.encode(), digest_size=8).hexdigest()


# Statements on the ``default`` database keep their bare shape, so profiles (and shape keys)
# recorded before other databases were profiled stay comparable; a statement on any other
# database gets its alias in front, as an SQL comment so the shape still reads as SQL.
DEFAULT_ALIAS = "default"
_ALIAS_TAG = "/* db:"
_ALIAS_END = " */ "


def alias_tag(alias: str) -> str:
    """The prefix that marks a shape as run on database ``alias`` ("" for ``default``).

    The same statement on the primary and on a replica is two different costs (and an N+1
    loop on a replica is fixed on the replica's query), so the alias is part of the shape:
    it separates the hourly rows, the shape keys and the N+1 runs, and the user reads it in
    every finding that quotes the shape. The middleware computes this once per alias and
    request and prepends it per statement: one string concatenation, no lookup.
    """
    return "" if alias == DEFAULT_ALIAS else f"{_ALIAS_TAG}{alias}{_ALIAS_END}"


def shape_database(shape: str) -> tuple[str, str]:
    """Split a recorded shape into ``(alias, shape without the tag)``; untagged is ``default``."""
    if shape.startswith(_ALIAS_TAG):
        end = shape.find(_ALIAS_END, len(_ALIAS_TAG))
        if end > 0:
            return shape[len(_ALIAS_TAG) : end], shape[end + len(_ALIAS_END) :]
    return DEFAULT_ALIAS, shape
