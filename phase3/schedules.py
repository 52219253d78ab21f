SCHEDULES = [
    {
        "name": "telemetry: demo live feed",
        "task": "phase3.demo_tick",
        "every_seconds": 60,
        "expires_seconds": 55,
        "description": "Continues the demo world's metrics to now; does nothing without demo data.",
    },
    {
        "name": "phase3: heartbeat",
        "task": "phase3.heartbeat",
        "every_seconds": 60,
        "expires_seconds": 55,
        "description": "Shows that beat and at least one worker are alive.",
    },
    {
        "name": "phase3: close lost job runs",
        "task": "phase3.close_lost_runs",
        "every_seconds": 600,
        "expires_seconds": 540,
        "description": "Closes as failed the runs still 'running' whose worker stopped heartbeating.",
    },
    {
        "name": "phase3: prune job runs",
        "task": "phase3.prune_job_runs",
        "crontab": "30 4 * * *",
        "kwargs": {"days": 30},
        "description": "Deletes runs older than `days`, except each task's latest run, "
        "latest success and (never succeeded) first run, which schedule health reads.",
    },
]
