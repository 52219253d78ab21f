"""Beat schedules of the scaling app (written to django-celery-beat by sync_schedules)."""

SCHEDULES = [
    {
        "name": "scaling: evaluate rules and act",
        "task": "scaling.evaluate",
        "every_seconds": 60,
        "expires_seconds": 55,
        "description": "Every resource's rules, prediction and cooldowns; executes through actuators.",
    },
    {
        "name": "scaling: judge decision outcomes",
        "task": "scaling.check_outcomes",
        "every_seconds": 300,
        "expires_seconds": 280,
        "description": "Marks executed decisions a success or failure once their settle time is over.",
    },
    {
        "name": "scaling: prune old no-change evaluations",
        "task": "scaling.prune_decisions",
        "crontab": "50 4 * * *",
        "kwargs": {"days": 14},
    },
]
