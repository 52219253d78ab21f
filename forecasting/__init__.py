"""Forecasting: multi-horizon forecasts with intervals, measured accuracy and business insights."""
