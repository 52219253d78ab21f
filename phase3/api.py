"""API for keys (admins) and job runs (everyone reads; operators run a scheduled job now)."""

from __future__ import annotations

from django_celery_beat.models import PeriodicTask
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from telemetry.serializers import ChoiceField, ModelSerializer

from .keys import api_key_create, api_key_revoke
from .models import ApiKey, JobRun, Role
from .scheduling import ScheduleExpired, schedule_run_now


class ApiKeySerializer(ModelSerializer):
    expires_in_days = serializers.IntegerField(
        write_only=True, required=False, min_value=1, max_value=3650
    )
    key = serializers.CharField(read_only=True, help_text="Shown once, at creation.")

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "name",
            "prefix",
            "role",
            "created_at",
            "expires_at",
            "revoked_at",
            "last_used_at",
            "is_active",
            "expires_in_days",
            "key",
        ]
        read_only_fields = ["prefix", "created_at", "expires_at", "revoked_at", "last_used_at"]


class ApiKeyViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    queryset = ApiKey.objects.all()
    serializer_class = ApiKeySerializer
    action_roles = {"list": Role.ADMIN, "retrieve": Role.ADMIN}
    write_role = Role.ADMIN

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = request.user if getattr(request.user, "pk", None) else None
        issued = api_key_create(
            name=serializer.validated_data["name"],
            role=serializer.validated_data.get("role", Role.VIEWER),
            expires_in_days=serializer.validated_data.get("expires_in_days"),
            created_by=user,
        )
        data = ApiKeySerializer(issued.api_key).data
        data["key"] = issued.raw
        return Response(data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        return Response(ApiKeySerializer(api_key_revoke(api_key=self.get_object())).data)


class JobRunSerializer(ModelSerializer):
    class Meta:
        model = JobRun
        fields = "__all__"


class RunNowSerializer(serializers.Serializer):
    schedule = serializers.CharField(help_text="Name of a schedule (django-celery-beat row).")

    def validate_schedule(self, value: str) -> PeriodicTask:
        task = PeriodicTask.objects.filter(name=value).first()
        if task is None:
            raise serializers.ValidationError(f"no schedule named {value!r}")
        return task


class JobRunFilterSerializer(serializers.Serializer):
    task_name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    status = ChoiceField(choices=JobRun.Status.choices, required=False, allow_blank=True)


class JobRunViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = JobRun.objects.all()
    serializer_class = JobRunSerializer

    def get_queryset(self):
        queryset = super().get_queryset()
        if self.action != "list":
            return queryset
        # Through a serializer: the raw values went to the database, where one holding a NUL
        # was a 500 on PostgreSQL. An empty value still means no filter.
        params = JobRunFilterSerializer(data=self.request.query_params)
        params.is_valid(raise_exception=True)
        filters = {field: value for field, value in params.validated_data.items() if value}
        return queryset.filter(**filters)

    @extend_schema(parameters=[JobRunFilterSerializer])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(request=RunNowSerializer, responses={202: dict})
    @action(detail=False, methods=["post"])
    def run(self, request):
        """Start a scheduled job now with its arguments, queue, priority and expiry."""
        serializer = RunNowSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        task = serializer.validated_data["schedule"]
        try:
            schedule_run_now(task)
        except ScheduleExpired as exc:
            raise serializers.ValidationError({"schedule": [str(exc)]}) from exc
        return Response({"queued": task.task}, status=202)
