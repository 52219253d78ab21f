"""Errors services raise for conditions callers report rather than crash on."""


class InsufficientData(Exception):
    """Too little telemetry to train or measure honestly; nothing was written."""
