"""Beat schedules, written to django-celery-beat rows by `manage.py sync_schedules`."""

SCHEDULES = [
    {
        "name": "anomalies: score recent data",
        "task": "anomalies.score_recent",
        "every_seconds": 60,
        "expires_seconds": 55,
    },
    {"name": "anomalies: retrain models", "task": "anomalies.retrain", "crontab": "15 3 * * *"},
]
