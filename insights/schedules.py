"""Beat schedules of the insights system (written to django-celery-beat by sync_schedules).

Segmentation and feature impact daily (behaviour changes slowly; training takes
seconds to minutes), anomaly patterns hourly (the forest is reused and retrained once a
day), and insight generation after each of them (the tasks enqueue it) plus hourly so
other systems' results are picked up even when none of ours ran.
"""

SCHEDULES = [
    {
        "name": "insights: segment users",
        "task": "insights.segment_users",
        "crontab": "20 2 * * *",
        "kwargs": {"days": 28},
        "expires_seconds": 3600,
    },
    {
        "name": "insights: feature impact on retention",
        "task": "insights.feature_impact",
        "crontab": "40 2 * * *",
        "kwargs": {"outcome": "retention", "days": 28},
        "expires_seconds": 3600,
    },
    {
        "name": "insights: feature impact on conversion",
        "task": "insights.feature_impact",
        "crontab": "50 2 * * *",
        "kwargs": {"outcome": "conversion", "days": 28},
        "expires_seconds": 3600,
    },
    {
        "name": "insights: anomaly patterns",
        "task": "insights.state_patterns",
        "every_seconds": 3600,
        "expires_seconds": 3000,
        "kwargs": {"days": 28},
    },
    {
        "name": "insights: generate insights",
        "task": "insights.generate_insights",
        "every_seconds": 3600,
        "expires_seconds": 3000,
    },
]
