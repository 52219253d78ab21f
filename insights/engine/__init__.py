"""Pure algorithms of the insights system.

Nothing in this package imports Django: every function takes numpy arrays and plain
dataclasses and returns the same, so it can be unit-tested and evaluated on data with
known answers (see ``synthetic``) without a database.

Modules:
- ``segmentation``: behavioural user segments, k chosen by silhouette, described by
  what sets each apart, with size trends and targeting suggestions.
- ``feature_impact``: odds ratios from 2x2 tables (PostHog-style smoothing and minimum
  support) plus a held-out-scored model with permutation importance; promote/review.
- ``performance_patterns``: isolation forest over multivariate system states, scored
  against known incident windows, unusual episodes grouped into recurring patterns.
- ``priority``: insight priority = impact x confidence x novelty, and dedup keys.
- ``registry``: model artefacts as bytes with checksums, primary metrics, activation.
- ``behaviour``: raw events -> per-user behaviour matrices, feature cohorts with
  outcomes, aligned system-state matrices.
- ``synthetic``: generators of data sets whose right answers are known.
- ``threads``: keeps native thread pools at one thread while fitting.
"""
