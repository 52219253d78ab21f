"""Pure analysis engine of the optimization app: numpy / scipy / scikit-learn, no Django.

Modules: ``sql_shape`` (query shapes for the middleware), ``baselines`` (hour-of-week robust
statistics), ``trends`` (Theil-Sen + Mann-Kendall), ``health`` (weighted health score),
``bottlenecks`` (detectors), ``recommendations`` (findings -> recommendations), ``impact``
(realised impact of applied changes) and ``calibration`` (predictions corrected by outcomes).
"""
