from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models.constants import LOOKUP_SEP
from django.shortcuts import redirect
from django.urls import reverse

from audit.chain import audit_update

from streams.models import ChangeRecord, Gap, MaskingRule, Shard, Stream, StreamSource
from streams.sources import SourceError, source_add, table_describe
from streams.tasks import discover_source


class ListFilterLookupsOnly:
    """For the admin of a model whose rows hold item data, or text that may quote it: its
    changelist filters only on the fields its list_filter (and date_hierarchy) name.

    Django lets a query string filter a changelist by any of the model's own fields, with any
    lookup (?partition_key__startswith=, ?new_image__icontains=), and lists the rows that match;
    the admin knows nothing of masking (streams.masking), so such a filter would find masked
    values one guess at a time (kafka-ui#4115). Any other lookup gets 400."""

    def lookup_allowed(self, lookup, value, request):
        named = {self.date_hierarchy}
        for item in self.get_list_filter(request):
            if isinstance(item, str):
                named.add(item)
            elif isinstance(item, (list, tuple)):
                named.add(item[0])
            else:
                named.add(getattr(item, "parameter_name", None))
        return lookup.split(LOOKUP_SEP)[0] in named - {None} and super().lookup_allowed(lookup, value, request)


class StreamSourceForm(forms.ModelForm):
    class Meta:
        model = StreamSource
        fields = ["table_name", "region", "endpoint_url", "start_position", "retention_days", "enabled"]

    def clean(self):
        cleaned = super().clean()
        # Only a new source is checked against AWS: once added, the table, region and endpoint
        # are read-only (StreamSourceAdmin.get_readonly_fields), so the change form has none.
        if self.errors or self.instance.pk:
            return cleaned
        try:
            self.described = table_describe(
                table_name=cleaned["table_name"].strip(),
                region=cleaned["region"].strip(),
                endpoint_url=cleaned.get("endpoint_url", ""),
            )
        except SourceError as exc:
            raise forms.ValidationError(str(exc)) from None
        return cleaned


class MaskingRuleInline(admin.TabularInline):
    """A source's masking rules, on its page: streams.masking says how paths read. Each change
    is audited (audit.capture) and takes effect on the next page, API call or pushed batch."""

    model = MaskingRule
    fields = ["path", "mode"]
    extra = 1
    verbose_name = "masking rule"
    verbose_name_plural = "Masking rules: what people without the unmask permission see masked"


@admin.register(StreamSource)
class StreamSourceAdmin(admin.ModelAdmin):
    form = StreamSourceForm
    inlines = [MaskingRuleInline]
    list_display = ["table_name", "region", "view_type", "status", "enabled", "retention_days", "last_discovered_at"]
    list_filter = ["status", "enabled", "region"]
    search_fields = ["table_name", "stream_arn"]
    readonly_fields = ["stream_arn", "view_type", "key_schema", "status", "last_error", "last_error_at", "last_discovered_at"]
    actions = ["enable", "disable"]

    def get_fields(self, request, obj=None):
        editable = ["table_name", "region", "endpoint_url", "start_position", "retention_days", "enabled"]
        return editable + (self.readonly_fields if obj else [])

    def get_readonly_fields(self, request, obj=None):
        # The table a source points at is its identity; watching another table is a new source.
        if obj:
            return ["table_name", "region", "endpoint_url", "start_position", *self.readonly_fields]
        return []

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        try:
            created = source_add(
                table_name=obj.table_name,
                region=obj.region,
                endpoint_url=obj.endpoint_url,
                start_position=obj.start_position,
                retention_days=obj.retention_days,
            )
        except SourceError as exc:
            # Raced with another add of the same table between clean() and here.
            messages.error(request, str(exc))
            raise
        obj.pk = created.pk
        obj.refresh_from_db()
        transaction.on_commit(lambda: discover_source.delay(created.pk))

    @admin.action(description="Enable the selected sources", permissions=["change"])
    def enable(self, request, queryset):
        updated = audit_update(queryset=queryset, changes={"enabled": True}, verb="enable", request=request)
        for source_id in queryset.values_list("pk", flat=True):
            transaction.on_commit(lambda s=source_id: discover_source.delay(s))
        self.message_user(request, f"Enabled {updated} source(s).")

    @admin.action(description="Disable the selected sources", permissions=["change"])
    def disable(self, request, queryset):
        updated = audit_update(queryset=queryset, changes={"enabled": False}, verb="disable", request=request)
        self.message_user(request, f"Disabled {updated} source(s); their readers stop at the next poll.")


@admin.register(Shard)
class ShardAdmin(admin.ModelAdmin):
    list_display = ["shard_id", "stream", "parent_shard_id", "state", "checkpoint", "lease_owner", "lease_expires_at", "last_polled_at", "error_count"]
    list_filter = ["state", "stream__source"]
    search_fields = ["shard_id", "parent_shard_id"]

    def has_add_permission(self, request):
        return False


@admin.register(Stream)
class StreamAdmin(admin.ModelAdmin):
    list_display = ["arn", "source", "label", "state", "discovered_at"]
    list_filter = ["state"]

    def has_add_permission(self, request):
        return False


@admin.register(Gap)
class GapAdmin(admin.ModelAdmin):
    list_display = ["source", "shard", "after_sequence_number", "detected_at", "reason"]
    list_filter = ["source"]

    def has_add_permission(self, request):
        return False


@admin.register(ChangeRecord)
class ChangeRecordAdmin(ListFilterLookupsOnly, admin.ModelAdmin):
    """Records' ids and metadata, never their item data: the admin knows nothing of masking,
    so a record's keys and images are shown by the dashboard's record page, which masks them;
    opening a record here goes there."""

    list_display = ["id", "source", "event_name", "sequence_number", "approximate_creation_time"]
    list_filter = ["event_name", "source"]
    list_select_related = ["source"]
    show_full_result_count = False

    def change_view(self, request, object_id, form_url="", extra_context=None):
        if not self.has_view_permission(request):
            raise PermissionDenied
        return redirect(reverse("dashboard:record", args=[int(object_id)]) if object_id.isdigit() else "admin:index")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
