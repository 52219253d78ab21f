"""Beat schedules of the optimization app (written to django-celery-beat by sync_schedules)."""

SCHEDULES = [
    {
        "name": "optimization: recompute baselines",
        "task": "optimization.plan_baselines",
        "crontab": "5 * * * *",
        "expires_seconds": 3000,
    },
    {
        "name": "optimization: analyze (health, bottlenecks, recommendations)",
        "task": "optimization.analyze",
        "crontab": "20 * * * *",
        "expires_seconds": 3000,
    },
    {
        "name": "optimization: verify applied recommendations",
        "task": "optimization.verify_recommendations",
        "crontab": "40 4 * * *",
        "expires_seconds": 6 * 3600,
    },
]
