"""Carrying out a response playbook's action: webhook, Slack, Teams, PagerDuty, e-mail or
another system's task.

These functions talk to the outside world and write nothing: the service records the
outcome. A failure raises `ResponseActionError`, which the task retries with backoff.
The webhook body follows Alertmanager's webhook format (version 4), so anything that
already receives Alertmanager notifications (PagerDuty, Opsgenie) accepts it. Slack's
incoming webhooks refuse that body (they need `text` or `blocks`), so the Slack action
sends a message of its own; Mattermost and Rocket.Chat take the same one. Microsoft Teams
gets an Adaptive Card, and PagerDuty an Events API v2 event (its Alertmanager-style
integrations also take the webhook, but a service's own Events API v2 integration, the
one PagerDuty sets up by default, takes only its events).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from contextlib import closing
from datetime import UTC, datetime
from urllib.parse import urljoin

import requests
from celery import current_app
from django.conf import settings
from django.core.cache import cache
from django.core.mail import get_connection, send_mail
from django.urls import reverse
from django.utils import timezone

from .matching import labels_text
from .models import Anomaly, ResponsePlaybook
from .selectors import (
    GROUP_FIRING,
    anomaly_causes,
    anomaly_effects,
    change_text,
    changes_before,
    ended_since_sent,
    group_members,
    group_root,
    held_back_effects,
    held_by_rules,
    incident_size,
)
from .validation import (
    ALERT_ACTIONS,
    ANOMALY_KWARG,
    PlaybookTaskError,
    email_recipients,
    task_call,
)

WEBHOOK_TIMEOUT_SECONDS = 10
# The mail server's timeout when the deployment sets no EMAIL_TIMEOUT: without one Django's
# SMTP backend waits on a hung relay until the worker's time limit kills the attempt.
EMAIL_TIMEOUT_SECONDS = 10
# Redirects that keep the method and the body (307, 308) are followed, this many at most.
MAX_REDIRECTS = 3
# 4xx answers that mean "not now" rather than "not this": retried like a 5xx.
RETRY_LATER = frozenset({408, 425, 429})
# How much of a refusal's body the error keeps: the receiver's reason, not a whole page.
REASON_BYTES = 300


class ResponseActionError(Exception):
    """The action did not go through (network error, non-2xx answer, refused mail)."""


class ResponseConfigError(ResponseActionError):
    """The playbook itself cannot work (its task is gone, its receiver refuses the request
    or moved): retrying would not help, an operator has to fix the playbook."""


def _iso(moment: datetime | None) -> str:
    return moment.isoformat().replace("+00:00", "Z") if moment else "0001-01-01T00:00:00Z"


def _absolute(path: str) -> str:
    return f"{settings.PHASE3_EXTERNAL_URL}{path}"


def _rules_clause(anomaly: Anomaly) -> str:
    """Which of the operator's rules fired: "methods: rules" alone does not say which."""
    return f"; rules: {', '.join(anomaly.rules_fired)}" if anomaly.rules_fired else ""


# How many of an incident's other anomalies a notification names; the rest are counted.
NAMED_EFFECTS = 5


def _cause_clause(anomaly: Anomaly) -> str:
    """What the anomaly is put down to. A team whose playbook matches its endpoints and not
    the database hears of a database outage once, through its first endpoint (inhibition):
    that page says which incident it is part of, and an effect paged on its own after its
    cause ended says what it outlived."""
    causes = anomaly_causes(anomaly)
    if not causes:
        return ""
    named = " or ".join(
        f"{c.series} (anomaly {c.pk}, {c.severity}, {_state(c)})" for c in causes[:2]
    )
    # How large the incident is, this anomaly among it: what tells a team paged for one
    # endpoint that every endpoint is down.
    size = incident_size(anomaly)
    reach = f", to which {size} ongoing anomalies are put down" if size > 1 else ""
    return f"; likeliest root cause: {named}{reach}"


def _state(cause: Anomaly) -> str:
    if cause.status == Anomaly.Status.FALSE_POSITIVE:
        return f"dismissed as a false positive, abnormal from {_utc(cause.started_at)}"
    if cause.ended_at is None:
        return f"abnormal since {_utc(cause.started_at)}"
    return f"abnormal from {_utc(cause.started_at)} to {_utc(cause.ended_at)}"


def _incident_clause(anomaly: Anomaly) -> str:
    """The other ongoing anomalies put down to this one (`anomaly_effects`): what a playbook with
    `inhibit_effects` did not page on their own. The first page usually comes before
    them; the incident update, a reminder or an escalation tells the on-call which
    series the incident has reached, the first few by onset, since those name the
    blast radius (every endpoint, or only checkout?). What has
    recovered is no longer part of what the receiver has to deal with."""
    effects = anomaly_effects(anomaly)
    if not effects:
        return ""
    names = ", ".join(str(e.series) for e in effects[:NAMED_EFFECTS])
    more = len(effects) - NAMED_EFFECTS
    return (
        f"; likeliest root cause of {len(effects)} other anomal"
        f"{'y' if len(effects) == 1 else 'ies'}: {names}"
        + (f" and {more} more" if more > 0 else "")
    )


# Alerts one notification carries at most (Alertmanager's `max_alerts`); the others are
# counted in `truncatedAlerts`, and the description still counts the whole incident.
MAX_GROUP_ALERTS = 50


def alertmanager_payload(anomaly: Anomaly, playbook: ResponsePlaybook) -> dict:
    """Alertmanager's webhook body for the anomaly's group: the anomaly, then, while it
    fires, the rest of its incident that this playbook held back (`held_back_effects`),
    then the held-back effects the receiver was last sent as firing that have ended since.

    A database outage paged once still has a dozen endpoints behind it. Alertmanager would
    send them as one group, every alert with its own labels and fingerprint, so a receiver
    that opens one ticket per group lists each affected service on it and routes by their
    labels; a description naming them is only text. The group key stays the cause's, so
    the page, its updates and its resolution are one incident to the receiver. A resolved
    cause is sent with the effects that ended with it: effects that outlive it are paged
    as their own problem.
    """
    return alertmanager_group(anomaly, playbook)[0]


def alertmanager_group(anomaly: Anomaly, playbook: ResponsePlaybook) -> tuple[dict, list[int]]:
    """The webhook body, and the held-back effects it sends as firing: what the service
    records on the page (`result["group_firing"]`), so that the next notification sends
    those that have ended as resolved, once, as Alertmanager's `send_resolved` does. A
    receiver that lists each alert of a group (an Opsgenie alert per endpoint, a ticket's
    checklist) otherwise kept an endpoint that had recovered open until the whole incident
    resolved."""
    alerts = [_paged_alert(anomaly, playbook)]
    held: list[Anomaly] = []
    ended: list[Anomaly] = []
    if (playbook.inhibit_effects or playbook.groups) and playbook.pk is not None:
        if anomaly.ended_at is None and playbook.inhibit_effects:
            held = held_back_effects(anomaly, playbook.pk)
        # A group under `group_by` fires while any of its members does, whichever of them
        # this notification is about: its first page's resolution included.
        seen = {e.pk for e in held}
        held += [m for m in group_members(anomaly, playbook) if m.pk not in seen]
        ended = ended_since_sent(anomaly, playbook.pk)
    part_of = f"; held back, part of the incident paged as anomaly {anomaly.pk} on {anomaly.series}"
    # Built only for what is sent: a fleet-wide incident holds back thousands. The ended
    # have the first claim on the room: a resolution left out would never be sent, a
    # firing alert left out is sent once the group shrinks.
    left_out = max(0, 1 + len(held) + len(ended) - MAX_GROUP_ALERTS)
    ended = ended[: MAX_GROUP_ALERTS - 1]
    held = held[: MAX_GROUP_ALERTS - 1 - len(ended)]
    alerts += [_alert(e, _description(e) + part_of) for e in held + ended]
    # The group's key: its labels under `group_by`, so that the next member paged after
    # the first ended continues the receiver's incident; otherwise the anomaly's own.
    grouped = playbook.group_of(anomaly.series)
    body = _alertmanager_body(
        alerts,
        playbook,
        grouped or {"anomaly": str(anomaly.pk)},
        grouped_by=grouped,
        truncated=left_out,
    )
    return body, [e.pk for e in held]


def _paged_alert(anomaly: Anomaly, playbook: ResponsePlaybook | None = None) -> dict:
    """The alert of the anomaly a notification is about, its description saying what it is
    put down to and what is put down to it."""
    return _alert(anomaly, _description(anomaly) + "".join(_context_clauses(anomaly, playbook)))


def _context_clauses(anomaly: Anomaly, playbook: ResponsePlaybook | None) -> list[str]:
    """What a firing notification says beyond the anomaly itself, each clause starting
    "; ": what it is put down to, what is put down to it, what inhibition rules and the
    playbook's group hold back with it, and what changed just before it. Every transport
    says the same."""
    clauses = (
        _changes_clause(anomaly),
        _cause_clause(anomaly),
        _incident_clause(anomaly),
        _rules_held_clause(anomaly, playbook),
        _group_clause(anomaly, playbook),
    )
    return [c for c in clauses if c]


def _changes_clause(anomaly: Anomaly) -> str:
    """The deploys and other changes just before the onset on the series' labels: the
    responder's first question, answered in the page."""
    changes = changes_before([anomaly])[anomaly.pk]
    if not changes:
        return ""
    named = ", ".join(change_text(c, anomaly.started_at) for c in changes)
    return f"; changed just before: {named}"


def _group_clause(anomaly: Anomaly, playbook: ResponsePlaybook | None) -> str:
    """The rest of the notification group under the playbook's `group_by`: an e-mail or
    Slack receiver has only the text to learn what else in the service is abnormal."""
    if playbook is None or not playbook.groups:
        return ""
    members = group_members(anomaly, playbook)
    if not members:
        return ""
    names = ", ".join(f"{m.series} ({m.severity})" for m in members[:NAMED_EFFECTS])
    more = len(members) - NAMED_EFFECTS
    group = labels_text(playbook.group_of(anomaly.series) or {})
    return f"; also abnormal in its group {group}: {names}" + (
        f" and {more} more" if more > 0 else ""
    )


def _rules_held_clause(anomaly: Anomaly, playbook: ResponsePlaybook | None) -> str:
    """What inhibition rules made the playbook hold back in this page's incident, beyond
    the effects the ranking names (`_incident_clause`): an e-mail or Slack receiver has
    only the text to learn that the endpoints a rule ties to the database went down too.
    A team paged through a rule's first target (`selectors.incident_of`) is told whose
    incident the page stands for."""
    if playbook is None or playbook.pk is None or not playbook.inhibit_effects:
        return ""
    root = group_root(anomaly, playbook.pk)
    held = held_by_rules({root.pk}, {playbook.pk}).get((playbook.pk, root.pk), set())
    held -= {e.pk for e in anomaly_effects(root)} | {anomaly.pk}
    rows = Anomaly.objects.filter(pk__in=held).select_related("series").order_by("started_at", "pk")
    names = [str(a.series) for a in rows[:NAMED_EFFECTS]] if held else []
    listed = ", ".join(names) + (
        f" and {len(held) - len(names)} more" if len(held) > len(names) else ""
    )
    if root.pk != anomaly.pk and not anomaly_causes(anomaly):
        return (
            f"; part of the incident of anomaly {root.pk} on {root.series} by an inhibition "
            f"rule" + (f", which also holds back {listed}" if names else "")
        )
    return f"; holds back by inhibition rules: {listed}" if names else ""


def _description(anomaly: Anomaly) -> str:
    return (
        f"observed {anomaly.observed:.4g} vs expected {anomaly.expected:.4g}; "
        f"methods: {', '.join(anomaly.methods) or 'none'}" + _rules_clause(anomaly)
    )


def _alert(anomaly: Anomaly, description: str) -> dict:
    series = anomaly.series
    labels = {
        "alertname": "Phase3Anomaly",
        "series": series.name,
        "severity": anomaly.severity,
        **{str(k): str(v) for k, v in (series.labels or {}).items()},
    }
    return {
        "status": "firing" if anomaly.ended_at is None else "resolved",
        "labels": labels,
        "annotations": {
            "summary": f"{series} is abnormal ({anomaly.severity})",
            "description": description,
            "peak_score": f"{anomaly.peak_score:.3f}",
        },
        "startsAt": _iso(anomaly.started_at),
        "endsAt": _iso(anomaly.ended_at),
        "generatorURL": _absolute(reverse("admin:anomalies_anomaly_change", args=[anomaly.pk])),
        "fingerprint": _fingerprint(f"{series.pk}:{anomaly.pk}"),
    }


def _fingerprint(key: str) -> str:
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def _common(mappings: list[dict]) -> dict:
    """The key-value pairs every mapping holds (Alertmanager's commonLabels and
    commonAnnotations): what a receiver's template can say of the whole group."""
    first, *rest = mappings
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in rest)}


def _alertmanager_body(
    alerts: list[dict],
    playbook: ResponsePlaybook,
    key: dict[str, str],
    *,
    grouped_by: dict[str, str] | None = None,
    truncated: int = 0,
) -> dict:
    """Alertmanager's webhook envelope around a group's alerts (the first is the anomaly
    the notification is about; `truncated` more were left out). `key` completes the group
    key; `grouped_by`, the labels of a playbook's `group_by` group, are its group labels.
    The group fires while any of its alerts does."""
    name = alerts[0]["labels"]["alertname"]
    return {
        "version": "4",
        "groupKey": "{}:" + labels_text({"alertname": name, **key}),
        "truncatedAlerts": truncated,
        "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
        "receiver": playbook.name,
        "groupLabels": {"alertname": name, **(grouped_by or {})},
        "commonLabels": _common([a["labels"] for a in alerts]),
        "commonAnnotations": _common([a["annotations"] for a in alerts]),
        "externalURL": _absolute(reverse("admin:index")),
        "alerts": alerts,
    }


SEVERITY_EMOJI = {"info": ":large_blue_circle:", "warning": ":warning:", "critical": ":red_circle:"}


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


# What an e-mail's subject or a chat message starts with when it is not the first page:
# an inbox or a channel gets a new message each time, and the same words again read as a
# duplicate page.
AGAIN_PREFIX = {"page": "", "reminder": "Reminder: ", "update": "Update: "}


def slack_payload(
    anomaly: Anomaly, playbook: ResponsePlaybook | None = None, *, kind: str = "page"
) -> dict:
    """A Slack message: `text` is what a phone notification shows, `blocks` the message.

    Slack's mrkdwn reads `<`, `>` and `&` as markup, so a series label holding them is
    escaped as Slack documents; unescaped it could turn into a link or vanish. An incoming
    webhook posts a new message each time, so a reminder or an update says so, as the
    e-mails do (the same words again read as a duplicate page in the channel).
    """
    again = AGAIN_PREFIX.get(kind, "")
    series = _slack_escape(str(anomaly.series))
    link = _absolute(reverse("admin:anomalies_anomaly_change", args=[anomaly.pk]))
    methods = (", ".join(anomaly.methods) or "none") + _slack_escape(_rules_clause(anomaly))
    values = f"observed {anomaly.observed:.4g} vs expected {anomaly.expected:.4g}"
    if anomaly.ended_at is None:
        head = f"{SEVERITY_EMOJI.get(anomaly.severity, '')} {again}*{anomaly.severity}*: {series}"
        text = f"{again}[{anomaly.severity}] {series} is abnormal: {values}"
        detail = f"{values} · methods: {methods} · since {_utc(anomaly.started_at)}"
        for clause in _context_clauses(anomaly, playbook):
            detail += f" · {_slack_escape(clause.removeprefix('; '))}"
    else:
        head = f":white_check_mark: *resolved*: {series}"
        text = f"[resolved] {series} is back to normal"
        detail = (
            f"abnormal from {_utc(anomaly.started_at)} to {_utc(anomaly.ended_at)} "
            f"({anomaly.severity}; peak {values})"
        )
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"{head}\n{detail}"}},
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"<{link}|Open in Phase 3>"}],
            },
        ],
    }


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# Teams' colour for a card's title by severity (Adaptive Cards' named colours).
TEAMS_COLOR = {"info": "Accent", "warning": "Warning", "critical": "Attention"}


def teams_payload(
    anomaly: Anomaly, playbook: ResponsePlaybook | None = None, *, kind: str = "page"
) -> dict:
    """A Microsoft Teams message: an Adaptive Card, what a Teams workflow's "when a webhook
    request is received" trigger (and the older incoming webhooks) posts to a channel.

    Teams reads a TextBlock's text as Markdown, so `http_requests_total` would turn
    italic; the lines holding series names are RichTextBlocks of TextRuns, which Teams
    shows as written. A card in a channel cannot be edited by the next message, so a
    reminder or an update says so in its title, as the e-mails do.
    """
    link = _absolute(reverse("admin:anomalies_anomaly_change", args=[anomaly.pk]))
    values = f"observed {anomaly.observed:.4g} vs expected {anomaly.expected:.4g}"
    if anomaly.ended_at is None:
        title = f"{AGAIN_PREFIX.get(kind, '')}[{anomaly.severity}] {anomaly.series} is abnormal"
        color = TEAMS_COLOR.get(anomaly.severity, "Default")
        lines = [
            f"{values}; methods: {', '.join(anomaly.methods) or 'none'}{_rules_clause(anomaly)}",
            f"since {_utc(anomaly.started_at)}",
        ]
        lines += [clause.removeprefix("; ") for clause in _context_clauses(anomaly, playbook)]
    else:
        title = f"[resolved] {anomaly.series} is back to normal"
        color = "Good"
        lines = [
            f"abnormal from {_utc(anomaly.started_at)} to {_utc(anomaly.ended_at)} "
            f"({anomaly.severity}; peak {values})"
        ]
    return _teams_card(title, color, lines, "Open in Phase 3", link)


def _teams_card(title: str, color: str, lines: list[str], action: str, link: str) -> dict:
    def plain(text: str, **style) -> dict:
        return {"type": "RichTextBlock", "inlines": [{"type": "TextRun", "text": text, **style}]}

    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "msteams": {"width": "Full"},
                    "body": [
                        plain(title, weight="Bolder", size="Medium", color=color),
                        *(plain(line) for line in lines),
                    ],
                    "actions": [{"type": "Action.OpenUrl", "title": action, "url": link}],
                },
            }
        ],
    }


PAGERDUTY_CLIENT = "Phase 3"
# PagerDuty's limits on an event: a summary of 1,024 characters, a dedup key of 255.
PAGERDUTY_SUMMARY_CHARS = 1024


def pagerduty_events_url() -> str:
    """Where events go: `settings.PHASE3_PAGERDUTY_EVENTS_URL`, PagerDuty's US endpoint by
    default (`https://events.eu.pagerduty.com/v2/enqueue` for an EU account)."""
    return getattr(
        settings, "PHASE3_PAGERDUTY_EVENTS_URL", "https://events.pagerduty.com/v2/enqueue"
    )


def pagerduty_dedup_key(group_key: str) -> str:
    """The alert's key at PagerDuty: one per notification group (the webhook's group key),
    so the page, its escalations and updates land on one alert, which the group's
    resolution resolves; a `group_by` group keeps one alert until its last member ends."""
    return "phase3-" + hashlib.sha1(group_key.encode()).hexdigest()


def pagerduty_event(
    anomaly: Anomaly, playbook: ResponsePlaybook, *, kind: str = "page"
) -> tuple[dict, list[int]]:
    """A PagerDuty Events API v2 event for the anomaly's group, and the held-back members it
    names as firing.

    A group that still fires is a `trigger`: the first opens the alert, later ones (an
    escalation, an update, a reminder) are deduplicated onto it by PagerDuty; the group's
    end is a `resolve`. The group's other alerts go in `custom_details`, so the
    responder's phone shows the incident's reach.
    """
    body, firing = alertmanager_group(anomaly, playbook)
    key = {
        "routing_key": playbook.target.strip(),
        "dedup_key": pagerduty_dedup_key(body["groupKey"]),
    }
    if body["status"] == "resolved":
        return {**key, "event_action": "resolve"}, firing
    first, *others = body["alerts"]
    series = anomaly.series
    summary = AGAIN_PREFIX.get(kind, "") + first["annotations"]["summary"]
    details = {
        "description": first["annotations"]["description"],
        "observed": anomaly.observed,
        "expected": anomaly.expected,
        "peak_score": round(anomaly.peak_score, 3),
        "labels": first["labels"],
        "started_at": first["startsAt"],
    }
    if others:
        details["also in this group"] = [
            f"{a['annotations']['summary']} ({a['status']})" for a in others
        ]
    if body["truncatedAlerts"]:
        details["left out"] = body["truncatedAlerts"]
    event = {
        **key,
        "event_action": "trigger",
        "payload": {
            "summary": summary[:PAGERDUTY_SUMMARY_CHARS],
            "source": str(series)[:255],
            "severity": anomaly.severity,  # PagerDuty's info, warning, critical
            "timestamp": _iso(anomaly.started_at),
            "component": series.name,
            "group": labels_text(body["groupLabels"]),
            "class": ", ".join(anomaly.methods) or "anomaly",
            "custom_details": details,
        },
        "links": [{"href": first["generatorURL"], "text": "Open in Phase 3"}],
        "client": PAGERDUTY_CLIENT,
        "client_url": body["externalURL"],
    }
    return event, firing


def post_notification(anomaly: Anomaly, playbook: ResponsePlaybook, *, kind: str = "page") -> dict:
    """POST the anomaly's current state (firing, or resolved once it has ended); for a
    webhook, the held-back effects the group sent as firing (`GROUP_FIRING`)."""
    if playbook.action == ResponsePlaybook.Action.PAGERDUTY:
        # One PagerDuty alert per group: its members have no resolutions of their own to
        # send later (`GROUP_FIRING` is a webhook's).
        event, _ = pagerduty_event(anomaly, playbook, kind=kind)
        code = _post_json(pagerduty_events_url(), event, "PagerDuty")
        return {"http_status": code, "dedup_key": event["dedup_key"]}
    if playbook.action == ResponsePlaybook.Action.SLACK:
        body = slack_payload(anomaly, playbook, kind=kind)
        return {"http_status": _post_json(playbook.target, body, "Slack")}
    if playbook.action == ResponsePlaybook.Action.TEAMS:
        body = teams_payload(anomaly, playbook, kind=kind)
        return {"http_status": _post_json(playbook.target, body, "Teams")}
    body, firing = alertmanager_group(anomaly, playbook)
    sent = {"http_status": _post_json(playbook.target, body, "webhook")}
    # What the group's next notification resolves once they end (`ended_since_sent`).
    return sent | ({GROUP_FIRING: firing} if firing else {})


def _post_json(url: str, body: dict, what: str) -> int:
    """POST `body` and return the 2xx status; raise what the answer means otherwise.

    Redirects are not left to `requests`: it follows a 301, 302 or 303 with a GET and no
    body, and the receiver's 200 to that GET was recorded as a page sent. 307 and 308 keep
    the POST and are followed; the others are a playbook to fix (the error names where
    they point). A 4xx other than 408/425/429 is the receiver refusing this request (a
    wrong key, a deleted channel): every retry would get the same answer, so it fails at
    once with the receiver's reason. The answer's body is not read beyond that reason:
    the status is the answer, and a huge or trickling body held the worker.
    """
    for _ in range(MAX_REDIRECTS + 1):
        try:
            response = requests.post(
                url, json=body, timeout=WEBHOOK_TIMEOUT_SECONDS, allow_redirects=False, stream=True
            )
        except requests.RequestException as exc:
            raise ResponseActionError(f"{what} failed: {exc}") from exc
        with closing(response):
            code = response.status_code
            location = response.headers.get("Location")
            if code in (307, 308) and location:
                url = urljoin(url, location)
                continue
            if 200 <= code < 300:
                return code
            if 300 <= code < 400:
                raise ResponseConfigError(
                    f"{what} answered HTTP {code} (redirect to {location or 'nowhere'}): not "
                    "followed, the alert would arrive as a GET without a body; set the "
                    "target to the address it redirects to"
                )
            reason = _reason(response)
            message = f"{what} answered HTTP {code}" + (f": {reason}" if reason else "")
            if 400 <= code < 500 and code not in RETRY_LATER:
                raise ResponseConfigError(f"{message} (refused: not retried)")
            raise ResponseActionError(message)
    raise ResponseConfigError(f"{what} redirected more than {MAX_REDIRECTS} times")


def _reason(response: requests.Response) -> str:
    """The start of an error answer's body, on one line (receivers explain refusals there)."""
    try:
        raw = response.raw.read(REASON_BYTES, decode_content=True) or b""
    except Exception:  # a broken body must not hide the status we already have
        return ""
    return " ".join(raw.decode("utf-8", "replace").split())


def mail_timeout() -> float:
    """Seconds the e-mail action waits on the mail server: `settings.EMAIL_TIMEOUT`.

    Passed to the connection explicitly, so a deployment that unsets it still gets
    `EMAIL_TIMEOUT_SECONDS` rather than a socket that waits forever; a timed-out attempt
    is retried with backoff like a refused one.
    """
    return float(getattr(settings, "EMAIL_TIMEOUT", None) or EMAIL_TIMEOUT_SECONDS)


def _send_email(playbook: ResponsePlaybook, subject: str, message: str) -> dict:
    recipients = email_recipients(playbook.target)
    try:
        sent = send_mail(
            subject=subject,
            message=message,
            from_email=None,
            recipient_list=recipients,
            connection=get_connection(timeout=mail_timeout()),
        )
    except Exception as exc:  # mail backends raise many types (SMTP, socket...)
        raise ResponseActionError(f"e-mail failed: {exc}") from exc
    return {"sent": sent, "recipients": recipients}


def _task_call(playbook: ResponsePlaybook, anomaly_id: int):
    """Checked when the playbook was saved, and again when it runs: a task can be renamed
    or removed by a deploy, and a message the worker cannot run is not "succeeded"."""
    try:
        return task_call(playbook.target, playbook.arguments, anomaly_id)
    except PlaybookTaskError as exc:
        raise ResponseConfigError(f"{exc.field}: {exc}") from exc


def perform_action(anomaly: Anomaly, playbook: ResponsePlaybook, *, kind: str = "page") -> dict:
    """Do what the playbook says; return what to record as the result.

    `kind` is what the message is to a receiver that already has the page ("reminder",
    "update"); a webhook receiver updates the alert it has and needs no label, and e-mail,
    Slack and Teams messages say "Reminder:" or "Update:".
    """
    if playbook.action in ALERT_ACTIONS:
        return post_notification(anomaly, playbook, kind=kind)
    if playbook.action == ResponsePlaybook.Action.EMAIL:
        alert = _paged_alert(anomaly, playbook)
        return _send_email(
            playbook,
            AGAIN_PREFIX[kind] + alert["annotations"]["summary"],
            f"{alert['annotations']['description']}\n\n{alert['generatorURL']}",
        )
    if playbook.action == ResponsePlaybook.Action.CELERY_TASK:
        return _start_task(playbook, anomaly)
    raise ResponseActionError(f"unknown action {playbook.action!r}")


# A task call that does not name its anomaly (`scaling.evaluate()`) is the same call for
# every anomaly that matches: started once in this many seconds per playbook.
SHARED_TASK_CALL_SECONDS = 60


def _start_task(playbook: ResponsePlaybook, anomaly: Anomaly) -> dict:
    """Send the playbook's task, once for the anomalies that would send the same call.

    A database outage opens a dozen critical anomalies in one minute, and a playbook that
    runs `scaling.evaluate` on critical anomalies sent it a dozen times: a dozen
    evaluations of every resource for one incident (Alertmanager sends a group of alerts
    to a receiver once). A call whose arguments do not carry the anomaly's id is started
    for the first of them; the others record that call's id (`shared`). A task that takes
    `anomaly_id` acts per anomaly and is started for each.
    """
    task, kwargs = _task_call(playbook, anomaly.pk)
    task_id, shared = str(uuid.uuid4()), False
    key = None
    if ANOMALY_KWARG not in kwargs:
        call = json.dumps(kwargs, sort_keys=True, default=str).encode()
        key = f"anomalies:task-call:{playbook.pk}:{hashlib.sha1(call).hexdigest()}"
        if not cache.add(key, task_id, SHARED_TASK_CALL_SECONDS):
            started = cache.get(key)
            if started is not None:
                task_id, shared = started, True
    if not shared:
        try:
            current_app.send_task(task.name, kwargs=kwargs, task_id=task_id)
        except Exception as exc:  # broker down, unknown routing...
            if key is not None:
                cache.delete(key)
            raise ResponseActionError(f"task {playbook.target} not sent: {exc}") from exc
    # Succeeded means the broker accepted the message; the task's own outcome is its
    # JobRun (Jobs page), found by this id.
    return {"task": task.name, "task_id": task_id, "kwargs": kwargs, "shared": shared}


def _test_text(playbook: ResponsePlaybook, by: str) -> tuple[str, str]:
    """Summary and description of a test notification."""
    summary = f"Test notification from Phase 3 playbook {playbook.name}"
    description = (
        f"Sent by {by or 'an operator'} at {_utc(timezone.now())} to check that the playbook "
        f"reaches this receiver. No anomaly is behind it; real ones come at "
        f"{playbook.min_severity} and above"
        + (f" on series matching {playbook.series_name}" if playbook.series_name else "")
        + "."
    )
    return summary, description


def send_test(playbook: ResponsePlaybook, *, by: str = "") -> dict:
    """Send the playbook's receiver a notification that says it is a test.

    Where an operator finds out that the Slack URL was pasted wrong or the mail server
    refuses the address: before the first incident, not during it (Grafana's "Test"
    contact point, Sentry's "Send Test Notification"). It goes through the same transport
    as a page, so a redirect, a refusal or a timeout reads as it would then. A webhook gets
    an Alertmanager payload whose alert is named `Phase3TestNotification`, so a receiver
    can route or drop it. A task playbook is not started: the check is that its task
    exists and takes its arguments, and the answer says what a page would send.
    """
    summary, description = _test_text(playbook, by)
    link = _absolute(reverse("admin:anomalies_responseplaybook_change", args=[playbook.pk]))
    if playbook.action == ResponsePlaybook.Action.SLACK:
        body = {
            "text": f"[test] {summary}",
            "blocks": [
                {
                    "type": "section",
                    "text": {
                        "type": "mrkdwn",
                        "text": f":test_tube: *{_slack_escape(summary)}*\n{_slack_escape(description)}",
                    },
                },
                {
                    "type": "context",
                    "elements": [{"type": "mrkdwn", "text": f"<{link}|Open the playbook>"}],
                },
            ],
        }
        return {"http_status": _post_json(playbook.target, body, "Slack")}
    if playbook.action == ResponsePlaybook.Action.TEAMS:
        body = _teams_card(f"[test] {summary}", "Accent", [description], "Open the playbook", link)
        return {"http_status": _post_json(playbook.target, body, "Teams")}
    if playbook.action == ResponsePlaybook.Action.WEBHOOK:
        labels = {
            "alertname": "Phase3TestNotification",
            "playbook": playbook.name,
            "severity": playbook.min_severity,
        }
        alert = {
            "status": "firing",
            "labels": labels,
            "annotations": {"summary": summary, "description": description},
            "startsAt": _iso(timezone.now()),
            "endsAt": _iso(None),
            "generatorURL": link,
            "fingerprint": _fingerprint(f"test:{playbook.pk}"),
        }
        body = _alertmanager_body([alert], playbook, {"playbook": str(playbook.pk)})
        return {"http_status": _post_json(playbook.target, body, "webhook")}
    if playbook.action == ResponsePlaybook.Action.PAGERDUTY:
        # Opened and resolved at once: the key works, and no incident is left open.
        key = {
            "routing_key": playbook.target.strip(),
            "dedup_key": f"phase3-test-{playbook.pk}-{uuid.uuid4().hex[:12]}",
        }
        trigger = {
            **key,
            "event_action": "trigger",
            "payload": {
                "summary": f"[test] {summary}",
                "source": "phase3",
                "severity": "info",
                "custom_details": {"description": description},
            },
            "links": [{"href": link, "text": "Open the playbook"}],
            "client": PAGERDUTY_CLIENT,
        }
        code = _post_json(pagerduty_events_url(), trigger, "PagerDuty")
        _post_json(pagerduty_events_url(), {**key, "event_action": "resolve"}, "PagerDuty")
        return {"http_status": code}
    if playbook.action == ResponsePlaybook.Action.EMAIL:
        return _send_email(playbook, f"Test: {summary}", f"{description}\n\n{link}")
    if playbook.action == ResponsePlaybook.Action.CELERY_TASK:
        task, kwargs = _task_call(playbook, 0)
        per_anomaly = kwargs.pop(ANOMALY_KWARG, None) is not None
        return {
            "task": task.name,
            "kwargs": kwargs,
            "adds_anomaly_id": per_anomaly,
            "started": False,
        }
    raise ResponseActionError(f"unknown action {playbook.action!r}")
