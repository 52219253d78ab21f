"""Power / minimum detectable effect in stored results, the API and the admin."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pytest
from django.urls import reverse
from django.utils import timezone

from personalization import selectors, services
from personalization.engine.power import (
    mde_two_proportions,
    mde_welch,
    sample_size_two_proportions,
    sample_size_welch,
)
from personalization.models import Experiment, ExperimentResult, Exposure
from tests.schema import assert_matches_schema

from .factories import ExperimentFactory, add_events

pytestmark = pytest.mark.django_db
API = "/admin/api/phase3/personalization"


def _conversion_experiment(*, n_users=400, rates=(0.2, 0.25), days=4.0, seed=0, **fields):
    """A running experiment started ``days`` ago; users alternate arms, convert at ``rates``."""
    started = timezone.now() - timedelta(days=days)
    exp = ExperimentFactory(key=f"t-power-{seed}", starts_at=started, **fields)
    rng = np.random.default_rng(seed)
    exposures, rows, counts = [], [], {"control": [0, 0], "treatment": [0, 0]}
    for i in range(n_users):
        variant = ("control", "treatment")[i % 2]
        user = f"t-pw{seed}-{i}"
        exposed = started + timedelta(hours=1)
        exposures.append(Exposure(experiment=exp, user_id=user, variant=variant,
                                  exposed_at=exposed))  # fmt: skip
        counts[variant][0] += 1
        if rng.random() < rates[i % 2]:
            counts[variant][1] += 1
            rows.append((user, "t_convert", exposed + timedelta(minutes=30), {}))
    Exposure.objects.bulk_create(exposures)
    add_events(rows)
    return exp, counts


def _latest(exp: Experiment) -> ExperimentResult:
    return selectors.experiment_latest_results(exp)[0]


class TestStoredPower:
    def test_conversion_figures_follow_the_data_and_the_exposure_rate(self):
        exp, counts = _conversion_experiment(minimum_effect=0.1)
        services.experiment_results_recompute(experiment_id=exp.pk)
        result = _latest(exp)
        (power,) = result.power
        (n_c, c_c), (n_t, _) = counts["control"], counts["treatment"]
        p_c = c_c / n_c
        assert power["variant"] == "treatment" and power["method"] == "two-proportion"
        assert power["baseline"] == pytest.approx(p_c)
        assert power["mde_absolute"] == pytest.approx(mde_two_proportions(p_c, n_c, n_t))
        needed = math.ceil(sample_size_two_proportions(p_c, p_c * 1.1))
        assert power["users_needed_control"] == power["users_needed_treatment"] == needed
        assert power["users_needed_total"] == 2 * needed
        # Exposures per day since the start, and the days the rest takes at that rate.
        elapsed = (result.computed_at - exp.starts_at).total_seconds() / 86_400
        assert power["exposures_per_day"] == pytest.approx(400 / elapsed, rel=1e-6)
        assert power["days_remaining"] == pytest.approx(
            (2 * needed - 400) / (400 / elapsed), rel=1e-6
        )

    def test_a_larger_minimum_effect_needs_fewer_users_and_days(self):
        exp, _ = _conversion_experiment(seed=1, minimum_effect=0.1)
        services.experiment_results_recompute(experiment_id=exp.pk)
        small = _latest(exp).power[0]
        # Planning, not testing: editable while the experiment runs.
        services.experiment_update(experiment_id=exp.pk, changes={"minimum_effect": 0.5})
        services.experiment_results_recompute(experiment_id=exp.pk)
        large = _latest(exp).power[0]
        assert large["users_needed_total"] < small["users_needed_total"]
        assert large["days_remaining"] < small["days_remaining"]
        assert large["mde_absolute"] == pytest.approx(small["mde_absolute"])  # data unchanged

    def test_more_users_lower_the_mde(self):
        few, _ = _conversion_experiment(n_users=200, seed=2)
        many, _ = _conversion_experiment(n_users=1600, seed=3)
        for exp in (few, many):
            services.experiment_results_recompute(experiment_id=exp.pk)
        assert _latest(many).power[0]["mde_relative"] < _latest(few).power[0]["mde_relative"]

    def test_mean_metric_uses_welch(self):
        exp = ExperimentFactory(
            key="t-power-mean", primary_metric={"kind": "mean", "event": "t_buy", "property": "v"}
        )
        exposed = timezone.now() - timedelta(days=2)
        Exposure.objects.bulk_create([
            Exposure(experiment=exp, user_id=f"t-pm{i}", variant=("control", "treatment")[i % 2],
                     exposed_at=exposed)
            for i in range(200)
        ])  # fmt: skip
        add_events([(f"t-pm{i}", "t_buy", exposed + timedelta(hours=1), {"v": i % 9})
                    for i in range(200)])  # fmt: skip
        services.experiment_results_recompute(experiment_id=exp.pk)
        (power,) = _latest(exp).power
        values = {v: np.array([i % 9 for i in range(200) if i % 2 == k], dtype=float)
                  for k, v in enumerate(("control", "treatment"))}  # fmt: skip
        sd_c, sd_t = (values[v].std(ddof=1) for v in ("control", "treatment"))
        mean_c = values["control"].mean()
        assert power["method"] == "welch" and power["baseline"] == pytest.approx(mean_c)
        assert power["mde_absolute"] == pytest.approx(mde_welch(sd_c, sd_t, 100, 100), rel=1e-6)
        needed = sample_size_welch(exp.minimum_effect * mean_c, sd_c, sd_c)
        assert power["users_needed_control"] == math.ceil(needed)

    def test_a_stopped_experiment_has_no_days_estimate(self):
        exp, _ = _conversion_experiment(seed=4)
        services.experiment_stop(experiment_id=exp.pk)
        (power,) = _latest(exp).power
        assert power["users_needed_total"] is not None
        assert power["exposures_per_day"] is None and power["days_remaining"] is None

    def test_waiting_results_have_no_power_figures(self):
        exp = ExperimentFactory(key="t-power-wait")
        services.experiment_results_recompute(experiment_id=exp.pk)
        assert _latest(exp).power == []


class TestApiAndAdmin:
    def test_results_endpoint_and_status_carry_power(self, client_with_role):
        exp, _ = _conversion_experiment(seed=5)
        services.experiment_results_recompute(experiment_id=exp.pk)
        viewer = client_with_role("viewer")
        listed = viewer.get(f"{API}/experiments/{exp.pk}/results")
        assert_matches_schema(listed, f"{API}/experiments/{exp.pk}/results")
        (power,) = listed.json()[0]["power"]
        assert power == _latest(exp).power[0]
        status = viewer.get(f"{API}/status").json()
        (running,) = [e for e in status["running_experiments"] if e["key"] == exp.key]
        assert running["results"][0]["power"][0]["mde_relative"] == power["mde_relative"]

    def test_minimum_effect_is_editable_while_running_and_validated(self, client_with_role):
        exp = ExperimentFactory(key="t-power-edit")
        admin = client_with_role("admin")
        ok = admin.patch(f"{API}/experiments/{exp.pk}", {"minimum_effect": 0.2}, format="json")
        assert ok.status_code == 200 and ok.json()["minimum_effect"] == 0.2
        for bad in (0, -0.1, 11, "lots", None):
            response = admin.patch(
                f"{API}/experiments/{exp.pk}", {"minimum_effect": bad}, format="json"
            )
            assert response.status_code == 400, (bad, response.content)
            assert "minimum_effect" in response.json()
        exp.refresh_from_db()
        assert exp.minimum_effect == 0.2
        created = admin.post(
            f"{API}/experiments",
            {"key": "t-power-new", "name": "n", "variants": [{"name": "a"}, {"name": "b"}],
             "primary_metric": {"kind": "conversion", "event": "x"}},
            format="json",
        )  # fmt: skip
        assert (
            created.json()["minimum_effect"]
            == Experiment._meta.get_field("minimum_effect").get_default()
        )

    def test_admin_pages_show_power(self, admin_client):
        exp, _ = _conversion_experiment(seed=6)
        services.experiment_results_recompute(experiment_id=exp.pk)
        result = _latest(exp)
        needed = f"{result.power[0]['users_needed_total']:,} exposures"
        page = admin_client.get(reverse("admin:personalization_experiment_results", args=[exp.pk]))
        assert page.status_code == 200 and b"MDE" in page.content
        assert needed.encode() in page.content and b"days remaining" in page.content
        page = admin_client.get(
            reverse("admin:personalization_experimentresult_change", args=[result.pk])
        )
        assert page.status_code == 200 and needed.encode() in page.content
        form = admin_client.get(reverse("admin:personalization_experiment_change", args=[exp.pk]))
        assert b'name="minimum_effect"' in form.content


def test_amounts_whose_squares_overflow_are_a_note_not_a_500(client_with_role):
    """A broken client sending amounts of 1e200 (finite, so ingested): the sum of squares is
    inf, ``VariantSummary.variance`` raised OverflowError and POST recompute was a 500 (the
    hourly job stored no result at all). Now a result with the arms' sizes and a note."""
    exp = ExperimentFactory(
        key="t-overflow", primary_metric={"kind": "mean", "event": "t_buy", "property": "amount"}
    )
    exposed = timezone.now() - timedelta(days=1)
    Exposure.objects.bulk_create(
        [Exposure(experiment=exp, user_id=f"t-of-{i}", variant=("control", "treatment")[i % 2],
                  exposed_at=exposed) for i in range(10)]
    )  # fmt: skip
    add_events(
        [(f"t-of-{i}", "t_buy", exposed + timedelta(hours=h), {"amount": 1e200 * (i % 3)})
         for i in range(10) for h in (-1, 1)]
    )  # fmt: skip
    response = client_with_role("operator").post(f"{API}/experiments/{exp.pk}/recompute")
    assert response.status_code == 201, response.content
    (result,) = response.json()
    assert result["users"] == {"control": 5, "treatment": 5}
    assert "too large" in result["note"] and result["power"] == []
    assert client_with_role("viewer").get(f"{API}/status").status_code == 200
