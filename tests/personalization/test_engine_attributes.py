"""Request-time attributes in the engine: validation, digest, conditions. No database.

Run: .venv/bin/python -m pytest tests/personalization/test_engine_attributes.py -q \
     -p no:django --noconftest
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from personalization.engine.assignment import assign_variant
from personalization.engine.attributes import (
    MAX_ATTRIBUTES,
    MAX_INTEGER,
    MAX_KEY_LENGTH,
    MAX_VALUE_LENGTH,
    attributes_digest,
    attributes_errors,
)
from personalization.engine.rules import (
    RuleSpec,
    UserContext,
    resolve_config,
    rule_matches,
    uses_request,
    validate_conditions,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


class TestValidation:
    def test_flat_scalars_within_limits_are_valid(self):
        ok = {"country": "FR", "plan": "pro", "app_version": 5, "ratio": 0.5, "beta": True}
        assert attributes_errors(ok) == {}
        assert attributes_errors({}) == {}
        at_limits = {f"k{i}": "v" * MAX_VALUE_LENGTH for i in range(MAX_ATTRIBUTES - 1)}
        at_limits["x" * MAX_KEY_LENGTH] = MAX_INTEGER
        assert attributes_errors(at_limits) == {}

    @pytest.mark.parametrize(
        "document,field",
        [
            ("FR", "attributes"),
            (["country"], "attributes"),
            (None, "attributes"),
            ({f"k{i}": 1 for i in range(MAX_ATTRIBUTES + 1)}, "attributes"),
            ({"": "x"}, "attributes"),
            ({"x" * (MAX_KEY_LENGTH + 1): "x"}, "attributes"),
            ({"coun\x00try": "FR"}, "attributes"),
            ({"country\n": "FR"}, "attributes"),
            ({"country": "F\x00R"}, "attributes.country"),
            ({"country": "x" * (MAX_VALUE_LENGTH + 1)}, "attributes.country"),
            ({"country": None}, "attributes.country"),
            ({"country": ["FR"]}, "attributes.country"),
            ({"country": {"iso": "FR"}}, "attributes.country"),
            ({"n": float("inf")}, "attributes.n"),
            ({"n": float("nan")}, "attributes.n"),
            ({"n": MAX_INTEGER + 1}, "attributes.n"),
            ({"n": -(10**400)}, "attributes.n"),
        ],
    )
    def test_each_bad_input_is_named(self, document, field):
        assert field in attributes_errors(document)


class TestDigest:
    def test_stable_whatever_the_key_order(self):
        a = {"country": "FR", "plan": "pro", "v": 5}
        b = {"v": 5, "plan": "pro", "country": "FR"}
        assert attributes_digest(a) == attributes_digest(b)

    def test_differs_with_any_value_or_type(self):
        base = {"country": "FR", "v": 5}
        digests = {
            attributes_digest(d)
            for d in (
                base,
                {"country": "DE", "v": 5},
                {"country": "FR", "v": "5"},
                {"country": "FR", "v": True},
                {"country": "FR"},
                {"country": "FR", "v": 5, "beta": False},
            )
        }
        assert len(digests) == 6

    def test_no_attributes_is_the_empty_digest(self):
        assert attributes_digest({}) == ""


class TestConditions:
    def test_request_conditions_use_the_existing_operators(self):
        conditions = {
            "request": {
                "country": {"in": ["FR", "BE"]},
                "app_version": {"gte": 5},
                "plan": "pro",
                "beta": {"exists": False},
            }
        }
        match = UserContext("u", request={"country": "FR", "app_version": 5, "plan": "pro"})
        assert rule_matches(conditions, match)
        for change in (
            {"country": "DE"},
            {"app_version": 4.9},
            {"plan": "free"},
            {"beta": True},
        ):
            ctx = UserContext("u", request={**match.request, **change})
            assert not rule_matches(conditions, ctx), change
        assert not rule_matches(conditions, UserContext("u"))  # nothing sent

    def test_request_and_profile_attributes_never_stand_in_for_each_other(self):
        on_request = {"request": {"country": "FR"}}
        on_profile = {"attributes": {"country": "FR"}}
        sent = UserContext("u", request={"country": "FR"})
        stored = UserContext("u", attributes={"country": "FR"})
        assert rule_matches(on_request, sent) and not rule_matches(on_request, stored)
        assert rule_matches(on_profile, stored) and not rule_matches(on_profile, sent)

    def test_resolution_applies_rules_on_request_attributes(self):
        rules = [
            RuleSpec("fr", 1, {"request": {"country": "FR"}}, {"locale": "fr"}),
            RuleSpec(
                "mobile",
                2,
                {"request": {"device": {"in": ["ios", "android"]}}},
                {"layout": "compact"},
            ),
        ]
        fr_mobile = UserContext("u", request={"country": "FR", "device": "ios"})
        assert resolve_config(rules, fr_mobile, now=NOW).config == {
            "locale": "fr",
            "layout": "compact",
        }
        assert resolve_config(rules, UserContext("u"), now=NOW).config == {}

    @pytest.mark.parametrize(
        "conditions",
        [
            {"request": "country"},
            {"request": {"country": {"like": "F%"}}},
            {"request": {"country": {"in": "FR"}}},
            {"request": {"country": {"in": [["FR"]]}}},
            {"request": {"country": {"in": [None]}}},
            {"request": {"version": {"gte": "5"}}},
            {"request": {"beta": {"exists": 1}}},
            {"request": {"country": {"eq": {"iso": "FR"}}}},
            {"request": {"country": None}},
            {"request": {"country": ["FR"]}},
            {"request": {"": "FR"}},
            {"request": {"x" * (MAX_KEY_LENGTH + 1): "FR"}},
            {"request": {"coun\ntry": "FR"}},
            {"attr:country": "FR"},
        ],
    )
    def test_bad_request_conditions_are_refused_at_save_time(self, conditions):
        assert validate_conditions(conditions)

    def test_valid_request_conditions_pass(self):
        assert not validate_conditions(
            {
                "request": {
                    "country": {"in": ["FR"], "ne": "DE"},
                    "v": {"gt": 1, "lte": 9.5},
                    "beta": True,
                    "seen": {"exists": True},
                }
            }
        )

    def test_uses_request(self):
        assert uses_request({"request": {"country": "FR"}})
        assert not uses_request({"request": {}})
        assert not uses_request({"attributes": {"country": "FR"}})
        assert not uses_request("garbage")


def test_attributes_never_decide_the_bucket():
    # The bucket hashes the experiment key and the user id only: nothing of the request.
    users = [f"u{i}" for i in range(200)]
    first = [assign_variant(experiment_key="e", user_id=u, variants=["a", "b"]) for u in users]
    again = [assign_variant(experiment_key="e", user_id=u, variants=["a", "b"]) for u in users]
    assert first == again and set(first) == {"a", "b"}
