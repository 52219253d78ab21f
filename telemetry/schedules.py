"""Telemetry's periodic jobs, written to django-celery-beat rows by ``manage.py sync_schedules``."""

SCHEDULES = [
    {
        "name": "telemetry: update hourly rollups",
        "task": "telemetry.update_rollups",
        "every_seconds": 600,
        "expires_seconds": 540,
        "description": "Summarise closed hours of every series; recompute hours late data touched.",
    },
    {
        "name": "telemetry: enforce raw retention",
        "task": "telemetry.enforce_retention",
        "crontab": "40 3 * * *",
        "kwargs": {"batch_size": 20000, "max_batches": 500},
        "description": "Delete raw samples older than PHASE3_RAW_RETENTION_DAYS once rolled up.",
    },
]
