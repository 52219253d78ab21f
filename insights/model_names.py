"""Registry names of the models this system trains (one place, used by writers and readers)."""

SEGMENT_MODEL = "user-segments"
STATE_MODEL = "system-states"
FEATURE_IMPACT_PREFIX = "feature-impact-"


def feature_impact_model_name(outcome: str) -> str:
    return f"{FEATURE_IMPACT_PREFIX}{outcome}"
