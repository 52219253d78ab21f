"""Which series a detection rule, a response playbook or a silence applies to.

All three name series the same way: a shell-style pattern on the series name
(`checkout.*`, `disk.used.[ab]`, `*`) and labels that must all be present with the same
values. A plain name is a pattern that matches only itself, so rules and playbooks
written before patterns existed keep matching what they matched.
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase
from typing import Protocol, TypeVar

from telemetry.labels import labels_normalize


def series_matches(
    pattern: str,
    required_labels: dict | None,
    name: str,
    labels: dict | None,
    *,
    exact_labels: bool = False,
) -> bool:
    """An empty pattern matches every name (a playbook for "any series").

    `fnmatchcase`, not `fnmatch`: the latter folds case on Windows and series names are
    case-sensitive everywhere. With `exact_labels` the series' labels must be exactly
    the required ones: "this series", not every series that also carries them
    (`cpu{host=a}` and not `cpu{host=a,core=1}`).

    A label with an empty value is no label, as in telemetry and Prometheus: a required
    ``env=""`` matches the series without ``env`` (Alertmanager's matcher does the same).
    """
    if pattern and not fnmatchcase(name, pattern):
        return False
    labels = labels_normalize(labels)
    if exact_labels:
        return labels == labels_normalize(required_labels)
    return all(labels.get(k, "") == v for k, v in (required_labels or {}).items())


class SeriesSelector(Protocol):
    """A row that names series: a tuning, a signal layer rule."""

    name: str
    series_name: str
    labels: dict


S = TypeVar("S", bound=SeriesSelector)


def most_specific(rows: Iterable[S], name: str, labels: dict | None) -> S | None:
    """The row matching series `name{labels}` that says the most about it: its own name
    over a pattern over any series, then more labels over fewer, then the first row's
    name in order. How a tuning or a layer rule applies where several match, so that a
    fleet-wide default and a per-service exception can both be written. `*` is any
    series, as an empty pattern is."""

    def specificity(row: S) -> tuple[int, int, str]:
        named = 2 if row.series_name == name else int(row.series_name not in ("", "*"))
        return (-named, -len(row.labels or {}), row.name)

    matching = [r for r in rows if series_matches(r.series_name, r.labels, name, labels)]
    return min(matching, key=specificity, default=None)


def equal_key(names: list[str], labels: dict | None) -> tuple[str, ...]:
    """The values of the named labels: two series agree on Alertmanager's `equal` when
    their keys are the same, an absent label counting as empty (so two series without
    `env` agree)."""
    labels = labels_normalize(labels)
    return tuple(labels.get(n, "") for n in names)


def labels_text(labels: dict[str, str]) -> str:
    """Labels as Alertmanager writes a group's: `{service="checkout"}`."""
    return "{" + ", ".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def pattern_regex(pattern: str) -> str:
    """`series_matches`' shell-style pattern as an anchored regular expression that
    PostgreSQL (`~`) and Python (SQLite's REGEXP) read alike, so a list can filter by
    pattern in SQL and paginate: `*`, `?`, `[seq]` and `[!seq]`, every other character
    literal. An empty pattern matches every name."""
    out, i, n = ["^"], 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            # A run of stars is one star (as fnmatch reads it); left as `.*.*...`, 600 of
            # them took PostgreSQL's regex engine 8 s for each series name.
            if out[-1] != ".*":
                out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[" and (end := _class_end(pattern, i)) is not None:
            body = pattern[i + 1 : end]
            negate = body.startswith("!")
            members = _class_members(body[1:] if negate else body)
            if members:
                out.append("[" + ("^" if negate else "") + members + "]")
            else:  # only reversed ranges, which fnmatch drops: nothing, or any character
                out.append("." if negate else "(?!x)x")
            i = end
        else:
            out.append(c if c.isalnum() or c == "_" else "\\" + c)
        i += 1
    out.append("$")
    return "".join(out)


def _class_end(pattern: str, start: int) -> int | None:
    """Where the `[` at `start` closes, as fnmatch reads it (a `]` right after `[` or `[!`
    is a member), or None: an unclosed `[` is a literal."""
    j = start + 1
    if j < len(pattern) and pattern[j] == "!":
        j += 1
    if j < len(pattern) and pattern[j] == "]":
        j += 1
    while j < len(pattern) and pattern[j] != "]":
        j += 1
    return j if j < len(pattern) else None


def _class_members(body: str) -> str:
    """A class's members for the regex: ranges kept (a reversed one dropped, as fnmatch
    does), every other character escaped if it means something inside a class."""
    out, k = [], 0
    while k < len(body):
        if k + 2 < len(body) and body[k + 1] == "-":
            lo, hi = body[k], body[k + 2]
            if lo <= hi:
                out.append(_class_char(lo) + "-" + _class_char(hi))
            k += 3
        else:
            out.append(_class_char(body[k]))
            k += 1
    return "".join(out)


def _class_char(ch: str) -> str:
    return "\\" + ch if ch in "\\^[]-" else ch
