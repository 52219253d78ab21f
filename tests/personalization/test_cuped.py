"""CUPED in stored results, the API and the admin: the covariate is each exposed user's
value of the same metric over the window before their exposure."""

from __future__ import annotations

import re
from datetime import timedelta

import numpy as np
import pytest
from django.urls import reverse
from django.utils import timezone

from personalization import selectors, services
from personalization.engine.cuped import cuped_analysis
from personalization.models import Experiment, ExperimentResult, Exposure
from personalization.services.experiments import CUPED_WINDOW
from tests.schema import assert_matches_schema

from .factories import ExperimentFactory, add_events

pytestmark = pytest.mark.django_db
API = "/admin/api/phase3/personalization"


def _spend_experiment(*, n_users=300, seed=0, pre_days_before=3.0, effect=2.0):
    """Mean metric (sum of ``amount``): each user's spend before and after exposure share
    a per-user level, so the pre-exposure spend predicts the post-exposure one."""
    exp = ExperimentFactory(
        key=f"t-cuped-{seed}",
        primary_metric={"kind": "mean", "event": "t_spend", "property": "amount"},
    )
    rng = np.random.default_rng(seed)
    exposed = timezone.now() - timedelta(days=2)
    exposures, rows = [], []
    post = {"control": [], "treatment": []}
    pre = {"control": [], "treatment": []}
    for i in range(n_users):
        user, variant = f"t-cu{seed}-{i}", ("control", "treatment")[i % 2]
        exposures.append(Exposure(experiment=exp, user_id=user, variant=variant,
                                  exposed_at=exposed))  # fmt: skip
        level = float(rng.gamma(2.0, 5.0))
        before = round(level + rng.normal(0, 2), 2)
        after = round(level + rng.normal(0, 2) + effect * (variant == "treatment"), 2)
        rows.append((user, "t_spend", exposed - timedelta(days=pre_days_before),
                     {"amount": before}))  # fmt: skip
        rows.append((user, "t_spend", exposed + timedelta(hours=3), {"amount": after}))
        in_window = timedelta(days=pre_days_before) <= CUPED_WINDOW
        pre[variant].append(before if in_window else 0.0)
        post[variant].append(after)
    Exposure.objects.bulk_create(exposures)
    add_events(rows)
    return exp, post, pre


def _latest(exp: Experiment) -> ExperimentResult:
    return selectors.experiment_latest_results(exp)[0]


class TestStoredCuped:
    def test_adjusted_comparison_matches_the_engine_on_the_users_values(self):
        exp, post, pre = _spend_experiment()
        services.experiment_results_recompute(experiment_id=exp.pk)
        result = _latest(exp)
        names = ["control", "treatment"]
        ref = cuped_analysis(names, [post[v] for v in names], [pre[v] for v in names])
        cuped = result.cuped
        assert cuped["applied"] and cuped["window_days"] == CUPED_WINDOW.days
        assert cuped["theta"] == pytest.approx(ref.theta)
        assert cuped["users_with_covariate"] == 300
        (c,) = cuped["comparisons"]
        (r,) = ref.comparisons
        assert c["variant"] == "treatment"
        assert c["difference"] == pytest.approx(r.difference)
        assert c["p_value"] == pytest.approx(r.p_value)
        assert c["difference_ci"] == pytest.approx(
            {"lower": r.difference_ci.lower, "upper": r.difference_ci.upper}
        )
        # The per-user level is most of the spread: the adjustment removes most of it.
        assert c["variance_reduction"] > 0.5
        width = c["difference_ci"]["upper"] - c["difference_ci"]["lower"]
        raw = c["unadjusted_ci"]["upper"] - c["unadjusted_ci"]["lower"]
        assert width < raw
        # The unadjusted comparison is unchanged by the pre-exposure events.
        assert c["unadjusted_difference"] == pytest.approx(
            result.comparisons[0]["fixed"]["difference"]
        )
        assert result.comparisons[0]["fixed"]["difference"] == pytest.approx(
            np.mean(post["treatment"]) - np.mean(post["control"])
        )

    def test_events_before_the_window_are_not_a_covariate(self):
        days = CUPED_WINDOW.days + 3
        exp, _, _ = _spend_experiment(seed=1, pre_days_before=days)
        services.experiment_results_recompute(experiment_id=exp.pk)
        cuped = _latest(exp).cuped
        assert cuped["applied"] is False and "no pre-exposure data" in cuped["note"]

    def test_a_conversion_metric_is_adjusted_by_earlier_conversions(self):
        exp = ExperimentFactory(key="t-cuped-conv")
        exposed = timezone.now() - timedelta(days=1)
        rng = np.random.default_rng(2)
        Exposure.objects.bulk_create([
            Exposure(experiment=exp, user_id=f"t-cc{i}", variant=("control", "treatment")[i % 2],
                     exposed_at=exposed)
            for i in range(400)
        ])  # fmt: skip
        rows = []
        for i in range(400):
            loyal = i % 3 == 0
            if loyal:
                rows.append((f"t-cc{i}", "t_convert", exposed - timedelta(days=5), {}))
            if rng.random() < (0.7 if loyal else 0.1):
                rows.append((f"t-cc{i}", "t_convert", exposed + timedelta(hours=2), {}))
        add_events(rows)
        services.experiment_results_recompute(experiment_id=exp.pk)
        result = _latest(exp)
        assert result.cuped["applied"] and result.cuped["correlation"] > 0.3
        assert result.cuped["users_with_covariate"] == len(range(0, 400, 3))
        assert result.cuped["comparisons"][0]["variance_reduction"] > 0.1
        # Earlier conversions never count as conversions after exposure.
        arms = {a["variant"]: a["value"] for a in result.arms}
        converted = {e[0] for e in rows if e[2] > exposed}
        for k, v in enumerate(("control", "treatment")):
            users = [f"t-cc{i}" for i in range(400) if i % 2 == k]
            assert arms[v] == pytest.approx(sum(u in converted for u in users) / len(users))

    def test_waiting_results_have_no_cuped(self):
        exp = ExperimentFactory(key="t-cuped-wait")
        services.experiment_results_recompute(experiment_id=exp.pk)
        assert _latest(exp).cuped == {}


class TestApiAndAdmin:
    def test_results_endpoint_and_status_carry_cuped(self, client_with_role):
        exp, _, _ = _spend_experiment(seed=3)
        services.experiment_results_recompute(experiment_id=exp.pk)
        viewer = client_with_role("viewer")
        listed = viewer.get(f"{API}/experiments/{exp.pk}/results")
        assert_matches_schema(listed, f"{API}/experiments/{exp.pk}/results")
        assert listed.json()[0]["cuped"] == _latest(exp).cuped
        status = viewer.get(f"{API}/status").json()
        (running,) = [e for e in status["running_experiments"] if e["key"] == exp.key]
        assert running["results"][0]["cuped"]["applied"] is True
        # A result without CUPED (waiting) still matches the schema.
        waiting = ExperimentFactory(key="t-cuped-api-wait")
        services.experiment_results_recompute(experiment_id=waiting.pk)
        empty = viewer.get(f"{API}/experiments/{waiting.pk}/results")
        assert_matches_schema(empty, f"{API}/experiments/{waiting.pk}/results")
        assert empty.json()[0]["cuped"] == {}

    def test_admin_pages_show_cuped(self, admin_client):
        exp, _, _ = _spend_experiment(seed=4)
        services.experiment_results_recompute(experiment_id=exp.pk)
        result = _latest(exp)
        reduced = f"variance reduced by {result.cuped['comparisons'][0]['variance_reduction']:.1%}"
        page = admin_client.get(reverse("admin:personalization_experiment_results", args=[exp.pk]))
        assert page.status_code == 200 and reduced.encode() in page.content
        page = admin_client.get(
            reverse("admin:personalization_experimentresult_change", args=[result.pk])
        )
        assert page.status_code == 200 and reduced.encode() in page.content


class TestCupedRead:
    def test_the_database_sends_only_exposed_users_events_of_their_windows(self):
        """CUPED widened the read to 14 days before the first exposure, for every user with
        the event: a recomputation became slower (``bench/personalization.py results``:
        2.8-3.1 s -> 3.7-4.5 s for 5,000 exposed users). The
        rows the loop skipped (users never exposed, events older than a user's own window)
        are now left in the database, and the figures stay the same."""
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        exp, post, pre = _spend_experiment(n_users=40, seed=7)
        exposed = timezone.now() - timedelta(days=2)
        # Users never exposed, and exposed users' events older than their window.
        add_events(
            [(f"t-cu-out-{i}", "t_spend", exposed + timedelta(hours=1), {"amount": 5.0})
             for i in range(60)]
            + [(f"t-cu7-{i}", "t_spend", exposed - CUPED_WINDOW - timedelta(days=1),
                {"amount": 9.0}) for i in range(40)]
        )  # fmt: skip
        with CaptureQueriesContext(connection) as queries:
            services.experiment_results_recompute(experiment_id=exp.pk)
        reads = [q["sql"] for q in queries.captured_queries if "telemetry_event" in q["sql"]]
        assert len(reads) == 1
        # The read is a server-side cursor (``iterator()``): count what its SELECT returns.
        select = re.sub(
            r"^DECLARE .*? CURSOR (?:WITH(?:OUT)? HOLD )?FOR ", "", reads[0], flags=re.S
        )
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM ({select}) AS q")
            assert cursor.fetchone()[0] == 80  # one before and one after per exposed user
        (comparison,) = _latest(exp).cuped["comparisons"]
        engine = cuped_analysis(
            ["control", "treatment"],
            [np.array(post["control"]), np.array(post["treatment"])],
            [np.array(pre["control"]), np.array(pre["treatment"])],
        )
        assert comparison["difference"] == pytest.approx(engine.comparisons[0].difference)
