"""Telemetry API: batch ingestion of samples and events, series reads."""

urlpatterns: list = []
