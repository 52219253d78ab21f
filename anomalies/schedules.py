"""Beat schedules, written to django-celery-beat rows by `manage.py sync_schedules`."""

SCHEDULES = [
    {
        "name": "anomalies: score recent data",
        "task": "anomalies.score_recent",
        "every_seconds": 60,
        "expires_seconds": 55,
    },
    {"name": "anomalies: retrain models", "task": "anomalies.retrain", "crontab": "15 3 * * *"},
    {
        "name": "anomalies: enforce history retention",
        "task": "anomalies.enforce_retention",
        "crontab": "50 3 * * *",
        "kwargs": {"batch_size": 1000, "max_batches": 100},
        "description": "Delete anomalies that ended over PHASE3_ANOMALY_RETENTION_DAYS ago "
        "(false positives are kept: they hold what feedback taught).",
    },
]
