"""The resources and the five rules every installation starts with (plain data).

Shared by the data migration (historical models) and ``scaling_defaults_ensure`` so
that both create exactly the same rows. Operators edit them in the admin afterwards;
neither path overwrites an existing row.
"""

from __future__ import annotations

DEFAULT_RESOURCES = [
    {
        "name": "web-workers",
        "kind": "web_workers",
        "current_units": 4, "min_units": 2, "max_units": 40,
        "unit_capacity": 600.0,  # requests per minute one worker serves at 100%
        "cost_per_unit_hour": 0.05, "target_utilization": 0.6,
        "load_series_name": "http.requests.rate",
        "startup_seconds": 90, "settle_seconds": 600,
    },
    {
        "name": "database-connections",
        "kind": "db_connections",
        "current_units": 10, "min_units": 5, "max_units": 40,
        "unit_capacity": 10.0,  # connections per unit (a pool slice of 10)
        "cost_per_unit_hour": 0.02, "target_utilization": 0.7,
        "load_series_name": "db.connections.active",
        "startup_seconds": 10, "settle_seconds": 300,
    },
    {
        "name": "api-quota",
        "kind": "api_quota",
        "current_units": 5, "min_units": 1, "max_units": 20,
        "unit_capacity": 1.0, "cost_per_unit_hour": 0.10, "target_utilization": 0.75,
        "load_series_name": "", "startup_seconds": 0, "settle_seconds": 900,
    },
    {
        "name": "celery-workers",
        "kind": "celery_workers",
        "current_units": 2, "min_units": 1, "max_units": 16,
        "unit_capacity": 20.0,  # tasks one worker process clears per evaluation interval
        "cost_per_unit_hour": 0.03, "target_utilization": 0.7,
        "load_series_name": "", "startup_seconds": 15, "settle_seconds": 300,
    },
]  # fmt: skip

DEFAULT_RULES = [
    {"resource": "web-workers", "name": "CPU utilisation", "metric": "system.cpu.utilization",
     "kind": "target_tracking", "target": 0.6, "tolerance": 0.1, "critical": 0.95,
     "cooldown_up_seconds": 60, "cooldown_down_seconds": 300, "priority": 10},
    {"resource": "web-workers", "name": "Memory utilisation",
     "metric": "system.memory.utilization", "kind": "target_tracking", "target": 0.7,
     "tolerance": 0.1, "critical": 0.95, "cooldown_up_seconds": 60,
     "cooldown_down_seconds": 300, "priority": 20},
    # Connections in use per unit (a pool slice of 10, so 7 is 70 %), the HPA's AverageValue:
    # a share of the server's fixed maximum never falls as slices are added, and target
    # tracking on it ran the pool to max_units (see DB_RULE_BEFORE).
    {"resource": "database-connections", "name": "Database connections",
     "metric": "db.connections.active", "kind": "queue_backlog", "target": 7.0,
     "tolerance": 0.1, "critical": 95.0, "cooldown_up_seconds": 60,
     "cooldown_down_seconds": 600, "priority": 10},
    {"resource": "api-quota", "name": "API rate-limit usage",
     "metric": "api.ratelimit.utilization", "kind": "step", "target": 0.75, "tolerance": 0.0,
     "steps": [{"lower": 0.0, "upper": 0.3, "change": -1},
               {"lower": 0.85, "upper": 0.95, "change": 1},
               {"lower": 0.95, "upper": None, "change": 2}],
     "critical": 0.99, "cooldown_up_seconds": 300, "cooldown_down_seconds": 1800, "priority": 10},
    {"resource": "celery-workers", "name": "Celery queue backlog", "metric": "celery.queue.backlog",
     "kind": "queue_backlog", "target": 20.0, "tolerance": 0.1, "critical": 2000.0,
     "queue": "celery", "cooldown_up_seconds": 60, "cooldown_down_seconds": 300,
     "priority": 10},
]  # fmt: skip

#: The "Database connections" rule as installations before migration 0004 got it: target
#: tracking on the share of the server's 100 connections. That share does not fall as the
#: pool grows, so outside its band the rule added slices until max_units. Migration 0004
#: rewrites a row still exactly like this; an operator's edited row is left alone.
DB_RULE_BEFORE = {
    "metric": "db.connections.utilization", "kind": "target_tracking", "target": 0.7,
    "tolerance": 0.1, "critical": 0.95, "queue": "", "metric_labels": {},
    "cooldown_up_seconds": 60, "cooldown_down_seconds": 600, "priority": 10,
}  # fmt: skip
