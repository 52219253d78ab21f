"""Validation of ingestion batches (samples, events) as plain Python and numpy: no Django.

A batch may hold 100,000 rows; running a DRF serializer per row would cost more than
writing them. Here each row costs one tight loop iteration of type checks, and the
expensive parts (timestamp parsing, finiteness, range and duplicate checks) run once per
column with numpy/pandas. Errors come back in DRF's shape, keyed by row index, so the
API can answer ``{"samples": {"17": {"value": ["must be a finite number"]}}}``.

A batch is all or nothing: :class:`BatchInvalid` is raised when any row is wrong, and
callers write nothing.
"""

from __future__ import annotations

import gc
import hashlib
import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pandas as pd

from .labels import labels_normalize

MAX_ROWS = 100_000
#: rows reported in an error answer; a batch with 90,000 bad rows needs no 90,000-line answer
MAX_REPORTED_ROWS = 100

SAMPLE_FIELDS = frozenset({"series", "labels", "ts", "value", "unit"})
EVENT_FIELDS = frozenset({"user_id", "name", "ts", "session_id", "properties", "client_id"})

SERIES_NAME_MAX = 200
UNIT_MAX = 30
LABELS_KEY_MAX = 500
EVENT_TEXT_MAX = 100
# Label keys follow Prometheus' rules (plus dots); values may not hold the "," and "="
# that separate pairs in Series.labels_key, so two label sets never share one key.
LABEL_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
US = 1_000_000
# Year 5138 in epoch seconds: a larger number is a timestamp in milliseconds or finer (an
# exporter's unit, not a date), and the reason a client needs to hear.
MAX_EPOCH_SECONDS = 1e11
# PostgreSQL stores no NUL character, in text or in jsonb ("\u0000 cannot be converted to
# text"): one in a batch or a configured document was a 500 there (and stored on SQLite).
NUL = "\x00"
NUL_PROBLEM = "may not contain NUL characters"
# Ids beyond a signed 64-bit integer match no row, and the databases refuse them (SQLite
# raises OverflowError, PostgreSQL "bigint out of range"): id filters stop at this.
MAX_ID = 2**63 - 1


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a big batch is parsed and validated.

    Parsing 100,000 rows allocates some 200,000 dicts; each allocation threshold reached
    starts a collection that walks all of them again, which roughly doubles the parse
    time. Nothing in a batch forms a reference cycle, so pausing frees nothing late.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class BatchInvalid(Exception):
    """A batch with at least one bad row; ``errors`` is DRF-shaped and names rows and fields."""

    def __init__(self, errors: dict) -> None:
        super().__init__(errors)
        self.errors = errors


@dataclass(frozen=True)
class TimeBounds:
    """Accepted timestamps, epoch seconds: ``oldest <= ts <= newest``."""

    newest: float
    oldest: float | None = None
    oldest_reason: str = "is older than the raw retention window"


@dataclass(frozen=True)
class SampleBatch:
    """A valid batch as columns; ``series_index`` points into ``series``."""

    series: list[tuple[str, dict, str]]  # (name, labels, unit) of each distinct series
    series_index: np.ndarray  # int64, one per row
    ts_us: np.ndarray  # int64 microseconds since the epoch, UTC
    values: np.ndarray  # float64, finite

    def __len__(self) -> int:
        return int(self.ts_us.size)


@dataclass(frozen=True)
class EventBatch:
    """A valid batch of events as columns (``properties`` already serialized to JSON text)."""

    user_id: list[str]
    name: list[str]
    ts_us: np.ndarray
    session_id: list[str]
    properties_json: list[str]
    client_id: list[str]

    def __len__(self) -> int:
        return int(self.ts_us.size)


class _Errors:
    """Collects ``{row: {field: [messages]}}``, keeping the first MAX_REPORTED_ROWS rows."""

    def __init__(self) -> None:
        self.rows: dict[int, dict[str, list[str]]] = {}

    def add(self, row: int, field: str, message: str) -> None:
        if row not in self.rows and len(self.rows) >= MAX_REPORTED_ROWS:
            return
        self.rows.setdefault(row, {}).setdefault(field, []).append(message)

    def __bool__(self) -> bool:
        return bool(self.rows)

    def as_drf(self, key: str) -> dict:
        return {key: {str(i): self.rows[i] for i in sorted(self.rows)}}


def _batch_rows(payload: Any, key: str, allowed_top: frozenset[str]) -> list:
    if not isinstance(payload, dict):
        raise BatchInvalid({"non_field_errors": [f'expected an object {{"{key}": [...]}}']})
    unknown = sorted(set(payload) - allowed_top)
    if unknown:
        raise BatchInvalid({name: ["unknown field"] for name in unknown})
    rows = payload.get(key)
    if rows is None:
        raise BatchInvalid({key: ["this field is required"]})
    if not isinstance(rows, list):
        raise BatchInvalid({key: ["must be a list"]})
    if not rows:
        raise BatchInvalid({key: ["must not be empty"]})
    if len(rows) > MAX_ROWS:
        raise BatchInvalid({key: [f"at most {MAX_ROWS} rows per batch, got {len(rows)}"]})
    return rows


#: 0001-01-01 UTC in epoch seconds: the first moment Python's datetime (and a read's
#: window) can hold; an earlier number was a 500 in reads and a bad date at ingestion.
YEAR_ONE_SECONDS = datetime(1, 1, 1, tzinfo=UTC).timestamp()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Epoch seconds written as a string ("1700000000", "1.7e9"): ASCII only, so "١٢٣" is not one.
_NUMBER_RE = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*", re.ASCII)
TS_TYPE_PROBLEM = "must be an ISO-8601 string or epoch seconds"
TS_TEXT_PROBLEM = "must be an ISO-8601 timestamp or epoch seconds"


def timestamps_to_us(raw: list) -> tuple[np.ndarray, dict[int, str]]:
    """Timestamps -> int64 microseconds since the epoch (UTC), and why each bad one is refused.

    The one parser of every timestamp a client sends, ingested (``ts`` of samples and
    events) or read (``start``/``end`` of a query), so they accept the same things and
    refuse them with the same words; they used to differ (an epoch string was refused by
    ingestion and accepted by reads, milliseconds got "divide by 1000" only at ingestion).

    Accepted: epoch seconds as a number or as a numeric string (``"1700000000"``; numbers
    win, as in Prometheus' API, so ``"20261127"`` is seconds, not a basic ISO date), ISO-8601
    strings (offsets honoured, naive means UTC) and datetimes (internal callers). Refused:
    other types, non-finite numbers, 1e11 or more ("looks like milliseconds"), anything
    before year 1. The caller checks its own range (future, retention, ...).

    Kept column-wise for 100,000-row batches: one cheap test per string (ISO timestamps
    have a "-" at index 4), then pandas' ISO-8601 parser once for all of them; only strings
    that fail it are looked at one by one (dates outside pandas' 1677-2262 range, ISO week
    dates).
    """
    n = len(raw)
    out = np.zeros(n, dtype=np.int64)
    problems: dict[int, str] = {}
    num_idx: list[int] = []
    num_val: list[float] = []
    iso_idx: list[int] = []
    iso_val: list[str] = []
    odd: list[int] = []  # strings that may be numbers
    for i, t in enumerate(raw):
        kind = type(t)
        if kind is float or kind is int:
            num_idx.append(i)
            num_val.append(t)
        elif kind is str:
            if t[4:5] == "-":
                iso_idx.append(i)
                iso_val.append(t)
            else:
                odd.append(i)
        elif isinstance(t, datetime):  # internal callers (services) pass datetimes
            num_idx.append(i)
            num_val.append((t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp())
        else:
            problems[i] = TS_TYPE_PROBLEM
    for i in odd:
        text = raw[i]
        if _NUMBER_RE.fullmatch(text):
            num_idx.append(i)
            num_val.append(_float_or_inf(text))
        else:
            iso_idx.append(i)
            iso_val.append(text)
    if num_idx:
        idx = np.asarray(num_idx, dtype=np.int64)
        try:
            secs = np.asarray(num_val, dtype=np.float64)
        except OverflowError:  # an integer beyond float range
            secs = np.array([_float_or_inf(v) for v in num_val], dtype=np.float64)
        finite = np.isfinite(secs)
        usable = finite & (secs < MAX_EPOCH_SECONDS) & (secs >= YEAR_ONE_SECONDS)
        for i in idx[~finite].tolist():
            problems[i] = "must be a finite number of epoch seconds"
        for j in np.flatnonzero(finite & ~usable).tolist():
            problems[int(idx[j])] = _unit_problem(float(secs[j]))
        out[idx[usable]] = np.round(secs[usable] * US).astype(np.int64)
    if iso_idx:
        idx = np.asarray(iso_idx, dtype=np.int64)
        parsed = pd.to_datetime(
            pd.Series(iso_val, dtype=object), utc=True, format="ISO8601", errors="coerce"
        )
        bad = parsed.isna().to_numpy()
        good = ~bad
        naive_utc = parsed.dt.tz_convert(None).to_numpy().astype("datetime64[us]")
        out[idx[good]] = naive_utc[good].view(np.int64)
        for j in np.flatnonzero(bad).tolist():
            us = _iso_us(iso_val[j])
            if us is None:
                problems[int(idx[j])] = TS_TEXT_PROBLEM
            else:
                out[idx[j]] = us
    return out, problems


def _iso_us(text: str) -> int | None:
    """Python's own ISO-8601 reading of what pandas refused (years 1-9999, week dates)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1)


def parse_instant(value: Any) -> datetime:
    """One timestamp, as ``timestamps_to_us`` reads it; ValueError with the reason if bad.

    The query parameters of reads (``start``, ``end``) come through here, so a moment
    means the same and is refused with the same words whether it is ingested or read.
    """
    us, problems = timestamps_to_us([value])
    if problems:
        raise ValueError(problems[0])
    try:  # an offset can carry 0001-01-01 or 9999-12-31 out of datetime's range
        return _EPOCH + timedelta(microseconds=int(us[0]))
    except OverflowError as exc:
        raise ValueError("is out of range") from exc


def parse_timestamps(raw: list, errors: _Errors, bounds: TimeBounds) -> np.ndarray:
    """A batch's ``ts`` column -> int64 microseconds, bad and out-of-bounds rows noted."""
    out, problems = timestamps_to_us(raw)
    ok = np.ones(len(raw), dtype=bool)
    for i in sorted(problems):
        ok[i] = False
        errors.add(i, "ts", problems[i])
    newest = round(bounds.newest * US)
    for i in np.flatnonzero(ok & (out > newest)).tolist():
        errors.add(i, "ts", "is in the future")
    if bounds.oldest is not None:
        oldest = round(bounds.oldest * US)
        for i in np.flatnonzero(ok & (out < oldest)).tolist():
            errors.add(i, "ts", bounds.oldest_reason)
    return out


def _unit_problem(seconds: float) -> str:
    """Why a number too large for epoch seconds was refused (it used to read "in the future",
    or overflowed into a date PostgreSQL refused with a 500)."""
    if seconds > 0:
        return (
            f"must be epoch seconds: {seconds:.0f} looks like milliseconds or finer "
            "(divide by 1000)"
        )
    return "is out of range for epoch seconds"


def _float_or_inf(value: float) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf


def has_nul(document: Any) -> bool:
    """Whether a NUL character hides in a JSON document, keys included (walked without recursion)."""
    stack = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if NUL in node:
                return True
        elif isinstance(node, dict):
            stack.extend(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def label_problem(labels: Any) -> str | None:
    """Why `labels` cannot name a series (None if they can); other apps match on them too."""
    if not isinstance(labels, dict):
        return "must be an object of string keys to string values"
    for key, value in labels.items():
        if not LABEL_KEY_RE.match(key):
            return f"key {key!r} must match {LABEL_KEY_RE.pattern}"
        if not isinstance(value, str):
            return f"value of {key!r} must be a string"
        if "," in value or "=" in value:
            return f"value of {key!r} may not contain ',' or '='"
        if NUL in value:
            return f"value of {key!r} {NUL_PROBLEM}"
    if sum(len(k) + len(v) + 2 for k, v in labels.items()) > LABELS_KEY_MAX:
        return f"labels are longer than {LABELS_KEY_MAX} characters in total"
    return None


def validate_samples(payload: Any, *, bounds: TimeBounds) -> SampleBatch:
    """Check a ``{"samples": [...]}`` body and return it as columns, or raise BatchInvalid."""
    rows = _batch_rows(payload, "samples", frozenset({"samples"}))
    errors = _Errors()
    n = len(rows)
    # Rows name their series by (name, labels, unit); the loop keys them by the labels in
    # the order sent (no per-row sort) and checks each distinct key once.
    series_of: dict[tuple, int] = {}
    series: list[tuple[str, dict, str]] = []
    bad_series: dict[tuple, tuple[str, str]] = {}
    index = [0] * n
    raw_ts: list = [None] * n
    raw_values: list = [0.0] * n
    allowed = SAMPLE_FIELDS
    for i, row in enumerate(rows):
        if type(row) is not dict:
            errors.add(i, "non_field_errors", "must be an object")
            continue
        if not row.keys() <= allowed:
            for field in sorted(row.keys() - allowed):
                errors.add(i, field, "unknown field")
        name = row.get("series")
        labels = row.get("labels")
        unit = row.get("unit")
        raw_ts[i] = row.get("ts")
        value = row.get("value")
        kind = type(value)
        if kind is float or kind is int:
            raw_values[i] = value
        elif value is None:
            errors.add(i, "value", "this field is required")
        else:
            errors.add(i, "value", "must be a finite number")
        # Only a dict (or no labels at all) is keyed: a falsy non-object ([], "", 0, false)
        # must not share the key of "no labels", or it would be stored as {} (first) or
        # poison the valid rows after it; such a row is checked on its own.
        try:
            if labels is None or type(labels) is dict:
                key = (name, tuple(labels.items()) if labels else (), unit)
                known = series_of.get(key)
            else:
                key, known = None, None
        except TypeError:  # unhashable name, label values or unit
            key, known = None, None
        if known is not None:
            index[i] = known
            continue
        if key in bad_series:
            errors.add(i, *bad_series[key])
            continue
        labels = {} if labels is None else labels
        unit = "" if unit is None else unit
        problem = _series_problem(name, labels, unit)
        if problem:
            errors.add(i, *problem)
            if key is not None:
                bad_series[key] = problem
            continue
        series_of[key] = index[i] = len(series)
        # {"env": ""} is no label (Prometheus): merged below with the rows that leave it out
        series.append((name, labels_normalize(labels), unit))
    ts_us = parse_timestamps(raw_ts, errors, bounds)
    values = np.asarray(raw_values, dtype=np.float64)
    for i in np.flatnonzero(~np.isfinite(values)).tolist():
        errors.add(i, "value", "must be a finite number")
    series, series_index = _merge_label_orders(series, np.asarray(index, dtype=np.int64))
    if not errors:
        _flag_conflicting_duplicates(series_index, ts_us, values, errors)
    if errors:
        raise BatchInvalid(errors.as_drf("samples"))
    return SampleBatch(series=series, series_index=series_index, ts_us=ts_us, values=values)


def _merge_label_orders(
    series: list[tuple[str, dict, str]], index: np.ndarray
) -> tuple[list[tuple[str, dict, str]], np.ndarray]:
    """One entry per series however its labels were ordered (runs over distinct keys only)."""
    canonical: dict[tuple, int] = {}
    remap = np.empty(len(series), dtype=np.int64)
    merged: list[tuple[str, dict, str]] = []
    for j, (name, labels, unit) in enumerate(series):
        key = (name, tuple(sorted(labels.items())))
        if key not in canonical:
            canonical[key] = len(merged)
            merged.append((name, labels, unit))
        remap[j] = canonical[key]
    return merged, remap[index] if len(series) else index


def _series_problem(name: Any, labels: Any, unit: Any) -> tuple[str, str] | None:
    if name is None:
        return ("series", "this field is required")
    if not isinstance(name, str) or not name.strip():
        return ("series", "must be a non-empty string")
    if len(name) > SERIES_NAME_MAX:
        return ("series", f"at most {SERIES_NAME_MAX} characters")
    if NUL in name:
        return ("series", NUL_PROBLEM)
    # "cpu\n" or " cpu" is a second series beside "cpu" that nobody can tell apart in the
    # admin, while every system reads the first: refused rather than silently split.
    if name != name.strip():
        return ("series", "may not start or end with whitespace")
    if CONTROL_RE.search(name):
        return ("series", "may not contain control characters")
    if (problem := label_problem(labels)) is not None:
        return ("labels", problem)
    if not isinstance(unit, str) or len(unit) > UNIT_MAX:
        return ("unit", f"must be a string of at most {UNIT_MAX} characters")
    if NUL in unit:
        return ("unit", NUL_PROBLEM)
    return None


def _flag_conflicting_duplicates(
    index: np.ndarray, ts_us: np.ndarray, values: np.ndarray, errors: _Errors
) -> None:
    """Two rows for one (series, ts) with different values: which one is true is unknowable.

    Identical repeats are harmless (a client re-sending part of a batch) and pass.
    """
    order = np.lexsort((ts_us, index))
    same = (index[order][1:] == index[order][:-1]) & (ts_us[order][1:] == ts_us[order][:-1])
    differ = same & (values[order][1:] != values[order][:-1])
    for pos in np.flatnonzero(differ).tolist():
        first, second = sorted((int(order[pos]), int(order[pos + 1])))
        errors.add(second, "ts", f"row {first} has the same series and ts with another value")


def _text(row: dict, field: str, i: int, errors: _Errors, *, required: bool) -> str:
    value = row.get(field)
    if value is None or value == "":
        if required:
            errors.add(i, field, "this field is required")
        return ""
    if type(value) is not str:
        errors.add(i, field, "must be a string")
        return ""
    if len(value) > EVENT_TEXT_MAX:
        errors.add(i, field, f"at most {EVENT_TEXT_MAX} characters")
    if NUL in value:
        errors.add(i, field, NUL_PROBLEM)
    return value


def content_client_id(user_id: str, name: str, ts_us: int, session_id: str, props: str) -> str:
    """A stable id for an event sent without ``client_id``, so re-sending it changes nothing.

    Two events identical to the microsecond in every field are one event sent twice.
    """
    digest = hashlib.sha256(f"{user_id}\x1f{name}\x1f{ts_us}\x1f{session_id}\x1f{props}".encode())
    return "sha256:" + digest.hexdigest()[:40]


def validate_events(
    payload: Any,
    *,
    bounds: TimeBounds,
    make_client_id: Callable[[str, str, int, str, str], str] = content_client_id,
) -> EventBatch:
    """Check an ``{"events": [...]}`` body and return it as columns, or raise BatchInvalid."""
    rows = _batch_rows(payload, "events", frozenset({"events"}))
    errors = _Errors()
    n = len(rows)
    users, names, sessions, props, clients = [""] * n, [""] * n, [""] * n, ["{}"] * n, [""] * n
    raw_ts: list = [None] * n
    for i, row in enumerate(rows):
        if type(row) is not dict:
            errors.add(i, "non_field_errors", "must be an object")
            continue
        if not row.keys() <= EVENT_FIELDS:
            for field in sorted(row.keys() - EVENT_FIELDS):
                errors.add(i, field, "unknown field")
        users[i] = _text(row, "user_id", i, errors, required=True)
        names[i] = _text(row, "name", i, errors, required=True)
        sessions[i] = _text(row, "session_id", i, errors, required=False)
        clients[i] = _text(row, "client_id", i, errors, required=False)
        raw_ts[i] = row.get("ts")
        properties = row.get("properties")
        if properties is None:
            continue
        if type(properties) is not dict:
            errors.add(i, "properties", "must be an object")
            continue
        try:
            props[i] = orjson.dumps(properties, option=orjson.OPT_SORT_KEYS).decode()
        except (TypeError, orjson.JSONEncodeError):
            errors.add(i, "properties", "must be JSON-serializable")
            continue
        # orjson writes a NUL as "\u0000": only then is the document walked for a real one.
        if "\\u0000" in props[i] and has_nul(properties):
            errors.add(i, "properties", NUL_PROBLEM)
    ts_us = parse_timestamps(raw_ts, errors, bounds)
    if not errors:
        _flag_duplicate_client_ids(clients, errors)
    if errors:
        raise BatchInvalid(errors.as_drf("events"))
    for i in range(n):
        if not clients[i]:
            clients[i] = make_client_id(users[i], names[i], int(ts_us[i]), sessions[i], props[i])
    return EventBatch(
        user_id=users,
        name=names,
        ts_us=ts_us,
        session_id=sessions,
        properties_json=props,
        client_id=clients,
    )


def _flag_duplicate_client_ids(clients: list[str], errors: _Errors) -> None:
    seen: dict[str, int] = {}
    for i, cid in enumerate(clients):
        if not cid:
            continue
        first = seen.setdefault(cid, i)
        if first != i:
            errors.add(i, "client_id", f"row {first} has the same client_id")


def change_errors(
    *, at: datetime | None, title: Any, labels: Any, now: datetime, max_future_seconds: float
) -> dict:
    """What makes a change event unusable, by field (empty when it is fine). A change in
    the future beyond the clock's drift is a typed-wrong date: it would sit before every
    onset of the coming days as a suspect."""
    errors: dict[str, list[str]] = {}
    if at is not None and (at - now).total_seconds() > max_future_seconds:
        errors["at"] = ["is in the future: give when the change took effect"]
    if not isinstance(title, str) or not title.strip():
        errors["title"] = ["say what changed (`checkout 1.4.2`)"]
    elif "\x00" in title:
        errors["title"] = [NUL_PROBLEM]
    if (problem := label_problem(labels)) is not None:
        errors["labels"] = [problem]
    return errors
