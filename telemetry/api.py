"""Telemetry API: batch ingestion of samples and events, series reads.

Ingestion bodies hold up to 100,000 rows, so they are parsed with orjson and validated
column-wise by ``telemetry.validation`` rather than by a serializer per row; the
serializers below describe the shapes for the schema and validate the small inputs
(query parameters).
"""

from __future__ import annotations

import math
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

from django.urls import re_path
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from . import conf
from .actors import request_actor
from .downsample import AGGREGATIONS, parse_step
from .models import ChangeEvent, Series
from .parsers import IngestParser
from .routers import OptionalSlashRouter
from .selectors import series_list_with_latest, series_points
from .serializers import ChoiceField, ModelSerializer
from .services import (
    ChangeInvalid,
    change_record,
    event_bounds,
    events_write_batch,
    ingest_bounds,
    samples_write_batch,
)
from .validation import (
    MAX_ROWS,
    NUL,
    NUL_PROBLEM,
    BatchInvalid,
    change_errors,
    gc_paused,
    parse_instant,
    validate_events,
    validate_samples,
)

MAX_POINTS = 100_000
#: 0001-01-01 UTC in epoch seconds, the first moment a datetime holds
EARLIEST = datetime(1, 1, 1, tzinfo=UTC).timestamp()


# --- Ingestion ---------------------------------------------------------------------------


class SampleRowSerializer(serializers.Serializer):
    series = serializers.CharField(max_length=200)
    labels = serializers.DictField(child=serializers.CharField(), required=False)
    ts = serializers.CharField(help_text="ISO-8601 (naive means UTC) or epoch seconds.")
    value = serializers.FloatField()
    unit = serializers.CharField(max_length=30, required=False)


class SampleBatchSerializer(serializers.Serializer):
    samples = SampleRowSerializer(many=True, max_length=MAX_ROWS)


class EventRowSerializer(serializers.Serializer):
    user_id = serializers.CharField(max_length=100)
    name = serializers.CharField(max_length=100)
    ts = serializers.CharField(help_text="ISO-8601 (naive means UTC) or epoch seconds.")
    session_id = serializers.CharField(max_length=100, required=False)
    properties = serializers.DictField(required=False)
    client_id = serializers.CharField(
        max_length=100,
        required=False,
        help_text="Makes a re-sent event idempotent; without it the event's content does.",
    )


class EventBatchSerializer(serializers.Serializer):
    events = EventRowSerializer(many=True, max_length=MAX_ROWS)


class IngestResultSerializer(serializers.Serializer):
    received = serializers.IntegerField()
    written = serializers.IntegerField(help_text="New rows; rows already stored are skipped.")
    series_created = serializers.IntegerField()


class SampleIngestView(APIView):
    """Write a batch of samples, all or nothing; re-sending a batch changes nothing."""

    parser_classes = [IngestParser]
    serializer_class = SampleBatchSerializer
    write_role = "operator"

    @extend_schema(request=SampleBatchSerializer, responses=IngestResultSerializer)
    def post(self, request):
        try:
            with gc_paused():
                batch = validate_samples(request.data, bounds=ingest_bounds())
        except BatchInvalid as exc:
            raise ValidationError(exc.errors) from exc
        return Response(asdict(samples_write_batch(batch=batch)))


class EventIngestView(APIView):
    """Write a batch of end-user events, all or nothing; re-sending a batch changes nothing."""

    parser_classes = [IngestParser]
    serializer_class = EventBatchSerializer
    write_role = "operator"

    @extend_schema(request=EventBatchSerializer, responses=IngestResultSerializer)
    def post(self, request):
        try:
            with gc_paused():
                batch = validate_events(request.data, bounds=event_bounds())
        except BatchInvalid as exc:
            raise ValidationError(exc.errors) from exc
        return Response(asdict(events_write_batch(batch=batch)))


# --- Reads -------------------------------------------------------------------------------


def resolve_window(
    start: datetime | None,
    end: datetime | None,
    *,
    span: timedelta = timedelta(days=1),
    names: tuple[str, str] = ("start", "end"),
) -> tuple[datetime, datetime]:
    """A query's time window, its defaults filled in: `end` now, `start` a `span` before.

    Errors name the field the client gave: `start=9999-12-31` alone is a start after now,
    not an `end` they never sent; `end=0001-01-01` alone leaves no room for a default
    start a day earlier (Python's datetime stops at year 1), a 400, not an OverflowError.
    """
    start_name, end_name = names
    given_end = end is not None
    end = end or timezone.now()
    if start is None:
        try:
            start = end - span
        except OverflowError as exc:
            raise ValidationError(
                {end_name: [f"leaves no room for the default {start_name}"]}
            ) from exc
    if start >= end:
        if given_end:
            raise ValidationError({end_name: [f"must be after {start_name}"]})
        raise ValidationError({start_name: [f"must be before now (the default {end_name})"]})
    return start, end


@extend_schema_field(OpenApiTypes.STR)
class InstantField(serializers.Field):
    """A moment given as ISO-8601 (naive means UTC) or as epoch seconds (``parse_instant``)."""

    def to_internal_value(self, data) -> datetime:
        # The ingestion's parser: an epoch string, milliseconds or a bad date are read or
        # refused here exactly as in a batch's ``ts``, with the same words.
        try:
            return parse_instant(data)
        except ValueError as exc:
            raise ValidationError(str(exc)) from exc

    def to_representation(self, value: datetime) -> str:
        return value.isoformat()


class SeriesFilterSerializer(serializers.Serializer):
    name = serializers.CharField(required=False, max_length=200)
    name_prefix = serializers.CharField(required=False, max_length=200)


class SeriesSerializer(ModelSerializer):
    last_ts = serializers.DateTimeField(read_only=True, allow_null=True)
    last_value = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = Series
        fields = [
            "id",
            "name",
            "labels",
            "unit",
            "kind",
            "description",
            "importance",
            "last_ts",
            "last_value",
        ]


class SamplesQuerySerializer(serializers.Serializer):
    start = InstantField(required=False, help_text="Default: end minus one day.")
    end = InstantField(required=False, help_text="Default: now.")
    step = serializers.CharField(
        required=False,
        help_text="Bucket size: seconds or 30s, 5m, 1h, 1d, 1w; at most 366d. Omit for raw.",
    )
    agg = ChoiceField(choices=AGGREGATIONS, default="mean")

    def validate_step(self, value: str) -> float:
        try:
            return parse_step(value)
        except ValueError as exc:
            raise ValidationError(str(exc)) from exc

    def validate(self, attrs: dict) -> dict:
        start, end = resolve_window(attrs.get("start"), attrs.get("end"))
        step = attrs.get("step")
        if step is not None and (end - start).total_seconds() / step > MAX_POINTS:
            raise ValidationError(
                {"step": [f"gives more than {MAX_POINTS} buckets; use a larger step"]}
            )
        # Downsampled reads align start down to the step: near year 1, or with a step of
        # millennia, that fell before year 1 and the read was a 500.
        if step is not None and math.floor(start.timestamp() / step) * step < EARLIEST:
            raise ValidationError(
                {"start": ["aligned down to the step, falls before year 1; start later"]}
            )
        return {**attrs, "start": start, "end": end}


class SamplesSerializer(serializers.Serializer):
    series = serializers.IntegerField()
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    step = serializers.FloatField(allow_null=True)
    agg = serializers.CharField(allow_null=True)
    source = serializers.CharField(help_text="raw, rollup or rollup+raw")
    raw_from = serializers.DateTimeField(
        allow_null=True,
        help_text="Raw samples are kept from this moment (the raw retention); points before "
        "it come from hourly rollups. Null: no raw sample has been deleted yet.",
    )
    rollup_step = serializers.FloatField(
        allow_null=True,
        help_text="Bucket width (seconds) of the points read from rollups, those before "
        "raw_from: 3600 (or step rounded up to whole hours) for a raw or finer read. Null: "
        "none was.",
    )
    ts = serializers.ListField(child=serializers.FloatField(), help_text="Epoch seconds.")
    values = serializers.ListField(child=serializers.FloatField())


LABEL_PARAM = "label."


class SeriesViewSet(viewsets.ReadOnlyModelViewSet):
    """Series with their last value; filter by ``name``, ``name_prefix``, ``label.<key>=<value>``."""

    queryset = Series.objects.all()
    serializer_class = SeriesSerializer
    lookup_value_regex = r"\d+"

    def get_queryset(self):
        if self.action == "samples":  # one series by id: no list filters, no last value
            return Series.objects.all()
        if self.action != "list":  # one series by id: the list's filters made ?name= a 404
            return series_list_with_latest()
        params = SeriesFilterSerializer(data=self.request.query_params)
        params.is_valid(raise_exception=True)
        labels = {
            key[len(LABEL_PARAM) :]: value
            for key, value in self.request.query_params.items()
            if key.startswith(LABEL_PARAM)
        }
        if "" in labels:
            raise ValidationError({LABEL_PARAM: ["give the label key: label.<key>=<value>"]})
        # No label holds a NUL (ingestion refuses them) and PostgreSQL cannot compare one.
        for key, value in labels.items():
            if NUL in key or NUL in value:
                raise ValidationError({LABEL_PARAM + key: [NUL_PROBLEM]})
        return series_list_with_latest(
            name=params.validated_data.get("name"),
            name_prefix=params.validated_data.get("name_prefix"),
            labels=labels,
        )

    @extend_schema(
        parameters=[
            SeriesFilterSerializer,
            OpenApiParameter(
                "label.<key>",
                OpenApiTypes.STR,
                description="Label filter, e.g. label.endpoint=/api/search",
            ),
        ]
    )
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(parameters=[SamplesQuerySerializer], responses=SamplesSerializer)
    @action(detail=True, methods=["get"], url_path="samples")
    def samples(self, request, pk=None):
        """Samples of one series in [start, end): raw, or downsampled when ``step`` is given.

        Past the raw retention (``raw_from``) the points come from hourly rollups, for raw
        reads and fine steps too, rather than a silent gap.
        """
        series = self.get_object()
        query = SamplesQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        q = query.validated_data
        step = q.get("step")
        limit = conf.max_raw_points()
        points = series_points(
            series.pk,
            start=q["start"],
            end=q["end"],
            step_seconds=step,
            agg=q["agg"],
            limit=None if step else limit + 1,
        )
        if step is None and points.ts.size > limit:
            raise ValidationError(
                {"step": [f"the range holds more than {limit} samples; give a step"]}
            )
        return Response(
            {
                "series": series.pk,
                "start": q["start"],
                "end": q["end"],
                "step": step,
                # a raw read's rolled-up part (past the raw retention) is aggregated too
                "agg": q["agg"] if step or points.rollup_step else None,
                "source": points.source,
                "raw_from": points.raw_from,
                "rollup_step": points.rollup_step,
                "ts": points.ts.tolist(),
                "values": points.values.tolist(),
            }
        )


class ChangeEventSerializer(ModelSerializer):
    at = InstantField(
        required=False, help_text="When it took effect: ISO 8601 or epoch seconds; now if left out."
    )

    class Meta:
        model = ChangeEvent
        fields = [
            "id",
            "at",
            "kind",
            "title",
            "labels",
            "url",
            "source",
            "created_by",
            "created_at",
        ]
        read_only_fields = ["created_by", "created_at"]

    def validate(self, attrs):
        errors = change_errors(
            at=attrs.get("at"),
            title=attrs.get("title", ""),
            labels=attrs.get("labels", {}),
            now=timezone.now(),
            max_future_seconds=conf.max_future_seconds(),
        )
        if errors:
            raise ValidationError(errors)
        return attrs


class ChangeFilterSerializer(serializers.Serializer):
    since = InstantField(required=False, help_text="Changes at or after this moment.")
    until = InstantField(required=False, help_text="Changes at or before this moment.")
    kind = ChoiceField(choices=ChangeEvent.Kind.choices, required=False)


class ChangeEventViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Deploys, configuration and flag changes, scaling actions: what changed, for "what
    changed just before it?" on every anomaly. A CI pipeline posts its deploys with an
    operator key; admins delete one posted by mistake."""

    serializer_class = ChangeEventSerializer
    queryset = ChangeEvent.objects.all()
    lookup_value_regex = r"\d+"
    action_roles = {"destroy": "admin"}

    def get_queryset(self):
        qs = ChangeEvent.objects.order_by("-at", "-pk")
        if self.action != "list":
            return qs
        params = ChangeFilterSerializer(data=self.request.query_params)
        params.is_valid(raise_exception=True)
        p = params.validated_data
        if "since" in p:
            qs = qs.filter(at__gte=p["since"])
        if "until" in p:
            qs = qs.filter(at__lte=p["until"])
        if "kind" in p:
            qs = qs.filter(kind=p["kind"])
        return qs

    @extend_schema(parameters=[ChangeFilterSerializer])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    def perform_create(self, serializer):
        data = serializer.validated_data
        try:
            serializer.instance = change_record(
                title=data["title"],
                at=data.get("at"),
                kind=data.get("kind", ChangeEvent.Kind.DEPLOY),
                labels=data.get("labels", {}),
                url=data.get("url", ""),
                source=data.get("source", ""),
                created_by=request_actor(self.request),
            )
        except ChangeInvalid as exc:
            raise ValidationError(exc.errors) from exc


router = OptionalSlashRouter()
router.register("telemetry/series", SeriesViewSet, basename="series")
router.register("telemetry/changes", ChangeEventViewSet, basename="change")

urlpatterns = [
    re_path(r"^telemetry/samples/?$", SampleIngestView.as_view(), name="telemetry-samples"),
    re_path(r"^telemetry/events/?$", EventIngestView.as_view(), name="telemetry-events"),
    *router.urls,
]
