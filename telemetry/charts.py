"""One chart helper for every admin page: a time series with bands and marks.

Plotly draws it; its JavaScript is served from this project's static files (see
``STATICFILES_DIRS``), so pages work with no internet access.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np


def _x(values) -> list:
    arr = np.asarray(values)
    if arr.dtype.kind in "fi":
        return [datetime.fromtimestamp(float(v), tz=UTC) for v in arr]
    return list(values)


def timeseries_chart(
    title: str,
    *,
    lines: Sequence[dict] = (),
    bands: Sequence[dict] = (),
    marks: Sequence[dict] = (),
    events: Sequence[dict] = (),
    y_title: str = "",
    height: int = 360,
) -> str:
    """Return an HTML div. ``x`` values may be datetimes or epoch seconds.

    lines: ``{"name", "x", "y"}``; bands: ``{"name", "x", "lower", "upper"}`` (shaded);
    marks: ``{"name", "x", "y"}`` drawn as markers (anomalies, decisions, deployments);
    events: ``{"x", "text"}`` drawn as dotted vertical lines labelled at the top (a
    deploy before the anomaly, as Grafana draws annotations).
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    for band in bands:
        x = _x(band["x"])
        fig.add_trace(
            go.Scatter(
                x=x,
                y=list(band["upper"]),
                mode="lines",
                line={"width": 0},
                showlegend=False,
                hoverinfo="skip",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=x,
                y=list(band["lower"]),
                mode="lines",
                line={"width": 0},
                fill="tonexty",
                fillcolor=band.get("color", "rgba(99,110,250,0.18)"),
                name=band.get("name", "band"),
            )
        )
    for line in lines:
        fig.add_trace(
            go.Scatter(
                x=_x(line["x"]),
                y=list(line["y"]),
                mode="lines",
                name=line.get("name", ""),
                line=line.get("line"),
            )
        )
    for mark in marks:
        fig.add_trace(
            go.Scatter(
                x=_x(mark["x"]),
                y=list(mark["y"]),
                mode="markers",
                name=mark.get("name", ""),
                marker={
                    "size": mark.get("size", 9),
                    "color": mark.get("color", "crimson"),
                    "symbol": mark.get("symbol", "circle"),
                },
            )
        )
    for event in events:
        (x,) = _x([event["x"]])
        # A shape and an annotation, not add_vline: its annotation cannot take a datetime.
        fig.add_shape(
            type="line",
            x0=x,
            x1=x,
            yref="paper",
            y0=0,
            y1=1,
            line={"dash": "dot", "width": 1, "color": event.get("color", "darkorange")},
        )
        fig.add_annotation(
            x=x, yref="paper", y=1, text=event["text"], showarrow=False, yanchor="bottom"
        )
    fig.update_layout(
        title=title,
        height=height,
        margin={"l": 50, "r": 20, "t": 50, "b": 40},
        yaxis_title=y_title,
        template="plotly_white",
        legend={"orientation": "h", "y": -0.2},
    )
    return fig.to_html(full_html=False, include_plotlyjs=False)


def bar_chart(
    title: str, *, labels: Sequence[str], values: Sequence[float], height: int = 320
) -> str:
    import plotly.graph_objects as go

    fig = go.Figure(go.Bar(x=list(labels), y=list(values)))
    fig.update_layout(
        title=title,
        height=height,
        template="plotly_white",
        margin={"l": 50, "r": 20, "t": 50, "b": 60},
    )
    return fig.to_html(full_html=False, include_plotlyjs=False)
