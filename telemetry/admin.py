from django.contrib import admin

from .models import DemoIncident, DemoUser, Event, Sample, Series


@admin.register(Series)
class SeriesAdmin(admin.ModelAdmin):
    list_display = ["name", "labels_key", "unit", "kind", "importance"]
    list_filter = ["kind", "unit"]
    search_fields = ["name", "labels_key", "description"]


@admin.register(Sample)
class SampleAdmin(admin.ModelAdmin):
    list_display = ["series", "ts", "value"]
    list_select_related = ["series"]
    raw_id_fields = ["series"]
    show_full_result_count = False  # counting millions of samples on every page is wasted work


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ["user_id", "name", "ts", "session_id"]
    list_filter = ["name"]
    search_fields = ["user_id", "session_id"]
    show_full_result_count = False


@admin.register(DemoIncident)
class DemoIncidentAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "cause_series", "start", "end"]
    filter_horizontal = ["effect_series"]


@admin.register(DemoUser)
class DemoUserAdmin(admin.ModelAdmin):
    list_display = ["user_id", "kind"]
    list_filter = ["kind"]
    search_fields = ["user_id"]
