from django.contrib import admin, messages
from django.utils import timezone
from django_celery_beat.admin import PeriodicTaskAdmin as BeatPeriodicTaskAdmin
from django_celery_beat.models import PeriodicTask

from .admin_actions import ActionPermissionMixin
from .keys import api_key_create, api_key_revoke
from .models import ROLE_RANK, ApiKey, JobLock, JobRun, Role
from .permissions import session_role
from .scheduling import ScheduleExpired, schedule_run_now


@admin.register(ApiKey)
class ApiKeyAdmin(ActionPermissionMixin, admin.ModelAdmin):
    list_display = [
        "name",
        "prefix",
        "role",
        "active",
        "created_at",
        "expires_at",
        "revoked_at",
        "last_used_at",
    ]
    list_filter = ["role", "revoked_at", "expires_at"]
    search_fields = ["name", "prefix"]
    readonly_fields = ["prefix", "created_at", "last_used_at", "revoked_at", "created_by"]
    fields = ["name", "role", "expires_at", *readonly_fields]
    actions = ["revoke"]

    @admin.display(boolean=True)
    def active(self, obj: ApiKey) -> bool:
        return obj.is_active

    def formfield_for_choice_field(self, db_field, request, **kwargs):
        """Roles up to the user's own: a viewer allowed to add keys must not mint an admin's."""
        if db_field.name == "role":
            own = ROLE_RANK[session_role(request.user) or Role.VIEWER]
            kwargs["choices"] = [(v, label) for v, label in Role.choices if ROLE_RANK[v] <= own]
        return super().formfield_for_choice_field(db_field, request, **kwargs)

    def has_change_permission(self, request, obj=None) -> bool:
        """A key above the user's own role is theirs to look at and revoke, not to edit."""
        allowed = super().has_change_permission(request, obj)
        if obj is None or not allowed:
            return allowed
        return ROLE_RANK[obj.role] <= ROLE_RANK[session_role(request.user) or Role.VIEWER]

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        issued = api_key_create(name=obj.name, role=obj.role, created_by=request.user)
        if obj.expires_at:
            issued.api_key.expires_at = obj.expires_at
            issued.api_key.save(update_fields=["expires_at"])
        obj.pk = issued.api_key.pk
        obj.prefix = issued.api_key.prefix
        self.message_user(
            request,
            f"Key created. Copy it now, it is not shown again: {issued.raw}",
            level=messages.WARNING,
        )

    @admin.action(permissions=["act"], description="Revoke selected keys")
    def revoke(self, request, queryset):
        for key in queryset.filter(revoked_at__isnull=True):
            api_key_revoke(api_key=key)
        self.message_user(request, f"Revoked at {timezone.now():%Y-%m-%d %H:%M}.")


@admin.register(JobRun)
class JobRunAdmin(admin.ModelAdmin):
    list_display = [
        "task_name",
        "status",
        "started_at",
        "heartbeat_at",
        "duration_ms",
        "counts",
        "worker",
    ]
    list_filter = ["status", "task_name"]
    search_fields = ["task_name", "task_id", "error"]
    date_hierarchy = "started_at"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(JobLock)
class JobLockAdmin(admin.ModelAdmin):
    """Locks held right now (database backend); deleting one frees a job stuck by a dead worker."""

    list_display = ["key", "owner", "expires_at"]
    search_fields = ["key"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


admin.site.unregister(PeriodicTask)


@admin.register(PeriodicTask)
class PeriodicTaskAdmin(BeatPeriodicTaskAdmin):
    """django-celery-beat's page, with switching a schedule on recorded in its change time
    and "run" sending a task where its schedule does.

    The overview counts a schedule's due times from when it was switched on (or from its
    last success); the bulk actions write with ``update()``, which leaves ``date_changed``
    as it was, so a schedule enabled after weeks off would show stale at once.
    """

    @admin.action(description="Enable selected tasks")
    def enable_tasks(self, request, queryset):
        queryset.filter(enabled=False).update(date_changed=timezone.now())
        return super().enable_tasks(request, queryset)

    @admin.action(description="Toggle activity of selected tasks")
    def toggle_tasks(self, request, queryset):
        queryset.filter(enabled=False).update(date_changed=timezone.now())
        return super().toggle_tasks(request, queryset)

    @admin.action(description="Run selected tasks")
    def run_tasks(self, request, queryset):
        """Queue each task now with its schedule's queue, priority, expiry and headers.

        django-celery-beat's own action sends the arguments and the queue only, so a job
        whose schedule routes it to a dedicated worker pool, or drops it after a backlog,
        ran by hand on the default queue without its expiry.
        """
        self.celery_app.loader.import_default_modules()
        unknown = sorted({t.task for t in queryset if t.task not in self.celery_app.tasks})
        if unknown:
            self.message_user(request, f"Unknown task: {', '.join(unknown)}", messages.ERROR)
            return
        queued, refused = 0, []
        for task in queryset:
            try:
                schedule_run_now(task)
            except ScheduleExpired as exc:
                refused.append(str(exc))
            else:
                queued += 1
        if queued:
            self.message_user(request, f"{queued} task(s) queued.")
        for reason in refused:
            self.message_user(request, f"Not run: {reason}.", messages.WARNING)
