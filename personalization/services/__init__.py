"""Services of the personalization app: the only code that writes its models.

Split by subject; import from here.
"""

from .config import config_invalidate, config_resolve, config_version
from .experiments import (
    FROZEN_ONCE_STARTED,
    SHIP_FIELDS,
    ExperimentStateError,
    experiment_results_recompute,
    experiment_start,
    experiment_stop,
    experiment_update,
    experiments_results_recompute,
)
from .profiles import personas_fit, profile_attributes_update, profiles_recompute
from .rules import default_rules_ensure, rules_set_enabled
from .shipping import (
    RAMP_ACTOR,
    experiment_rollout_set,
    experiment_ship,
    experiment_unship,
    rollouts_advance,
)

__all__ = [
    "FROZEN_ONCE_STARTED",
    "RAMP_ACTOR",
    "SHIP_FIELDS",
    "ExperimentStateError",
    "config_invalidate",
    "config_resolve",
    "config_version",
    "default_rules_ensure",
    "experiment_results_recompute",
    "experiment_rollout_set",
    "experiment_ship",
    "experiment_start",
    "experiment_stop",
    "experiment_unship",
    "experiment_update",
    "experiments_results_recompute",
    "personas_fit",
    "profile_attributes_update",
    "profiles_recompute",
    "rollouts_advance",
    "rules_set_enabled",
]
