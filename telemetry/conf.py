"""Telemetry's settings, each with a default so the project runs with nothing configured.

Read through functions (not module constants) so tests and operators can change them
with ``settings`` overrides at run time.
"""

from __future__ import annotations

from django.conf import settings


def raw_retention_days() -> int:
    """Days raw samples are kept; older hours live on as hourly rollups."""
    return int(getattr(settings, "PHASE3_RAW_RETENTION_DAYS", 90))


def max_future_seconds() -> float:
    """How far ahead of the server clock a timestamp may be (client clocks drift a little)."""
    return float(getattr(settings, "PHASE3_INGEST_MAX_FUTURE_SECONDS", 300))


def max_body_bytes() -> int:
    """Largest ingestion body; 100,000 samples with long label sets fit in about 30 MB."""
    return int(getattr(settings, "PHASE3_INGEST_MAX_BODY_BYTES", 64 * 1024 * 1024))


def max_raw_points() -> int:
    """Most raw samples one read returns; longer ranges must ask for a step."""
    return int(getattr(settings, "PHASE3_MAX_RAW_POINTS", 50_000))
