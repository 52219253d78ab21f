"""Beat schedules: short horizons hourly, the others daily (see ``phase3.scheduling``)."""

SCHEDULES = [
    {
        "name": "forecasting: short horizons",
        "task": "forecasting.plan",
        "every_seconds": 3600,
        "expires_seconds": 3300,
        "kwargs": {"horizon_groups": ["short"]},
        "description": "7-day forecasts at the series' own grain, one task per target.",
    },
    {
        "name": "forecasting: medium and long horizons",
        "task": "forecasting.plan",
        "crontab": "20 3 * * *",
        "kwargs": {"horizon_groups": ["medium", "long"]},
        "description": "30 to 365-day forecasts on hourly/daily aggregates, one task per target.",
    },
]
