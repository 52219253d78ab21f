"""Listing anomalies by series name pattern and labels (`series_name`, `labels.<key>`), in
SQL on PostgreSQL, as playbooks and silences name series."""

from __future__ import annotations

import random
import re
from fnmatch import fnmatchcase

import pytest

from anomalies.matching import pattern_regex
from telemetry.services import series_ensure
from tests.anomalies.factories import AnomalyFactory

BASE = "/admin/api/phase3/anomaly/"

# Names with what a pattern could trip over: dots, brackets, plus, a backslash, spaces.
NAMES = [
    ("http.latency.p95", {"service": "checkout", "endpoint": "/cart"}),
    ("http.errors.ratio", {"service": "checkout"}),
    ("http.latency.p95", {"service": "search"}),
    ("db.cpu", {}),
    ("weird.name[1]", {"app.kubernetes-name": "web"}),
    ("a+b (x)\\y", {}),
]
PATTERNS = [
    "http.*",
    "*.p95",
    "http.[el]*",
    "http.[!l]*",
    "db.?pu",
    "weird.name[[]1]",
    "weird.name[1]",
    "*[*",
    "a+b (x)\\y",
    "a+b*",
    "[a-d]*",
    "[z-a]*",
    "*",
]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_a_pattern_s_regex_matches_what_fnmatch_matches(pattern):
    names = {n for n, _ in NAMES} | {"http.", "db.cp", "", "[", "weird.name1"}
    regex = re.compile(pattern_regex(pattern))
    assert {n for n in names if regex.search(n)} == {n for n in names if fnmatchcase(n, pattern)}


def test_random_patterns_agree_with_fnmatch():
    rng = random.Random(7)
    alphabet = "ab.-_*?[]!^\\/ x"
    for _ in range(20_000):
        pattern = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 7)))
        name = "".join(rng.choice("ab.-_[]!^\\/ x") for _ in range(rng.randint(0, 5)))
        assert bool(re.search(pattern_regex(pattern), name)) is fnmatchcase(name, pattern), (
            pattern,
            name,
        )


def test_a_run_of_stars_is_one_star():
    """600 stars became 600 `.*` and took PostgreSQL 8 s per series name (found by fuzzing
    `series_name`): a run is one star, as fnmatch reads it."""
    assert pattern_regex("*" * 596 + "[!a]") == "^.*[^a]$"
    assert pattern_regex("db.**.p95") == pattern_regex("db.*.p95")
    assert pattern_regex("a*?*b") == "^a.*..*b$"  # stars apart stay apart


@pytest.fixture
def anomalies(db):
    return {
        (name, tuple(sorted(labels.items()))): AnomalyFactory(
            series=series_ensure(name=name, labels=labels)
        ).pk
        for name, labels in NAMES
    }


def _ids(client, path: str) -> set[int]:
    answer = client.get(BASE + path)
    assert answer.status_code == 200, answer.content
    body = answer.json()
    return {a["id"] for a in body.get("results", body.get("anomalies", []))}


@pytest.mark.parametrize("pattern", PATTERNS)
def test_the_database_matches_a_pattern_as_fnmatch_does(client_with_role, anomalies, pattern):
    from urllib.parse import quote

    expected = {pk for (name, _), pk in anomalies.items() if fnmatchcase(name, pattern)}
    client = client_with_role("viewer")
    assert _ids(client, f"anomalies?series_name={quote(pattern)}") == expected
    assert _ids(client, f"detect?series_name={quote(pattern)}") == expected


def test_labels_narrow_the_list_and_an_empty_value_means_without(client_with_role, anomalies):
    client = client_with_role("viewer")

    def named(*keys):
        return {anomalies[k] for k in keys}

    cart = ("http.latency.p95", (("endpoint", "/cart"), ("service", "checkout")))
    errors = ("http.errors.ratio", (("service", "checkout"),))
    assert _ids(client, "anomalies?labels.service=checkout") == named(cart, errors)
    assert _ids(client, "anomalies?labels.service=checkout&series_name=http.latency.*") == named(
        cart
    )
    assert _ids(client, "anomalies?labels.app.kubernetes-name=web") == named(
        ("weird.name[1]", (("app.kubernetes-name", "web"),))
    )
    without = _ids(client, "anomalies?labels.service=")
    assert without == named(
        ("db.cpu", ()), ("weird.name[1]", (("app.kubernetes-name", "web"),)), ("a+b (x)\\y", ())
    )
    detect = client.get(BASE + "detect?labels.service=checkout").json()
    assert detect["count"] == 2


@pytest.mark.parametrize(
    "query",
    [
        "labels.bad key!=x",
        "labels.service=a,b",
        "labels.service=a&labels.service=b",
        "&".join(f"labels.l{i}=x" for i in range(11)),
    ],
)
def test_a_label_filter_that_cannot_work_is_refused_naming_the_parameter(
    client_with_role, anomalies, query
):
    for path in ("anomalies", "detect"):
        answer = client_with_role("viewer").get(f"{BASE}{path}?{query}")
        assert answer.status_code == 400, answer.content
        assert any(key.startswith("labels.") for key in answer.json())
