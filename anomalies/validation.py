"""Checks on detection rules, response playbooks and silences, shared by the API and the admin.

The scoring job reads every enabled rule and playbook on every run, so one row it cannot
use would fail the run for every series. Both writers (the API serializers and the admin
forms, through `Model.clean`) ask these functions, which return errors keyed by field;
the scoring job asks them again and skips a row that fails (one written from a shell).
"""

from __future__ import annotations

import inspect
import math
import re
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from celery import Task, current_app
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator, URLValidator

from telemetry.validation import NUL_PROBLEM, has_nul, label_problem

from .time_windows import WEEKDAYS

# An anomaly last seen longer ago than this pages nobody: a new series' week of backfill
# finds its old incidents, and they are history, not news.
RESPONSE_MAX_AGE = timedelta(hours=1)
# The task retries a failed action until the playbook's `max_attempts`; with backoff
# capped at 10 minutes, 10 attempts span about 40 minutes.
MAX_ATTEMPTS = 10
# A playbook's repeat interval (Alertmanager's `repeat_interval`): not more often than the
# scoring job could notice, not so rarely that it is "once" under another name.
MIN_REPEAT_SECONDS = 300
MAX_REPEAT_SECONDS = 7 * 86400
# A playbook's incident-update interval (Alertmanager's `group_interval`, 5 minutes by
# default there and here): from a minute, the scoring job's period, to a day.
DEFAULT_UPDATE_SECONDS = 300
# How long a `group_by` group's first page may wait for the rest of the group (Alertmanager's
# group_wait, 30 s by default there; the scoring job runs every minute). An hour is already
# an incident nobody was told of.
MAX_GROUP_WAIT_SECONDS = 3600
MIN_UPDATE_SECONDS = 60
MAX_UPDATE_SECONDS = 86400
# How long after its cause was last abnormal an inhibited effect may still be abnormal and
# count as that incident's tail (`services.inhibition`): endpoints recover minutes after
# the database they wait on (the demo's take 10 to 20), and paging each of them "firing"
# as the cause resolves is the page storm inhibition is there to prevent. A service that
# warms its caches for an hour after an outage needs longer; 0 pages an effect still
# abnormal as soon as its cause recovers.
DEFAULT_EFFECT_GRACE_SECONDS = 1800
MAX_EFFECT_GRACE_SECONDS = 86400
# The actions that tell a person (and so may remind them); a task runs once per anomaly.
NOTIFY_ACTIONS = ("webhook", "slack", "teams", "pagerduty", "email")
# Passed to a playbook's task when its signature accepts it (or **kwargs).
ANOMALY_KWARG = "anomaly_id"
_ACTIONS = ("webhook", "slack", "teams", "pagerduty", "email", "celery_task")
# Actions whose target is a URL to POST to.
URL_ACTIONS = ("webhook", "slack", "teams")
# Receivers that hold an alert's state: told when it escalates and when it resolves. Their
# targets are credentials (a URL that posts to the channel, a routing key), shown masked.
ALERT_ACTIONS = (*URL_ACTIONS, "pagerduty")
# A PagerDuty Events API v2 integration key ("routing key"): 32 letters and digits.
_ROUTING_KEY = re.compile(r"[A-Za-z0-9]{32}")
_url = URLValidator(schemes=["http", "https"])
_email = EmailValidator()

Errors = dict[str, list[str]]


def _add(errors: Errors, field: str, message: str) -> None:
    errors.setdefault(field, []).append(message)


def _labels(errors: Errors, labels: Any) -> None:
    if (problem := label_problem(labels)) is not None:
        _add(errors, "labels", problem)


def tuning_errors(*, labels: Any) -> Errors:
    """What makes a detection tuning unusable, by field (its choices are the model's)."""
    errors: Errors = {}
    _labels(errors, labels)
    return errors


def layer_rule_errors(*, series_name: Any, labels: Any) -> Errors:
    """What makes a signal layer rule unusable, by field (its layer is the model's choice)."""
    errors: Errors = {}
    if not isinstance(series_name, str) or not series_name.strip():
        # Every series in one layer would order nothing: a name or a pattern is required.
        _add(errors, "series_name", "name the series or a pattern (`orders.*`)")
    _labels(errors, labels)
    return errors


def rule_errors(*, labels: Any, above: Any, below: Any) -> Errors:
    """What makes a threshold rule unusable, by field (empty when it is fine)."""
    errors: Errors = {}
    _labels(errors, labels)
    bounds = {"above": above, "below": below}
    if above is None and below is None:
        _add(errors, "above", "set `above`, `below` or both")
    for name, value in bounds.items():
        if value is not None and not (isinstance(value, int | float) and math.isfinite(value)):
            _add(errors, name, "must be a finite number")
    if not errors and above is not None and below is not None and below >= above:
        # A value breaches when it is above `above` or below `below`: with below >= above
        # every value breaches, which is a typo, not a rule.
        _add(errors, "below", "must be less than `above` (a value outside the band breaches)")
    return errors


def registered_task(name: str) -> Task | None:
    """The Celery task called `name` in this project, or None.

    The web process imports task modules lazily; the worker imports them all at start, so
    a name not yet known here is looked up again after loading the same registry.
    """
    task = current_app.tasks.get(name)
    if task is None:
        current_app.loader.import_default_modules()
        task = current_app.tasks.get(name)
    return task


class PlaybookTaskError(ValueError):
    """A playbook's task call that cannot work, with the field to blame."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def task_call(name: str, arguments: Any, anomaly_id: int) -> tuple[Task, dict]:
    """The task a playbook names and the keyword arguments it would send it.

    The anomaly's id is added when the task's signature accepts it (by name or through
    **kwargs): `scaling.evaluate(resource_ids=None)` takes only its own arguments, and a
    message it cannot bind fails in the worker after the broker has accepted it.
    """
    name = name.strip()
    task = registered_task(name)
    if task is None or name.startswith("celery."):
        raise PlaybookTaskError("target", f"no Celery task named {name!r} in this project")
    if not isinstance(arguments, dict):
        raise PlaybookTaskError("arguments", "must be an object of keyword arguments")
    signature = inspect.signature(task.run)
    accepts = any(
        p.name == ANOMALY_KWARG or p.kind is inspect.Parameter.VAR_KEYWORD
        for p in signature.parameters.values()
    )
    kwargs = {**arguments, **({ANOMALY_KWARG: anomaly_id} if accepts else {})}
    try:
        signature.bind(**kwargs)
    except TypeError as exc:
        raise PlaybookTaskError("arguments", f"do not fit {name}: {exc}") from exc
    return task, kwargs


# Labels a playbook may group by: Alertmanager's routes group by a handful (cluster,
# service, alertname); a longer list is one group per series by another name.
MAX_GROUP_BY = 10


def playbook_errors(
    *,
    action: Any,
    target: Any,
    labels: Any,
    arguments: Any,
    repeat_interval_seconds: Any = None,
    group_by: Any = None,
    group_wait_seconds: Any = 0,
    active_weekdays: Any = (),
    active_start: time | None = None,
    active_end: time | None = None,
    active_time_zone: Any = "UTC",
) -> Errors:
    """What makes a response playbook unusable, by field (empty when it is fine).

    Field-level limits (lengths, `max_attempts` from 1 to MAX_ATTEMPTS) are the model
    fields' validators, which both the admin form and the serializer apply.
    """
    errors: Errors = {}
    _labels(errors, labels)
    if not isinstance(arguments, dict):
        _add(errors, "arguments", "must be an object")
    elif has_nul(arguments):  # stored as jsonb, which holds no NUL (a 500 on PostgreSQL)
        _add(errors, "arguments", NUL_PROBLEM)
    target = target if isinstance(target, str) else ""
    if action not in _ACTIONS:
        _add(errors, "action", f"must be one of {', '.join(_ACTIONS)}")
    elif action in URL_ACTIONS:
        try:
            _url(target)
        except ValidationError:
            _add(errors, "target", f"a {action} action needs an http(s) URL")
    elif action == "pagerduty":
        if not _ROUTING_KEY.fullmatch(target.strip()):
            _add(
                errors,
                "target",
                "a pagerduty action needs the 32-character integration key (routing key) of "
                "an Events API v2 integration on the PagerDuty service",
            )
    elif action == "email":
        recipients = email_recipients(target)
        if not recipients:
            _add(errors, "target", "give at least one e-mail address (comma-separated)")
        for address in recipients:
            try:
                _email(address)
            except ValidationError:
                _add(errors, "target", f"{address!r} is not an e-mail address")
    elif "arguments" not in errors:
        try:
            task_call(target, arguments, anomaly_id=0)
        except PlaybookTaskError as exc:
            _add(errors, exc.field, str(exc))
    if repeat_interval_seconds is not None and action in _ACTIONS and action not in NOTIFY_ACTIONS:
        # Re-running a scaling evaluation every few hours because an anomaly goes on is not
        # what "remind me" means; the scheduled jobs already re-evaluate.
        _add(
            errors,
            "repeat_interval_seconds",
            "only notifications are repeated (webhook, Slack, Teams, PagerDuty, e-mail): a task runs once",
        )
    _group_by(errors, group_by, action)
    if group_wait_seconds and not group_by:
        # Without groups there is nothing to wait for: each anomaly is its own page.
        _add(errors, "group_wait_seconds", "only with group_by: it is how long a group waits")
    _recurrence(errors, active_weekdays, active_start, active_end, active_time_zone, ACTIVE_WINDOW)
    return errors


def _group_by(errors: Errors, group_by: Any, action: Any) -> None:
    if group_by is None or group_by == []:
        return
    if not isinstance(group_by, list) or not all(isinstance(n, str) for n in group_by):
        _add(errors, "group_by", 'give a list of label names, such as ["service"]')
    elif (problem := label_problem(dict.fromkeys(group_by, ""))) is not None:
        _add(errors, "group_by", problem.replace("key", "label name", 1))
    elif len(set(group_by)) != len(group_by):
        _add(errors, "group_by", "names a label twice")
    elif len(group_by) > MAX_GROUP_BY:
        _add(errors, "group_by", f"at most {MAX_GROUP_BY} labels")
    elif action in _ACTIONS and action not in NOTIFY_ACTIONS:
        # A task acts per anomaly (a scaling evaluation of its series): grouping would
        # leave all but the first without the action.
        _add(
            errors,
            "group_by",
            "only notifications are grouped (webhook, Slack, Teams, PagerDuty, e-mail)",
        )


def email_recipients(target: str) -> list[str]:
    return [a.strip() for a in target.split(",") if a.strip()]


def silence_match_errors(*, series_pattern: Any, labels: Any) -> Errors:
    """What makes a silence's choice of series unusable, by field."""
    errors: Errors = {}
    _labels(errors, labels)
    if not isinstance(series_pattern, str) or not series_pattern.strip():
        _add(errors, "series_pattern", "give a series name or pattern (`*` for every series)")
    return errors


def inhibition_rule_errors(
    *, source_series: Any, source_labels: Any, target_series: Any, target_labels: Any, equal: Any
) -> Errors:
    """What makes an inhibition rule unusable, by field."""
    errors: Errors = {}
    for field, pattern in (("source_series", source_series), ("target_series", target_series)):
        if not isinstance(pattern, str) or not pattern.strip():
            _add(errors, field, "give a series name or pattern (`*` for every series)")
    for field, labels in (("source_labels", source_labels), ("target_labels", target_labels)):
        if (problem := label_problem(labels)) is not None:
            _add(errors, field, problem)
    if not isinstance(equal, list) or not all(isinstance(n, str) for n in equal):
        _add(errors, "equal", 'give a list of label names, such as ["env"]')
    elif (problem := label_problem(dict.fromkeys(equal, ""))) is not None:
        _add(errors, "equal", problem.replace("key", "label name", 1))
    return errors


def silence_errors(
    *,
    series_pattern: Any,
    labels: Any,
    starts_at: datetime | None,
    ends_at: datetime | None,
    comment: Any,
    now: datetime | None,
    weekdays: Any = (),
    daily_start: time | None = None,
    daily_end: time | None = None,
    time_zone: Any = "UTC",
) -> Errors:
    """What makes a silence unusable, by field (empty when it is fine).

    `now` is given on creation only: a silence that has already ended would mute nothing,
    and is almost always a date typed wrong. As in Alertmanager a comment is required,
    because the next operator has to know why their alerts are quiet.
    """
    errors = silence_match_errors(series_pattern=series_pattern, labels=labels)
    if not isinstance(comment, str) or not comment.strip():
        _add(errors, "comment", "say why alerts are silenced")
    if starts_at is not None and ends_at is not None and ends_at <= starts_at:
        # Either may be the one typed wrong: both are named.
        _add(errors, "starts_at", "must be before `ends_at`")
        _add(errors, "ends_at", "must be after `starts_at`")
    elif now is not None and ends_at is not None and ends_at <= now:
        _add(errors, "ends_at", "is in the past: the silence would mute nothing")
    _recurrence(errors, weekdays, daily_start, daily_end, time_zone)
    return errors


# The fields of a recurring window: a silence's, and a playbook's active time.
SILENCE_WINDOW = ("weekdays", "daily_start", "daily_end", "time_zone")
ACTIVE_WINDOW = ("active_weekdays", "active_start", "active_end", "active_time_zone")


def _recurrence(
    errors: Errors,
    weekdays: Any,
    start: time | None,
    end: time | None,
    time_zone: Any,
    fields: tuple[str, str, str, str] = SILENCE_WINDOW,
) -> None:
    """A recurring window's days, hours and time zone (`time_windows`), checked under the
    names its model gives them."""
    days_field, start_field, end_field, zone_field = fields
    if not isinstance(weekdays, list | tuple) or not all(d in WEEKDAYS for d in weekdays):
        _add(errors, days_field, f"give a list of days among {', '.join(WEEKDAYS)}")
    elif len(set(weekdays)) != len(weekdays):
        _add(errors, days_field, "names a day twice")
    if (start is None) != (end is None):
        field = end_field if end is None else start_field
        _add(errors, field, "give both the start and the end of the daily window, or neither")
    elif start is not None and start == end:
        _add(errors, end_field, "equals the start: the window would be empty")
    try:
        ZoneInfo(time_zone if isinstance(time_zone, str) and time_zone else "")
    except (ZoneInfoNotFoundError, ValueError, OSError):  # a directory, a NUL, too long
        _add(errors, zone_field, f"{time_zone!r} is not a time zone name (Europe/Paris, UTC)")
