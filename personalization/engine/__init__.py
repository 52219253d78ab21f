"""Pure algorithms of the personalization system (numpy / scipy / scikit-learn only).

- ``features``: behavioural features per user from event arrays.
- ``personas``: Gaussian-mixture personas named through documented definitions,
  with temperature-calibrated probabilities (``calibration``).
- ``rules``: rule matching and prioritised deep merge of UI configuration.
- ``assignment``: GrowthBook v2 hashing for sticky experiment variants.
- ``rollout``: who is inside a shipped variant's rollout percentage (salted, monotone
  hash) and the steps of a scheduled ramp.
- ``stats``, ``sequential``, ``analysis``: experiment statistics.
- ``simulate``: synthetic users of known kind for tests and evaluation.

Nothing here imports Django: every function can be tested and benchmarked alone.
"""
