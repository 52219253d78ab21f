"""Offline evaluation and speed of the insights engine on data with known answers.

    .venv/bin/python bench/insights.py            # all sections, 5 seeds
    .venv/bin/python bench/insights.py --seeds 10 --only patterns

Every figure is measured here from generated data whose truth is known (user kinds,
true feature effects, injected incident windows); none is typed in. Not part of the
test suite: it takes a minute or two on two cores.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import stats
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, roc_auc_score, silhouette_score
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from insights.engine import feature_impact as fi
from insights.engine import performance_patterns as pp
from insights.engine import segmentation as seg
from insights.engine import synthetic as syn

MIXES = {
    "3 kinds": {"explorer": 150, "optimizer": 150, "socializer": 150},
    "4 kinds": {"explorer": 150, "optimizer": 150, "achiever": 150, "socializer": 150},
    "4 kinds + casual": {
        "explorer": 150,
        "optimizer": 150,
        "achiever": 150,
        "socializer": 150,
        "casual": 60,
    },
}


def _mean(values: list[float]) -> str:
    finite = [v for v in values if np.isfinite(v)]
    if not finite:
        return "n/a"
    if len(finite) == 1:
        return f"{finite[0]:.3f}"
    return f"{statistics.mean(finite):.3f} ± {statistics.stdev(finite):.3f}"


def _log_only_baseline(x: np.ndarray, k_range: range) -> tuple[int, np.ndarray]:
    """The naive preprocessing (log1p + standardise, no mix/level split), for contrast."""
    with threadpool_limits(1):
        z = StandardScaler().fit_transform(np.log1p(x))
        scores = {
            k: silhouette_score(z, KMeans(k, n_init=10, random_state=0).fit_predict(z))
            for k in k_range
        }
        k = max(scores, key=scores.get)
        return k, KMeans(k, n_init=10, random_state=0).fit_predict(z)


def bench_segmentation(seeds: int) -> None:
    print("\n## Segmentation (KMeans, k in 2..8 by silhouette; truth = generated user kinds)")
    print("| population | k right | ARI | NMI | held-out silhouette | ARI log-only baseline |")
    print("|---|---|---|---|---|---|")
    for label, mix in MIXES.items():
        right, ari, nmi, sil, base_ari = 0, [], [], [], []
        for seed in range(seeds):
            pop = syn.make_population(mix, seed=seed)
            result = seg.segment_users(pop.features, pop.feature_names, random_state=seed)
            agree = seg.agreement_with_truth(result.labels, pop.kinds)
            right += int(result.k == len(mix))
            ari.append(agree["adjusted_rand"])
            nmi.append(agree["nmi"])
            sil.append(result.silhouette_holdout)
            _, base_labels = _log_only_baseline(pop.features, range(2, 9))
            base_ari.append(adjusted_rand_score(pop.kinds, base_labels))
        print(
            f"| {label} | {right}/{seeds} | {_mean(ari)} | {_mean(nmi)} | {_mean(sil)} "
            f"| {_mean(base_ari)} |"
        )


def bench_feature_impact(seeds: int) -> None:
    print("\n## Feature impact (12 features, 4 real effects, 1 proxy; 5000 users)")
    print(
        "| model | held-out AUC | oracle AUC | Spearman(importance, |true effect|) "
        "| OR sign recovery | proxy flagged by OR / by model | promote precision |"
    )
    print("|---|---|---|---|---|---|---|")
    beta = np.array([1.2, 0.8, -0.8, 0.5, 0, 0, 0, 0, 0, 0, 0, 0.0])
    adoption = np.array([0.08, 0.6, 0.3, 0.15, 0.5, 0.4, 0.2, 0.1, 0.7, 0.3, 0.25, 0.1])
    for kind in fi.MODEL_KINDS:
        auc, oracle, rho, signs, proxy_or, proxy_model, promote_ok = [], [], [], [], 0, 0, []
        for seed in range(seeds):
            data = syn.make_feature_usage(5000, adoption, beta, proxy_of={11: 0}, seed=seed)
            ratios = fi.odds_ratios(
                fi.contingency_tables(data.usage, data.outcome, data.feature_names)
            )
            model = fi.fit_impact_model(
                data.usage,
                data.outcome,
                data.feature_names,
                model_kind=kind,
                n_repeats=5,
                random_state=seed,
            )
            auc.append(model.auc_holdout)
            oracle.append(roc_auc_score(data.outcome, data.usage @ beta))
            imp = {f.feature: f for f in model.importances}
            rho.append(
                stats.spearmanr(
                    [imp[n].importance for n in data.feature_names[:11]], np.abs(beta[:11])
                ).statistic
            )
            by = {r.feature: r for r in ratios}
            real = [j for j in range(11) if beta[j] != 0]
            signs.append(
                np.mean(
                    [
                        by[data.feature_names[j]].significant
                        and np.sign(np.log(by[data.feature_names[j]].odds_ratio))
                        == np.sign(beta[j])
                        for j in real
                    ]
                )
            )
            proxy_or += int(by["feature_11"].significant)
            proxy_model += int(imp["feature_11"].reliable)
            promoted = [
                s.feature
                for s in fi.suggest_feature_actions(ratios, model.importances)
                if s.action == "promote"
            ]
            if promoted:
                names = data.feature_names
                promote_ok.append(np.mean([beta[names.index(f)] > 0 for f in promoted]))
        print(
            f"| {kind} | {_mean(auc)} | {_mean(oracle)} | {_mean(rho)} | {_mean(signs)} "
            f"| {proxy_or}/{seeds} / {proxy_model}/{seeds} | {_mean(promote_ok)} |"
        )


def bench_patterns(seeds: int) -> None:
    print("\n## Multivariate state anomalies (28 days at 5 min; train first 60%, score rest)")
    print(
        "| detector | precision | recall | AUC | avg precision | incident recall "
        "| weekly pattern found at the right hour |"
    )
    print("|---|---|---|---|---|---|---|")
    rows: dict[str, dict[str, list[float]]] = {
        "forest on residuals (default)": {},
        "forest on levels": {},
        "max single-series z": {},
    }
    weekly_ok = 0
    for seed in range(seeds):
        history = syn.make_system_history(seed=seed)
        result = pp.fit_state_model(history.ts, history.states, history.columns, random_state=seed)
        forest = pp.evaluate_against_incidents(
            result.holdout_ts, result.holdout_scores, result.model.threshold, history.incidents
        )
        on_levels = pp.fit_state_model(
            history.ts, history.states, history.columns, inputs="levels", random_state=seed
        )
        levels = pp.evaluate_against_incidents(
            on_levels.holdout_ts,
            on_levels.holdout_scores,
            on_levels.model.threshold,
            history.incidents,
        )
        n = result.n_train
        train_single = pp.single_series_scores(history.states[:n], history.states[:n])
        single = pp.evaluate_against_incidents(
            result.holdout_ts,
            pp.single_series_scores(history.states[:n], history.states[n:]),
            float(np.quantile(train_single, result.params["threshold_quantile"])),
            history.incidents,
        )
        for name, metrics in (
            ("forest on residuals (default)", forest),
            ("forest on levels", levels),
            ("max single-series z", single),
        ):
            for key, value in metrics.items():
                rows[name].setdefault(key, []).append(value)
        episodes = pp.find_episodes(history.ts, history.states, result.model)
        patterns = pp.group_patterns(episodes, history.columns)
        job = [
            a
            for (a, _), k in zip(history.incidents, history.incident_kinds, strict=True)
            if k == "weekly_job"
        ]
        hours = {p.weekly_hour for p in patterns if p.weekly_recurring}
        weekly_ok += int(hours == {pp.hour_of_week(job[0])})
    for name, m in rows.items():
        found = f"{weekly_ok}/{seeds}" if name.endswith("(default)") else "-"
        print(
            f"| {name} | {_mean(m['precision'])} | {_mean(m['recall'])} | {_mean(m['auc'])} "
            f"| {_mean(m['average_precision'])} | {_mean(m['incident_recall'])} | {found} |"
        )


def _timed(label: str, func: Callable[[], object], repeat: int = 3) -> None:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    print(f"| {label} | {min(times):.2f} s | {statistics.median(times):.2f} s |")


def bench_speed() -> None:
    print("\n## Speed (best and median of 3, one thread)")
    print("| task | best | median |")
    print("|---|---|---|")
    pop = syn.make_population(
        {"explorer": 2500, "optimizer": 2500, "achiever": 2500, "socializer": 2500}, seed=0
    )
    _timed(
        "segment_users, 10 000 users x 11 features, k 2..8",
        lambda: seg.segment_users(pop.features, pop.feature_names),
    )
    usage = syn.make_feature_usage(20_000, [0.3] * 20, [0.5] * 5 + [0.0] * 15, seed=0)
    for kind in fi.MODEL_KINDS:
        _timed(
            f"fit_impact_model ({kind}), 20 000 users x 20 features",
            lambda kind=kind: fi.fit_impact_model(
                usage.usage, usage.outcome, usage.feature_names, model_kind=kind, n_repeats=5
            ),
        )
    history = syn.make_system_history(days=28)
    _timed(
        "fit_state_model, 8 064 states x 5 metrics",
        lambda: pp.fit_state_model(history.ts, history.states, history.columns),
    )


SECTIONS = {
    "segmentation": bench_segmentation,
    "feature_impact": bench_feature_impact,
    "patterns": bench_patterns,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--only", choices=[*SECTIONS, "speed"])
    args = parser.parse_args()
    if args.seeds < 2:
        parser.error("--seeds must be at least 2 (a spread needs two runs)")
    for name, section in SECTIONS.items():
        if args.only in (None, name):
            section(args.seeds)
    if args.only in (None, "speed"):
        bench_speed()


if __name__ == "__main__":
    main()
