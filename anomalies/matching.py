"""Which series a detection rule, a response playbook or a silence applies to.

All three name series the same way: a shell-style pattern on the series name
(`checkout.*`, `disk.used.[ab]`, `*`) and labels that must all be present with the same
values. A plain name is a pattern that matches only itself, so rules and playbooks
written before patterns existed keep matching what they matched.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

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


def equal_key(names: list[str], labels: dict | None) -> tuple[str, ...]:
    """The values of the named labels: two series agree on Alertmanager's `equal` when
    their keys are the same, an absent label counting as empty (so two series without
    `env` agree)."""
    labels = labels_normalize(labels)
    return tuple(labels.get(n, "") for n in names)


def labels_text(labels: dict[str, str]) -> str:
    """Labels as Alertmanager writes a group's: `{service="checkout"}`."""
    return "{" + ", ".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
