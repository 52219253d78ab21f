"""Services of personalization against the database (PostgreSQL when DATABASE_URL is set)."""

from __future__ import annotations

import gc
from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone
from scipy import stats

from personalization import selectors, services
from personalization.defaults import DEFAULT_RULES
from personalization.engine.assignment import assign_variant
from personalization.engine.stats import srm_check, two_proportion_test, wilson_interval
from personalization.models import (
    Experiment,
    ExperimentResult,
    Exposure,
    PersonaChange,
    PersonalizationRule,
    PersonaModelRun,
    UserProfile,
)
from telemetry.demo import DemoConfig, seed_demo
from telemetry.models import DemoUser
from telemetry.selectors import to_datetime

from .factories import ExperimentFactory, RuleFactory, UserProfileFactory, add_events

pytestmark = pytest.mark.django_db


# --------------------------------------------------------------------------- profiles
class TestProfiles:
    def test_personas_on_demo_users_match_their_known_kind(self, empty_telemetry):
        # A world of its own at a fixed end: the shared one ends when the session starts,
        # and agreement depends on the window (measured over 54 windows of this world:
        # 0.62 to 1.0, under 0.8 in 2; a CI run met the 0.62 at 11:45 UTC).
        end = 1_795_000_200.0
        seed_demo(DemoConfig(days=7, users=200, seed=1, end=end))
        counts = services.profiles_recompute(days=30, now=to_datetime(end + 60))
        run = PersonaModelRun.objects.get(pk=counts["run"])
        kinds = dict(DemoUser.objects.values_list("user_id", "kind"))
        profiles = list(UserProfile.objects.filter(user_id__in=list(kinds)))
        assert counts["classified"] == sum(bool(p.persona) for p in UserProfile.objects.all())
        classified = [p for p in profiles if p.persona]
        assert len(classified) >= 20
        agreement = np.mean([p.persona == kinds[p.user_id] for p in classified])
        assert agreement > 0.8  # chance is 0.25
        # held-out measurement stored with the run
        assert run.labelled_users > 0 and run.accuracy is not None and run.ece is not None
        assert run.distribution == {
            p: sum(x.persona == p for x in UserProfile.objects.all()) for p in run.distribution
        }
        # casual demo users have too little data: no persona, no confidence
        casual = [p for p in profiles if kinds[p.user_id] == "casual"]
        assert casual and all(not p.persona and p.persona_confidence is None for p in casual)
        for p in classified:
            assert sum(p.persona_probabilities.values()) == pytest.approx(1.0)
            assert p.persona_confidence == pytest.approx(max(p.persona_probabilities.values()))

    def test_history_records_changes_only(self, demo_world):
        services.profiles_recompute(days=30)
        first = PersonaChange.objects.count()
        assert first == UserProfile.objects.exclude(persona="").count()  # first assignments
        services.profiles_recompute(days=30)
        assert PersonaChange.objects.count() == first  # same data, same personas: no history

        profile = UserProfile.objects.exclude(persona="").first()
        real = profile.persona
        other = next(p for p in ("explorer", "optimizer") if p != real)
        UserProfile.objects.filter(pk=profile.pk).update(persona=other)
        services.profiles_recompute(days=30)
        change = PersonaChange.objects.filter(profile=profile).order_by("-changed_at").first()
        assert (change.previous_persona, change.persona) == (other, real)

    def test_operator_attributes_survive_recompute(self, demo_world):
        services.profiles_recompute(days=30)
        profile = UserProfile.objects.first()
        UserProfile.objects.filter(pk=profile.pk).update(attributes={"plan": "pro"})
        services.profiles_recompute(days=30)
        profile.refresh_from_db()
        assert profile.attributes == {"plan": "pro"}

    def test_no_events_means_no_personas_and_a_note(self):
        counts = services.profiles_recompute(days=1, now=timezone.now() - timedelta(days=3000))
        run = PersonaModelRun.objects.get(pk=counts["run"])
        assert counts["users"] == 0 and run.users_classified == 0
        assert "no personas" in run.note

    def test_users_gone_longer_than_the_window_become_dormant_without_persona(
        self, empty_telemetry
    ):
        gone = UserProfileFactory(
            user_id="t-gone", persona="explorer", persona_confidence=0.9,
            persona_probabilities={"explorer": 0.9, "optimizer": 0.1},
            segments=["power_user", "purchaser"], attributes={"plan": "pro"},
            last_seen_at=timezone.now() - timedelta(days=40),
        )  # fmt: skip
        now = timezone.now()
        add_events([("t-active", "session_start", now - timedelta(days=1), {})])
        counts = services.profiles_recompute(days=28, now=now)
        gone.refresh_from_db()
        assert (gone.persona, gone.persona_confidence, gone.persona_probabilities) == ("", None, {})
        assert gone.segments == ["dormant"] and gone.attributes == {"plan": "pro"}
        assert counts["gone_dormant"] == 1
        change = PersonaChange.objects.get(profile=gone)
        assert (change.previous_persona, change.persona) == ("explorer", "")
        assert UserProfile.objects.get(user_id="t-active").model_run_id == counts["run"]
        # Idempotent: the next day's run finds nothing more to change.
        again = services.profiles_recompute(days=28, now=now)
        assert again["gone_dormant"] == 0
        assert PersonaChange.objects.filter(profile=gone).count() == 1

    def test_a_window_with_no_event_at_all_leaves_every_profile_alone(self, empty_telemetry):
        # The event feed stopped (an ingestion outage): nobody is marked dormant.
        kept = UserProfileFactory(
            user_id="t-kept", persona="achiever", persona_confidence=0.8,
            segments=["purchaser"], last_seen_at=timezone.now() - timedelta(days=40),
        )  # fmt: skip
        counts = services.profiles_recompute(days=28, now=timezone.now())
        kept.refresh_from_db()
        assert (kept.persona, kept.segments, counts["gone_dormant"]) == (
            "achiever",
            ["purchaser"],
            0,
        )

    def test_bad_window_is_rejected(self):
        with pytest.raises(ValueError, match="days"):
            services.profiles_recompute(days=0)


# --------------------------------------------------------------------------- config
class TestConfig:
    def test_default_rules_exist_and_are_not_overwritten(self):
        keys = [r["key"] for r in DEFAULT_RULES]
        assert PersonalizationRule.objects.filter(key__in=keys).count() == len(DEFAULT_RULES) == 4
        PersonalizationRule.objects.filter(key=keys[0]).update(priority=7)
        assert services.default_rules_ensure()["created"] == 0
        assert PersonalizationRule.objects.get(key=keys[0]).priority == 7

    def test_resolution_merges_rules_by_priority_with_provenance(self):
        UserProfileFactory(user_id="t-cfg", persona="optimizer", persona_confidence=0.9)
        RuleFactory(key="t-late", priority=500, conditions={"persona": "optimizer"},
                    action={"layout": {"density": "ultra"}})  # fmt: skip
        out = services.config_resolve(user_id="t-cfg")
        assert out["persona"] == "optimizer"
        assert out["config"]["layout"]["density"] == "ultra"
        assert out["provenance"]["layout.density"] == "t-late"
        assert out["provenance"]["shortcuts.command_palette"] == "optimizer-compact"
        assert out["rules"][-1] == "t-late" and "optimizer-compact" in out["rules"]

    def test_low_confidence_users_do_not_get_persona_rules(self):
        UserProfileFactory(user_id="t-unsure", persona="optimizer", persona_confidence=0.3)
        assert "optimizer-compact" not in services.config_resolve(user_id="t-unsure")["rules"]

    def test_cached_until_a_rule_changes(self, django_assert_num_queries):
        UserProfileFactory(user_id="t-cache", persona="explorer", persona_confidence=0.8)
        first = services.config_resolve(user_id="t-cache")
        assert not first["cached"]
        with django_assert_num_queries(0):
            again = services.config_resolve(user_id="t-cache")
        assert again["cached"] and again["config"] == first["config"]

        rule = PersonalizationRule.objects.get(key="explorer-discovery")
        rule.action = {"home": {"modules": ["map"]}}
        rule.save()
        changed = services.config_resolve(user_id="t-cache")
        assert not changed["cached"]
        assert changed["config"]["home"]["modules"] == ["map"]

    @pytest.mark.parametrize("model", [PersonalizationRule, Experiment, UserProfile])
    def test_invalidation_receivers_survive_garbage_collection(self, model):
        # Signals hold receivers weakly: a receiver defined inside ready() was collected
        # and every API / admin edit was served from the cache for up to five minutes.
        from django.db.models.signals import post_delete, post_save

        gc.collect()
        assert post_save._live_receivers(model) != ([], [])
        assert post_delete._live_receivers(model) != ([], [])
        before = services.config_version()
        factory = {PersonalizationRule: RuleFactory, Experiment: ExperimentFactory}
        factory.get(model, UserProfileFactory)()
        assert services.config_version() > before

    def test_unknown_user_gets_rules_for_everyone_only(self):
        RuleFactory(key="t-all", action={"footer": {"links": 3}})
        out = services.config_resolve(user_id="t-nobody")
        assert out["persona"] is None and out["rules"] == ["t-all"]

    def test_experiment_variant_is_sticky_recorded_once_and_drives_rules(self):
        exp = ExperimentFactory(key="t-checkout")
        RuleFactory(key="t-variant", conditions={"variant": {"t-checkout": ["treatment"]}},
                    action={"checkout": {"one_click": True}})  # fmt: skip
        users = [f"t-v{i}" for i in range(40)]
        for u in users:
            services.config_resolve(user_id=u, use_cache=False)
            services.config_resolve(user_id=u, use_cache=False)
        exposures = dict(Exposure.objects.filter(experiment=exp).values_list("user_id", "variant"))
        assert len(exposures) == len(users) == Exposure.objects.filter(experiment=exp).count()
        for u in users:
            expected = assign_variant(experiment_key="t-checkout", user_id=u,
                                      variants=["control", "treatment"], weights=[0.5, 0.5])  # fmt: skip
            assert exposures[u] == expected
            out = services.config_resolve(user_id=u)
            assert out["experiments"] == {"t-checkout": expected}
            assert ("checkout" in out["config"]) == (expected == "treatment")
        assert set(exposures.values()) == {"control", "treatment"}

    def test_targeting_and_stopped_experiments(self):
        ExperimentFactory(key="t-target", targeting={"persona": ["achiever"]})
        stopped = ExperimentFactory(key="t-stopped")
        services.experiment_stop(experiment_id=stopped.pk)
        UserProfileFactory(user_id="t-ach", persona="achiever")
        UserProfileFactory(user_id="t-opt", persona="optimizer")
        assert set(services.config_resolve(user_id="t-ach")["experiments"]) == {"t-target"}
        assert services.config_resolve(user_id="t-opt")["experiments"] == {}

    def test_an_exposed_user_keeps_their_variant_when_the_targeting_no_longer_matches(self):
        # Sticky bucketing: the nightly job re-labelled the user, who left the targeting.
        # They are still analysed in their arm, so they must keep seeing it (they were
        # served nothing, the control's UI, while counted as treatment).
        exp = ExperimentFactory(key="t-sticky", targeting={"persona": ["achiever"]})
        RuleFactory(key="t-sticky-rule", conditions={"variant": {"t-sticky": ["treatment"]}},
                    action={"sticky": {"on": True}})  # fmt: skip
        users = [f"t-st{i}" for i in range(12)]
        first = {}
        for user in users:
            UserProfileFactory(user_id=user, persona="achiever")
            first[user] = services.config_resolve(user_id=user)["experiments"]["t-sticky"]
        assert set(first.values()) == {"control", "treatment"}
        for user in users:
            profile = UserProfile.objects.get(user_id=user)
            profile.persona = "optimizer"
            profile.save()
            out = services.config_resolve(user_id=user)
            assert not out["cached"] and out["experiments"] == {"t-sticky": first[user]}
            assert ("sticky" in out["config"]) == (first[user] == "treatment")
        assert Exposure.objects.filter(experiment=exp).count() == len(users)
        # A user never exposed is still targeted as configured.
        UserProfileFactory(user_id="t-st-new", persona="optimizer")
        assert services.config_resolve(user_id="t-st-new")["experiments"] == {}

    def test_targeting_on_an_earlier_experiments_variant_matches(self):
        # Weight 0.0001 puts every user of this test in "only".
        ExperimentFactory(key="t-first", variants=[{"name": "only", "weight": 1.0},
                                                   {"name": "never", "weight": 0.0001}])  # fmt: skip
        ExperimentFactory(key="t-second", targeting={"variant": {"t-first": ["only"]}})
        ExperimentFactory(key="t-third", targeting={"variant": {"t-first": ["never"]}})
        for user in ("t-v1", "t-v2", "t-v3"):
            variants = services.config_resolve(user_id=user, use_cache=False)["experiments"]
            assert variants["t-first"] == "only"
            assert "t-second" in variants and "t-third" not in variants
            assert Exposure.objects.filter(user_id=user).count() == 2


# --------------------------------------------------------------------------- experiments
def _experiment_with_data(n_users=600, rates=(0.10, 0.16), seed=0):
    exp = ExperimentFactory(key=f"t-analysis-{seed}")
    rng = np.random.default_rng(seed)
    exposed = timezone.now() - timedelta(days=3)
    rows, truth = [], {"control": [0, 0], "treatment": [0, 0]}
    for i in range(n_users):
        user = f"t-a{seed}-{i}"
        variant = assign_variant(experiment_key=exp.key, user_id=user,
                                 variants=exp.variant_names, weights=exp.weights)  # fmt: skip
        Exposure.objects.create(experiment=exp, user_id=user, variant=variant, exposed_at=exposed)
        converts = rng.random() < rates[variant == "treatment"]
        truth[variant][0] += 1
        truth[variant][1] += int(converts)
        if converts:
            rows.append((user, "t_convert", exposed + timedelta(hours=1), {}))
        if i % 10 == 0:  # before exposure: must not count
            rows.append((user, "t_convert", exposed - timedelta(hours=1), {}))
    add_events(rows)
    return exp, truth


class TestExperimentResults:
    def test_results_match_the_engine_on_the_raw_counts(self):
        exp, truth = _experiment_with_data()
        services.experiment_results_recompute(experiment_id=exp.pk)
        result = ExperimentResult.objects.get(experiment=exp)
        (n_c, c_c), (n_t, c_t) = truth["control"], truth["treatment"]
        assert result.users == {"control": n_c, "treatment": n_t}
        ref = two_proportion_test(c_c, n_c, c_t, n_t)
        comparison = result.comparisons[0]
        assert comparison["variant"] == "treatment"
        assert comparison["fixed"]["p_value"] == pytest.approx(ref.p_value)
        assert comparison["fixed"]["relative_lift"] == pytest.approx(ref.relative_lift)
        assert not result.srm_mismatch
        # Each arm's own rate with its Wilson interval, at the experiment's level.
        arms = {a["variant"]: a for a in result.arms}
        for name, (n, c) in truth.items():
            ci = wilson_interval(c, n, alpha=exp.alpha)
            assert arms[name]["users"] == n and arms[name]["method"] == "wilson"
            assert arms[name]["value"] == pytest.approx(c / n)
            assert arms[name]["ci"] == pytest.approx({"lower": ci.lower, "upper": ci.upper})
        assert arms["control"]["value"] == pytest.approx(comparison["fixed"]["control_value"])

    def test_sequential_state_carries_between_recomputations(self):
        exp, _ = _experiment_with_data(seed=1)
        services.experiment_results_recompute(experiment_id=exp.pk)
        services.experiment_results_recompute(experiment_id=exp.pk)
        latest = ExperimentResult.objects.filter(experiment=exp).order_by("-computed_at")
        assert latest[0].sequential_state["treatment"]["looks"] == 2
        assert (
            latest[0].comparisons[0]["sequential"]["p_value"]
            <= latest[1].comparisons[0]["sequential"]["p_value"]
        )

    def test_mean_metric_and_guardrail_and_srm(self):
        exp = ExperimentFactory(
            key="t-srm",
            primary_metric={"kind": "mean", "event": "t_buy", "property": "amount"},
            guardrail_metrics=[{"kind": "conversion", "event": "t_error"}],
        )
        exposed = timezone.now() - timedelta(days=1)
        for i in range(300):  # 2:1 split although weights say 1:1
            Exposure.objects.create(experiment=exp, user_id=f"t-s{i}",
                                    variant="control" if i % 3 else "treatment",
                                    exposed_at=exposed)  # fmt: skip
        add_events([(f"t-s{i}", "t_buy", exposed + timedelta(minutes=5), {"amount": i % 7})
                    for i in range(300)])  # fmt: skip
        counts = services.experiment_results_recompute(experiment_id=exp.pk)
        assert counts["results"] == 2
        results = {r.metric: r for r in ExperimentResult.objects.filter(experiment=exp)}
        primary = results["mean:t_buy.amount"]
        assert primary.is_primary and primary.srm_mismatch and "mismatch" in primary.note
        amounts = {"control": [], "treatment": []}
        for i in range(300):
            amounts["control" if i % 3 else "treatment"].append(i % 7)
        for arm in primary.arms:
            x = np.array(amounts[arm["variant"]], dtype=float)
            ref = stats.ttest_1samp(x, 0.0).confidence_interval(1 - exp.alpha)
            assert arm["method"] == "t" and arm["value"] == pytest.approx(x.mean())
            assert (arm["ci"]["lower"], arm["ci"]["upper"]) == pytest.approx((ref.low, ref.high))
        assert not results["conversion:t_error"].is_primary

    def test_too_few_users_is_a_note_not_an_error(self):
        exp = ExperimentFactory(key="t-empty")
        services.experiment_results_recompute(experiment_id=exp.pk)
        result = ExperimentResult.objects.get(experiment=exp)
        assert result.comparisons == [] and "waiting" in result.note
        assert [(a["users"], a["value"], a["ci"]) for a in result.arms] == [(0, None, None)] * 2
        # One converted user already bounds the rate away from 0: shown while waiting.
        Exposure.objects.create(experiment=exp, user_id="t-e1", variant="treatment",
                                exposed_at=timezone.now() - timedelta(hours=2))  # fmt: skip
        add_events([("t-e1", "t_convert", timezone.now() - timedelta(hours=1), {})])
        services.experiment_results_recompute(experiment_id=exp.pk)
        latest = ExperimentResult.objects.filter(experiment=exp).order_by("-computed_at")[0]
        treatment = latest.arms[1]
        assert "waiting" in latest.note and treatment["value"] == 1.0
        assert 0 < treatment["ci"]["lower"] < treatment["ci"]["upper"] == pytest.approx(1.0)

    def test_lifecycle(self):
        exp = ExperimentFactory(status=Experiment.Status.DRAFT, starts_at=None)
        with pytest.raises(services.ExperimentStateError):
            services.experiment_stop(experiment_id=exp.pk)
        started = services.experiment_start(experiment_id=exp.pk)
        assert started.status == "running" and started.starts_at is not None
        with pytest.raises(services.ExperimentStateError):
            services.experiment_start(experiment_id=exp.pk)
        stopped = services.experiment_stop(experiment_id=exp.pk)
        assert stopped.status == "stopped" and stopped.ends_at is not None

    def test_stopping_computes_the_final_results(self):
        # The hourly job skips stopped experiments: results read after a stop were the
        # last hourly look's, without the conversions since.
        exp, truth = _experiment_with_data(seed=5)
        services.experiment_results_recompute(experiment_id=exp.pk)
        late = timezone.now() - timedelta(minutes=1)  # every exposed user converts (again)
        exposed = Exposure.objects.filter(experiment=exp).values_list("user_id", flat=True)
        add_events([(u, "t_convert", late, {}) for u in exposed])
        before = truth["control"][1] / truth["control"][0]
        stopped = services.experiment_stop(experiment_id=exp.pk)
        latest = selectors.experiment_latest_results(stopped)[0]
        assert latest.computed_at >= stopped.ends_at
        assert latest.comparisons[0]["fixed"]["control_value"] == 1.0 > before
        # Nothing left for the hourly job: the final look exists.
        assert services.experiments_results_recompute()["experiments"] == 0

    def test_hourly_job_takes_the_final_look_a_failed_stop_missed(self, monkeypatch):
        exp, _ = _experiment_with_data(seed=6)
        real = services.experiments.experiment_results_recompute

        def broken(**kwargs):
            raise RuntimeError("analysis down")

        monkeypatch.setattr(services.experiments, "experiment_results_recompute", broken)
        stopped = services.experiment_stop(experiment_id=exp.pk)
        assert stopped.status == "stopped"  # the stop holds although its analysis failed
        assert not ExperimentResult.objects.filter(experiment=exp).exists()
        monkeypatch.setattr(services.experiments, "experiment_results_recompute", real)
        assert services.experiments_results_recompute()["experiments"] == 1
        assert ExperimentResult.objects.get(experiment=exp).computed_at >= stopped.ends_at
        assert services.experiments_results_recompute()["experiments"] == 0

    def test_hourly_job_covers_running_experiments_only(self):
        _experiment_with_data(seed=2)
        ExperimentFactory(key="t-draft", status=Experiment.Status.DRAFT)
        counts = services.experiments_results_recompute()
        assert counts == {"experiments": 1, "results": 1, "failed": 0}

    def test_hourly_job_goes_on_past_an_experiment_that_cannot_be_analysed(self, caplog):
        # planned_users=0 was stored before it was validated: its analysis raises.
        broken = ExperimentFactory(key="t-unplanned", planned_users=0)
        exposed = timezone.now() - timedelta(hours=2)
        Exposure.objects.bulk_create([
            Exposure(experiment=broken, user_id=f"t-un{i}", variant=v, exposed_at=exposed)
            for i, v in enumerate(["control", "treatment"] * 3)
        ])  # fmt: skip
        healthy, _ = _experiment_with_data(n_users=60, seed=3)
        counts = services.experiments_results_recompute()
        assert counts["failed"] == 1 and str(broken.pk) in counts["errors"]
        assert ExperimentResult.objects.filter(experiment=healthy).count() == 1
        assert not ExperimentResult.objects.filter(experiment=broken).exists()
        assert str(broken.pk) in caplog.text

    def test_an_arm_that_receives_nobody_is_a_sample_ratio_mismatch(self):
        exp = ExperimentFactory(key="t-empty-arm")
        exposed = timezone.now() - timedelta(hours=2)
        Exposure.objects.bulk_create([
            Exposure(experiment=exp, user_id=f"t-ea{i}", variant="control", exposed_at=exposed)
            for i in range(500)
        ])  # fmt: skip
        services.experiment_results_recompute(experiment_id=exp.pk)
        result = ExperimentResult.objects.get(experiment=exp)
        expected = srm_check([500, 0], exp.weights)
        assert result.srm_mismatch and result.srm_p_value == pytest.approx(expected.p_value)
        assert "mismatch" in result.note and result.comparisons == []

    def test_a_small_balanced_start_is_waiting_not_a_mismatch(self):
        exp = ExperimentFactory(key="t-one-user")
        Exposure.objects.create(experiment=exp, user_id="t-ou", variant="control")
        services.experiment_results_recompute(experiment_id=exp.pk)
        result = ExperimentResult.objects.get(experiment=exp)
        assert not result.srm_mismatch and "waiting" in result.note


# --------------------------------------------------------------------------- overview
def test_overview_section_follows_the_data():
    before = selectors.overview_section()
    UserProfileFactory(persona="socializer")
    RuleFactory(enabled=False)
    ExperimentFactory()
    after = selectors.overview_section()
    assert after["profiles"] == before["profiles"] + 1
    assert after["persona_distribution"].get("socializer", 0) == (
        before["persona_distribution"].get("socializer", 0) + 1
    )
    assert after["rules_total"] == before["rules_total"] + 1
    assert after["active_rules"] == before["active_rules"]
    assert after["running_experiments"] == before["running_experiments"] + 1


def test_overview_and_status_queries_do_not_grow_with_experiments():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries(read) -> int:
        with CaptureQueriesContext(connection) as captured:
            read()
        return len(captured)

    def add_experiment_with_results():
        exp = ExperimentFactory()
        Exposure.objects.create(experiment=exp, user_id=f"t-q{exp.pk}", variant="control")
        for hours in (2, 1):
            ExperimentResult.objects.create(
                experiment=exp, metric="conversion:t_convert", metric_kind="conversion",
                computed_at=timezone.now() - timedelta(hours=hours),
            )  # fmt: skip

    add_experiment_with_results()
    one = queries(selectors.status_report), queries(selectors.overview_section)
    for _ in range(5):
        add_experiment_with_results()
    six = queries(selectors.status_report), queries(selectors.overview_section)
    assert six == one
    report = selectors.status_report()["running_experiments"]
    assert len(report) == 6 and all(e["exposures"] == 1 for e in report)
    assert all(len(e["results"]) == 1 for e in report)


def test_latest_results_are_the_newest_per_metric_of_each_experiment():
    first, second = ExperimentFactory(), ExperimentFactory()
    now = timezone.now()
    made = {}
    for exp in (first, second):
        for metric, primary in (("conversion:t_convert", True), ("mean:t_buy", False)):
            for hours in (3, 1, 2):
                made[exp.pk, metric, hours] = ExperimentResult.objects.create(
                    experiment=exp, metric=metric, is_primary=primary, metric_kind="conversion",
                    computed_at=now - timedelta(hours=hours),
                )  # fmt: skip
    latest = selectors.latest_results_by_experiment([first, second])
    for exp in (first, second):
        assert [r.pk for r in latest[exp.pk]] == [
            made[exp.pk, "conversion:t_convert", 1].pk,
            made[exp.pk, "mean:t_buy", 1].pk,
        ]
        assert [r.pk for r in selectors.experiment_latest_results(exp)] == [
            r.pk for r in latest[exp.pk]
        ]


def test_overview_counts_srm_on_the_latest_result_only():
    exp = ExperimentFactory()
    base = selectors.overview_section()["experiments_with_srm"]
    old = timezone.now() - timedelta(hours=2)
    ExperimentResult.objects.create(experiment=exp, metric="m", metric_kind="conversion",
                                    computed_at=old, srm_mismatch=True)  # fmt: skip
    assert selectors.overview_section()["experiments_with_srm"] == base + 1
    ExperimentResult.objects.create(experiment=exp, metric="m", metric_kind="conversion",
                                    srm_mismatch=False)  # fmt: skip
    assert selectors.overview_section()["experiments_with_srm"] == base


class TestLocalLayer:
    def test_warm_hits_need_no_network_and_local_writes_are_seen_at_once(
        self, settings, django_assert_num_queries
    ):
        from unittest import mock

        from django.core.cache import cache

        settings.PERSONALIZATION_LOCAL_CACHE_SECONDS = 60
        UserProfileFactory(user_id="t-local", persona="optimizer", persona_confidence=0.9)
        services.config_resolve(user_id="t-local")
        with mock.patch.object(cache, "get", side_effect=AssertionError("network")):
            with django_assert_num_queries(0):
                assert services.config_resolve(user_id="t-local")["cached"]
        rule = PersonalizationRule.objects.get(key="optimizer-compact")
        rule.action = {"layout": {"density": "tiny"}}
        rule.save()
        fresh = services.config_resolve(user_id="t-local")
        assert not fresh["cached"] and fresh["config"]["layout"]["density"] == "tiny"

    def test_another_process_write_is_seen_after_the_trust_window(self, settings):
        from django.core.cache import cache

        from personalization.services.config import VERSION_KEY

        settings.PERSONALIZATION_LOCAL_CACHE_SECONDS = 60
        UserProfileFactory(user_id="t-remote", persona="explorer", persona_confidence=0.9)
        services.config_resolve(user_id="t-remote")
        cache.incr(VERSION_KEY)  # what a write in another process does
        assert services.config_resolve(user_id="t-remote")["cached"]  # within the window
        settings.PERSONALIZATION_LOCAL_CACHE_SECONDS = 0  # window over
        assert not services.config_resolve(user_id="t-remote")["cached"]


def test_unnormalised_weights_are_honoured():
    exp = ExperimentFactory(key="t-weights", variants=[{"name": "control", "weight": 3},
                                                       {"name": "treatment", "weight": 1}])  # fmt: skip
    assert exp.weights == [0.75, 0.25]
    got = [assign_variant(experiment_key=exp.key, user_id=f"t-w{i}", variants=exp.variant_names,
                          weights=exp.weights) for i in range(4000)]  # fmt: skip
    assert 0.72 < got.count("control") / len(got) < 0.78
    for i in range(5):
        served = services.config_resolve(user_id=f"t-w{i}")["experiments"]["t-weights"]
        assert served == got[i]


def test_a_flushed_version_never_revives_old_entries():
    from django.core.cache import cache

    from personalization.services.config import VERSION_KEY

    UserProfileFactory(user_id="t-flush", persona="explorer", persona_confidence=0.9)
    first = services.config_resolve(user_id="t-flush")["cache_version"]
    cache.delete(VERSION_KEY)  # evicted
    RuleFactory(key="t-after-flush", action={"late": True})  # written after the eviction
    out = services.config_resolve(user_id="t-flush")
    assert out["cache_version"] > first and out["config"]["late"] is True


def test_an_experiment_gone_behind_a_cached_spec_is_not_served():
    from unittest import mock

    from personalization.services import config

    live = ExperimentFactory(key="t-live")
    gone = ExperimentFactory(key="t-gone")
    stopped = ExperimentFactory(key="t-stopping")
    cached_specs = config._live_specs(config.config_version())
    with mock.patch.object(config, "_live_specs", return_value=cached_specs):
        Experiment.objects.filter(pk=gone.pk).delete()
        Experiment.objects.filter(pk=stopped.pk).update(status=Experiment.Status.STOPPED)
        out = services.config_resolve(user_id="t-stale")
    assert out["experiments"].keys() == {"t-live"}
    assert list(
        Exposure.objects.filter(user_id="t-stale").values_list("experiment", flat=True)
    ) == [live.pk]
    assert not services.config_resolve(user_id="t-stale")["cached"]  # nothing was cached


def test_segments_follow_behaviour():
    from personalization.engine.features import DAY_SECONDS, EventArrays, extract_user_features
    from personalization.services.profiles import _segments

    users, names, ts, sessions = [], [], [], []
    for u in range(10):  # u0 has by far the most sessions; u9 was last seen 20 days ago
        for s in range(30 if u == 0 else 3):
            users.append(f"u{u}")
            names.append("session_start")
            ts.append((0 if u == 9 else 20) * DAY_SECONDS + s * 3600.0)
            sessions.append(f"u{u}-{s}")
    events = EventArrays(np.array(users, dtype=object), np.array(names, dtype=object),
                         np.array(ts), np.array(sessions, dtype=object))  # fmt: skip
    features = extract_user_features(events, as_of=21 * DAY_SECONDS)
    tags = dict(zip(features.user_ids, _segments(features, purchasers={"u3"}), strict=True))
    assert "power_user" in tags["u0"] and "power_user" not in tags["u1"]
    assert "dormant" in tags["u9"] and "dormant" not in tags["u1"]
    assert tags["u3"] == ["purchaser"]


def test_sequential_significance_in_summaries_is_holm_adjusted():
    exp = ExperimentFactory(key="t-holm", alpha=0.05)
    seq = {"p_value": 0.03, "ci": {"lower": 0.0, "upper": 1.0}, "significant": True}
    comparison = {"fixed": {"relative_lift": 0.1, "relative_lift_ci": {"lower": 0, "upper": 1},
                            "p_value": 0.03},
                  "p_value_holm": 0.06, "chance_to_beat_control": 0.9, "sequential": seq}  # fmt: skip
    result = ExperimentResult.objects.create(
        experiment=exp, metric="m", metric_kind="conversion",
        comparisons=[{**comparison, "variant": "a", "sequential_p_value_holm": 0.06},
                     {**comparison, "variant": "b", "sequential_p_value_holm": 0.04}],
    )  # fmt: skip
    summary = selectors.result_summary(result)
    assert [c["sequential_significant"] for c in summary["comparisons"]] == [False, True]
