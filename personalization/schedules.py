"""Beat schedules of the personalization app (written to django-celery-beat by sync_schedules)."""

SCHEDULES = [
    {
        "name": "personalization: recompute profiles and personas",
        "task": "personalization.recompute_profiles",
        "crontab": "30 2 * * *",
        "expires_seconds": 6 * 3600,
    },
    {
        "name": "personalization: recompute experiment results",
        "task": "personalization.recompute_experiment_results",
        "crontab": "10 * * * *",
        "expires_seconds": 3000,
    },
    {
        # Scheduled ramps of shipped variants; a step is due at most this late.
        "name": "personalization: advance scheduled rollouts",
        "task": "personalization.advance_rollouts",
        "every_seconds": 300,
        "expires_seconds": 290,
    },
]
