"""Admin for the accounting app.

Factor models (grid zones, hardware models, sites, PUE series) save through
accounting.services.factors, so every admin edit is versioned and audited like an API edit:
the change form carries a required "reason", versions are read-only, and a FactorChange row
records who changed what and why. Market-based Scope 2 and water factors (contractual
instruments, residual mixes, grid water intensities, site WUE series) save through
accounting.services.instruments the same way; an instrument, once recorded, is read-only here
(it is withdrawn with a reason through the API). Ledger and aggregate rows are computed: read-only here.
Edits of a budget, an organisation's overhead policy and a team's report recipient write an
AuditEvent (``AuditedAdmin``); the audit log itself is read-only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db import transaction

from accounting import models as m
from accounting.domain.embodied import validate_hardware_overrides
from accounting.domain.errors import InputError
from accounting.factors.csv_import import parse_utc
from accounting.services import factors as factor_services
from accounting.services import instruments as instrument_services
from accounting.services.audit import audit_record

REASON_HELP = "Why this change? Recorded with your user on the factor's audit trail (required)."


class ReasonModelForm(forms.ModelForm):
    reason = forms.CharField(
        max_length=500, required=True, help_text=REASON_HELP, widget=forms.TextInput(attrs={"size": 80})
    )


class ReadOnlyAdmin(admin.ModelAdmin):
    """Computed rows: browse and filter, never edit by hand."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class AuditedAdmin(admin.ModelAdmin):
    """Admin saves (and deletes) of ``audit_fields`` write one AuditEvent each, in the admin's
    transaction. A new row whose audited fields keep their defaults records nothing."""

    audit_fields: tuple[str, ...] = ()
    audit_object_type = ""
    audit_action = ""  # create and update
    audit_delete_action = ""  # empty: deletions are not audited (or not allowed)

    def audit_org_id(self, obj) -> int | None:
        return obj.org_id

    def audit_action_for(self, *, change: bool) -> str:
        return self.audit_action

    def _audited(self, obj) -> dict:
        return {f: getattr(obj, obj._meta.get_field(f).attname) for f in self.audit_fields}

    def _audit(self, request, obj, *, action: str, before: dict | None, after: dict | None) -> None:
        audit_record(
            action=action,
            object_type=self.audit_object_type,
            object_id=obj.pk,
            org=self.audit_org_id(obj),
            actor=request.user,
            before=before,
            after=after,
        )

    def save_model(self, request, obj, form, change):
        before = self._audited(type(obj).objects.get(pk=obj.pk)) if change else None
        super().save_model(request, obj, form, change)
        after = self._audited(obj)
        defaults = {f: obj._meta.get_field(f).get_default() for f in self.audit_fields}
        if before != after and (change or after != defaults):
            self._audit(request, obj, action=self.audit_action_for(change=change), before=before, after=after)

    def delete_model(self, request, obj):
        if self.audit_delete_action:
            self._audit(request, obj, action=self.audit_delete_action, before=self._audited(obj), after=None)
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        if self.audit_delete_action:
            for obj in queryset:
                self._audit(request, obj, action=self.audit_delete_action, before=self._audited(obj), after=None)
        super().delete_queryset(request, queryset)


class FactorAdmin(admin.ModelAdmin):
    """Saves route through a service; deletion is off (history and ledger references stay)."""

    form = ReasonModelForm
    factor_type = ""

    def has_delete_permission(self, request, obj=None):
        return False

    def _changes(self, form) -> dict:
        return {f: form.cleaned_data[f] for f in form.changed_data if f != "reason"}

    def _created(self, request, obj, form):
        obj.save()
        factor_services.factor_record_created(
            obj=obj,
            factor_type=self.factor_type,
            factor_key=self.factor_key(obj),
            after={f: form.cleaned_data[f] for f in form.changed_data if f != "reason"},
            reason=form.cleaned_data["reason"],
            user=request.user,
        )

    def factor_key(self, obj) -> str:
        return str(obj.pk)


# --- factors -------------------------------------------------------------------------------


@admin.register(m.GridZone)
class GridZoneAdmin(FactorAdmin):
    factor_type = "zone"
    list_display = (
        "code",
        "name",
        "annual_intensity_g_per_kwh",
        "annual_marginal_g_per_kwh",
        "source",
        "vintage",
        "version",
        "updated_at",
    )
    list_filter = ("source", "vintage")
    search_fields = ("code", "name")
    readonly_fields = ("version", "updated_at")
    fields = (
        "code",
        "name",
        "annual_intensity_g_per_kwh",
        "annual_marginal_g_per_kwh",
        "source",
        "source_detail",
        "vintage",
        "version",
        "updated_at",
        "reason",
    )

    def get_readonly_fields(self, request, obj=None):
        # The code is the join key for imports and the live provider: fixed once created.
        return self.readonly_fields + (("code",) if obj else ())

    def factor_key(self, obj):
        return obj.code

    def save_model(self, request, obj, form, change):
        if not change:
            self._created(request, obj, form)
            return
        original = m.GridZone.objects.get(pk=obj.pk)
        factor_services.zone_update(
            zone=original, changes=self._changes(form), reason=form.cleaned_data["reason"], user=request.user
        )


@admin.register(m.HardwareModel)
class HardwareModelAdmin(FactorAdmin):
    factor_type = "hardware"
    list_display = (
        "key",
        "name",
        "vendor",
        "kind",
        "embodied_kg",
        "embodied_low_kg",
        "embodied_high_kg",
        "embodied_kind",
        "lifetime_years",
        "expected_utilisation",
        "version",
    )
    list_filter = ("kind", "vendor", "embodied_kind")
    search_fields = ("key", "name")
    readonly_fields = ("version", "updated_at")

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields + (("key",) if obj else ())

    def factor_key(self, obj):
        return obj.key

    def save_model(self, request, obj, form, change):
        if not change:
            self._created(request, obj, form)
            return
        original = m.HardwareModel.objects.get(pk=obj.pk)
        factor_services.hardware_update(
            hardware=original, changes=self._changes(form), reason=form.cleaned_data["reason"], user=request.user
        )


class SitePueInline(admin.TabularInline):
    model = m.SitePue
    extra = 0
    fields = ("valid_from", "pue", "source", "version")
    readonly_fields = fields
    can_delete = False
    ordering = ("-valid_from",)

    def has_add_permission(self, request, obj=None):
        return False


class SiteWueInline(admin.TabularInline):
    """The site's WUE series (edited on its own page, through site_wue_set)."""

    model = m.SiteWue
    extra = 0
    fields = ("valid_from", "wue_l_per_kwh", "source", "version")
    readonly_fields = fields
    can_delete = False
    ordering = ("-valid_from",)

    def has_add_permission(self, request, obj=None):
        return False


class SiteForm(ReasonModelForm):
    def clean_hardware_overrides(self):
        value = self.cleaned_data.get("hardware_overrides") or {}
        try:
            validate_hardware_overrides(value)
        except ValueError as exc:
            raise ValidationError(str(exc))
        return value


@admin.register(m.Site)
class SiteAdmin(FactorAdmin):
    form = SiteForm
    factor_type = "site"
    list_display = ("name", "org", "zone", "pue", "pue_version", "wue_l_per_kwh")
    list_filter = ("org", "zone")
    search_fields = ("name", "slug")
    readonly_fields = ("pue_version",)
    inlines = (SitePueInline, SiteWueInline)

    def factor_key(self, obj):
        return f"{obj.org_id}/{obj.slug}"

    def save_model(self, request, obj, form, change):
        if not change:
            self._created(request, obj, form)
            return
        original = m.Site.objects.get(pk=obj.pk)
        changes = self._changes(form)
        reason, user = form.cleaned_data["reason"], request.user
        plain = {f: changes.pop(f) for f in list(changes) if f in ("name", "slug", "org")}
        if plain:
            m.Site.objects.filter(pk=obj.pk).update(**plain)
        if "pue" in changes or "pue_source" in changes:
            factor_services.site_set_pue(
                site=original,
                pue=changes.pop("pue", original.pue),
                valid_from=None,
                source=changes.pop("pue_source", original.pue_source),
                reason=reason,
                user=user,
            )
        if changes:
            factor_services.site_update_factors(site=original, changes=changes, reason=reason, user=user)


class SitePueForm(ReasonModelForm):
    class Meta:
        model = m.SitePue
        fields = ("site", "valid_from", "pue", "source")


@admin.register(m.SitePue)
class SitePueAdmin(FactorAdmin):
    form = SitePueForm
    list_display = ("site", "valid_from", "pue", "source", "version")
    list_filter = ("site",)
    date_hierarchy = "valid_from"
    readonly_fields = ("version",)

    def get_readonly_fields(self, request, obj=None):
        # A row is identified by (site, valid_from); a new start time is a new row.
        return self.readonly_fields + (("site", "valid_from") if obj else ())

    def save_model(self, request, obj, form, change):
        site = m.Site.objects.get(pk=obj.site_id)
        factor_services.site_set_pue(
            site=site,
            pue=obj.pue,
            valid_from=obj.valid_from,
            source=obj.source,
            reason=form.cleaned_data["reason"],
            user=request.user,
        )
        saved = m.SitePue.objects.get(site=site, valid_from=obj.valid_from)
        obj.pk, obj.version = saved.pk, saved.version


# --- market-based Scope 2 and water factors (accounting.services.instruments) ------------


class _DryRun(Exception):
    """Rolls back the savepoint of a validation run of a service call."""


def _service_errors(form: forms.BaseForm, call: Callable[[], Any], aliases: dict[str, str]) -> None:
    """Run ``call`` (a service write) in a savepoint that is always rolled back, so the service's
    own rules validate the form and an ``InputError`` shows beside the field it names (``aliases``:
    the service's name -> the form's), or on the form when the field is not on it. The real write
    happens in ``save_model``."""
    try:
        with transaction.atomic():
            call()
            raise _DryRun
    except _DryRun:
        pass
    except InputError as exc:
        field = aliases.get(exc.field, exc.field)
        form.add_error(field if field in form.fields else None, exc.message)


class ServiceFactorAdmin(admin.ModelAdmin):
    """Add and change go through one service call (``service_save``), which versions the row and
    writes its FactorChange and AuditEvent; the form's validation runs the same call in a rolled-back
    savepoint first. Deletion is off: history stays, and the audit trail says what applied when."""

    form = ReasonModelForm
    key_fields: tuple[str, ...] = ()  # identify a row: fixed once created
    error_fields: dict[str, str] = {}  # the service's field name -> the form's, where they differ

    def service_save(self, *, obj, data: dict, actor):
        raise NotImplementedError(f"{type(self).__name__} must say which service saves it")

    def has_delete_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        return tuple(self.readonly_fields) + (self.key_fields if obj else ())

    def get_form(self, request, obj=None, change=False, **kwargs):
        base = super().get_form(request, obj, change, **kwargs)
        model_admin = self

        class ServiceCheckedForm(base):  # type: ignore[valid-type,misc]
            def clean(self):
                cleaned = super().clean()
                if not self.errors:
                    _service_errors(
                        self,
                        lambda: model_admin.service_save(obj=self.instance, data=cleaned, actor=None),
                        model_admin.error_fields,
                    )
                return cleaned

        return ServiceCheckedForm

    def save_model(self, request, obj, form, change):
        saved = self.service_save(obj=obj, data=form.cleaned_data, actor=request.user)
        obj.pk = saved.pk
        if hasattr(saved, "version"):
            obj.version = saved.version

    def save_related(self, request, form, formsets, change):
        # Related rows (an instrument's deliveries) are written by the service call.
        return None

    @staticmethod
    def key(obj, data: dict, name: str):
        """A key field: from the form when adding, from the row when changing (read-only)."""
        return data[name] if name in data else getattr(obj, name)


class InstrumentDeliveryInline(admin.TabularInline):
    model = m.InstrumentDelivery
    extra = 0
    fields = ("hour", "mwh")
    readonly_fields = fields
    can_delete = False
    ordering = ("hour",)

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


def _parse_deliveries(text: str) -> dict:
    """``hour,mwh`` per line (UTC hour start, ISO 8601) to {hour: MWh}; blank lines ignored."""
    deliveries: dict = {}
    for n, line in enumerate((text or "").splitlines(), start=1):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 2:
            raise ValidationError(f"line {n}: expected 'hour,mwh', got {line.strip()!r}")
        try:
            hour = parse_utc(parts[0])
            mwh = float(parts[1])
        except ValueError as exc:
            raise ValidationError(f"line {n}: {exc}")
        if hour in deliveries:
            raise ValidationError(f"line {n}: {hour.isoformat()} is given twice")
        deliveries[hour] = mwh
    return deliveries


class InstrumentForm(ReasonModelForm):
    certificate_ids = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Certificate ids, one per line or comma-separated (each claimed once per organisation).",
    )
    hourly_deliveries = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 6, "cols": 60}),
        help_text=(
            "Hourly matching: one 'hour,mwh' per line (UTC hour start, e.g. 2026-01-01T13:00Z,0.5), "
            "summing to the instrument's MWh. Empty: matched over its whole period (annual matching)."
        ),
    )

    class Meta:
        model = m.ContractualInstrument
        fields = ("site", "kind", "period_start", "period_end", "mwh", "g_per_kwh", "registry", "source")

    def clean_certificate_ids(self):
        text = self.cleaned_data.get("certificate_ids") or ""
        return [c.strip() for c in text.replace(",", "\n").splitlines() if c.strip()]

    def clean_hourly_deliveries(self):
        return _parse_deliveries(self.cleaned_data.get("hourly_deliveries") or "")


@admin.register(m.ContractualInstrument)
class ContractualInstrumentAdmin(ServiceFactorAdmin):
    """Recorded through ``instrument_record`` (audited); read-only once recorded: an instrument
    recorded in error is withdrawn with a reason (``DELETE /api/v1/instruments/<id>/?reason=``),
    which keeps its facts in the audit trail."""

    form = InstrumentForm
    error_fields = {"deliveries": "hourly_deliveries"}
    list_display = ("pk", "site", "kind", "period_start", "period_end", "mwh", "g_per_kwh", "registry", "source")
    list_filter = ("kind", "org", "site")
    search_fields = ("source", "registry")
    date_hierarchy = "period_start"
    list_select_related = ("site",)

    def get_inlines(self, request, obj):
        return (InstrumentDeliveryInline,) if obj else ()

    def get_fields(self, request, obj=None):
        if obj is None:
            return super().get_fields(request, obj)
        # The recorded instrument as stored (deliveries in the inline below).
        return (*InstrumentForm.Meta.fields[:-1], "certificate_ids", "source", "org", "created_at")

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request, obj)

    def service_save(self, *, obj, data: dict, actor):
        return instrument_services.instrument_record(
            site=data["site"],
            kind=data["kind"],
            period_start=data["period_start"],
            period_end=data["period_end"],
            mwh=data["mwh"],
            g_per_kwh=data["g_per_kwh"],
            source=data["source"],
            certificate_ids=data["certificate_ids"],
            registry=data.get("registry") or "",
            deliveries_mwh=data["hourly_deliveries"] or None,
            reason=data["reason"],
            actor=actor,
        )


@admin.register(m.ResidualMix)
class ResidualMixAdmin(ServiceFactorAdmin):
    list_display = ("zone", "year", "g_per_kwh", "gases", "source", "source_detail", "vintage", "version")
    list_filter = ("year", "gases", "source")
    search_fields = ("zone__code", "source_detail")
    list_select_related = ("zone",)
    fields = ("zone", "year", "g_per_kwh", "gases", "source", "source_detail", "vintage", "version", "reason")
    readonly_fields = ("version",)
    key_fields = ("zone", "year")

    def service_save(self, *, obj, data: dict, actor):
        return instrument_services.residual_mix_set(
            zone=self.key(obj, data, "zone"),
            year=self.key(obj, data, "year"),
            g_per_kwh=data["g_per_kwh"],
            gases=data["gases"],
            source=data["source"],
            source_detail=data["source_detail"],
            vintage=data.get("vintage") or "",
            reason=data["reason"],
            actor=actor,
        )


@admin.register(m.ZoneWaterIntensity)
class ZoneWaterIntensityAdmin(ServiceFactorAdmin):
    list_display = ("zone", "l_per_kwh", "low_l_per_kwh", "high_l_per_kwh", "source", "vintage", "version")
    list_filter = ("source",)
    search_fields = ("zone__code", "source_detail")
    list_select_related = ("zone",)
    fields = (
        "zone",
        "l_per_kwh",
        "low_l_per_kwh",
        "high_l_per_kwh",
        "source",
        "source_detail",
        "vintage",
        "version",
        "reason",
    )
    readonly_fields = ("version",)
    key_fields = ("zone",)

    def service_save(self, *, obj, data: dict, actor):
        return instrument_services.zone_water_set(
            zone=self.key(obj, data, "zone"),
            l_per_kwh=data["l_per_kwh"],
            low_l_per_kwh=data["low_l_per_kwh"],
            high_l_per_kwh=data["high_l_per_kwh"],
            source=data["source"],
            source_detail=data["source_detail"],
            vintage=data.get("vintage") or "",
            reason=data["reason"],
            actor=actor,
        )


@admin.register(m.SiteWue)
class SiteWueAdmin(ServiceFactorAdmin):
    list_display = ("site", "valid_from", "wue_l_per_kwh", "source", "version")
    list_filter = ("site",)
    date_hierarchy = "valid_from"
    list_select_related = ("site",)
    fields = ("site", "valid_from", "wue_l_per_kwh", "source", "version", "reason")
    readonly_fields = ("version",)
    key_fields = ("site", "valid_from")

    def service_save(self, *, obj, data: dict, actor):
        return instrument_services.site_wue_set(
            site=self.key(obj, data, "site"),
            valid_from=self.key(obj, data, "valid_from"),
            wue_l_per_kwh=data["wue_l_per_kwh"],
            source=data["source"],
            reason=data["reason"],
            actor=actor,
        )


@admin.register(m.HourlyIntensity)
class HourlyIntensityAdmin(ReadOnlyAdmin):
    """Imported (import_intensity) or fetched (beat); fallback rows are flagged."""

    list_display = (
        "zone",
        "hour",
        "signal",
        "intensity_g_per_kwh",
        "is_forecast",
        "is_fallback",
        "source",
        "version",
        "fetched_at",
    )
    list_filter = ("signal", "is_forecast", "is_fallback", "source", "zone")
    date_hierarchy = "hour"
    list_select_related = ("zone",)


@admin.register(m.FactorChange)
class FactorChangeAdmin(ReadOnlyAdmin):
    list_display = (
        "changed_at",
        "factor_type",
        "factor_key",
        "changed_by",
        "reason",
        "affects_from",
        "affects_to",
        "recompute_status",
    )
    list_filter = ("factor_type", "recompute_status")
    search_fields = ("factor_key", "reason")
    date_hierarchy = "changed_at"


# --- tenancy and fleet ---------------------------------------------------------------------


@admin.register(m.Organization)
class OrganizationAdmin(AuditedAdmin):
    audit_fields = ("overhead_policy",)
    audit_object_type = "organization"
    audit_action = m.AuditEvent.Action.POLICY_UPDATE

    def audit_org_id(self, obj) -> int | None:
        return obj.pk

    list_display = ("name", "slug", "overhead_policy", "created_at")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}


@admin.register(m.Team)
class TeamAdmin(AuditedAdmin):
    # The one report recipient today; a recipients list must keep writing this action.
    audit_fields = ("report_email",)
    audit_object_type = "report_recipients"
    audit_action = m.AuditEvent.Action.RECIPIENT_CHANGE
    list_display = ("name", "org", "slug", "report_email")
    list_filter = ("org",)
    search_fields = ("name", "slug")


@admin.register(m.Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "org", "team", "role")
    list_filter = ("org", "role")
    search_fields = ("user__username",)


@admin.register(m.CarbonBudget)
class CarbonBudgetAdmin(AuditedAdmin):
    audit_fields = ("team", "period_start", "period_end", "co2e_budget_g", "note")
    audit_object_type = "budget"
    audit_action = m.AuditEvent.Action.BUDGET_UPDATE
    audit_delete_action = m.AuditEvent.Action.BUDGET_DELETE
    list_display = ("team", "period_start", "period_end", "co2e_budget_g")
    list_filter = ("team__org",)

    def audit_org_id(self, obj) -> int | None:
        return m.Team.objects.filter(pk=obj.team_id).values_list("org_id", flat=True).first()

    def audit_action_for(self, *, change: bool) -> str:
        return m.AuditEvent.Action.BUDGET_UPDATE if change else m.AuditEvent.Action.BUDGET_CREATE


@admin.register(m.Cluster)
class ClusterAdmin(admin.ModelAdmin):
    list_display = ("name", "site", "scheduler")
    list_filter = ("scheduler", "site")


@admin.register(m.Host)
class HostAdmin(admin.ModelAdmin):
    list_display = ("hostname", "cluster", "cpu_model", "dram_gb", "ssd_gb", "gpu_slots", "last_seen_at")
    list_filter = ("cluster",)
    list_select_related = ("cluster", "stream")
    search_fields = ("hostname",)
    readonly_fields = ("last_seen_at", "last_seq")

    # What telemetry has stored of the host's stream (telemetry.models.HostStream), shown read-only.
    @admin.display(description="last seen", ordering="stream__last_seen_at")
    def last_seen_at(self, host: m.Host):
        stream = getattr(host, "stream", None)
        return stream.last_seen_at if stream is not None else None

    @admin.display(description="last seq")
    def last_seq(self, host: m.Host):
        stream = getattr(host, "stream", None)
        return stream.last_seq if stream is not None else None


@admin.register(m.Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ("uuid", "host", "index", "reported_name", "hardware_model", "lifetime_years")
    list_filter = ("hardware_model",)
    search_fields = ("uuid", "host__hostname", "reported_name")
    list_select_related = ("host", "hardware_model")


# --- jobs and ledger (computed) ----------------------------------------------------------


@admin.register(m.Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("scheduler_job_id", "name", "org", "team", "kind", "family", "status", "started_at", "ended_at")
    list_filter = ("status", "kind", "family", "org")
    search_fields = ("scheduler_job_id", "name", "username")
    date_hierarchy = "started_at"


@admin.register(m.JobAllocation)
class JobAllocationAdmin(ReadOnlyAdmin):
    list_display = ("job", "device", "start", "end", "fraction")


@admin.register(m.LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = (
        "hour",
        "account",
        "job",
        "site",
        "component",
        "energy_j",
        "co2e_operational_g",
        "co2e_embodied_g",
        "method_version",
    )
    list_filter = ("account", "component", "method_version", "site")
    date_hierarchy = "hour"


@admin.register(m.JobFootprint)
class JobFootprintAdmin(ReadOnlyAdmin):
    list_display = ("job", "energy_j", "co2e_operational_g", "co2e_embodied_g", "is_final", "method_version")
    list_filter = ("is_final", "method_version")


@admin.register(m.FootprintRevision)
class FootprintRevisionAdmin(ReadOnlyAdmin):
    list_display = ("job", "revised_at", "reason", "factor_change", "method_version")


@admin.register(m.TeamDay)
class TeamDayAdmin(ReadOnlyAdmin):
    list_display = ("day", "org", "team", "site", "energy_j", "co2e_operational_g", "co2e_embodied_g")
    list_filter = ("org", "site")
    date_hierarchy = "day"


@admin.register(m.DeviceHour)
class DeviceHourAdmin(ReadOnlyAdmin):
    list_display = ("hour", "device", "energy_j", "allocated_s", "avg_util_pct")
    date_hierarchy = "hour"


@admin.register(m.JobHour)
class JobHourAdmin(ReadOnlyAdmin):
    list_display = ("hour", "job", "energy_j", "co2e_operational_g", "co2e_embodied_g", "intensity_g_per_kwh")
    date_hierarchy = "hour"


@admin.register(m.ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    """Tokens are issued through the API (the secret is shown once); the admin shows metadata."""

    list_display = ("name", "org", "scope", "prefix", "created_at", "revoked_at", "last_used_at")
    list_filter = ("scope", "org")
    exclude = ("digest",)


@admin.register(m.AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """Who changed which factor, budget, token, recipient or policy: append-only (no add, change
    or delete here or anywhere in the application)."""

    list_display = ("created_at", "org", "actor_label", "action", "object_type", "object_id", "reason")
    list_filter = ("action", "org", "object_type")
    search_fields = ("object_type", "object_id", "actor_label", "reason")
    date_hierarchy = "created_at"
    list_select_related = ("org",)
    ordering = ("-created_at", "-id")
    actions = None


# --- monthly report delivery (accounting/services/report_delivery.py) ----------------------


@admin.register(m.ReportRecipient)
class ReportRecipientAdmin(admin.ModelAdmin):
    """Extra addresses of a team's report (no team: the organisation roll-up). Added and removed
    through the services, which audit each change ("report_recipients"); not edited in place."""

    list_display = ("email", "org", "team", "note", "added_at")
    list_filter = ("org", "team")
    search_fields = ("email", "note")
    fields = ("org", "team", "email", "note")

    def has_change_permission(self, request, obj=None):
        return obj is None

    def save_model(self, request, obj, form, change):
        from accounting.services.report_delivery import report_recipient_add

        row = report_recipient_add(
            org_id=obj.org_id, team_id=obj.team_id, email=obj.email, note=obj.note, actor=request.user
        )
        obj.pk = row.pk

    def delete_model(self, request, obj):
        from accounting.services.report_delivery import report_recipient_remove

        report_recipient_remove(recipient_id=obj.pk, actor=request.user)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)


@admin.register(m.ReportOptOut)
class ReportOptOutAdmin(admin.ModelAdmin):
    list_display = ("user", "org", "created_at")
    list_filter = ("org",)
    search_fields = ("user__username", "user__email")
    fields = ("user", "org")

    def has_change_permission(self, request, obj=None):
        return obj is None

    def save_model(self, request, obj, form, change):
        from accounting.services.report_delivery import report_opt_out_set

        report_opt_out_set(user_id=obj.user_id, org_id=obj.org_id, opted_out=True, actor=request.user)
        obj.pk = m.ReportOptOut.objects.get(user_id=obj.user_id, org_id=obj.org_id).pk

    def delete_model(self, request, obj):
        from accounting.services.report_delivery import report_opt_out_set

        report_opt_out_set(user_id=obj.user_id, org_id=obj.org_id, opted_out=False, actor=request.user)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)


@admin.register(m.BouncedAddress)
class BouncedAddressAdmin(admin.ModelAdmin):
    """Addresses a mail server refused for good. Flags are set by delivery only; deleting one
    (the mailbox works again) is audited."""

    list_display = ("email", "smtp_code", "error", "flagged_at")
    search_fields = ("email",)
    readonly_fields = ("email", "smtp_code", "error", "flagged_at")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def delete_model(self, request, obj):
        from accounting.services.report_delivery import bounced_address_clear

        bounced_address_clear(email=obj.email, actor=request.user)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)


@admin.register(m.ReportSchedule)
class ReportScheduleAdmin(AuditedAdmin):
    audit_fields = ("time_zone",)
    audit_object_type = "report_schedule"
    audit_action = m.AuditEvent.Action.POLICY_UPDATE
    list_display = ("org", "time_zone")


@admin.register(m.ReportRun)
class ReportRunAdmin(ReadOnlyAdmin):
    list_display = ("org", "month", "planned_at", "scopes", "deliveries")
    list_filter = ("org",)


@admin.register(m.ReportDelivery)
class ReportDeliveryAdmin(ReadOnlyAdmin):
    """The delivery ledger, read-only: resends go through ``manage.py reports resend`` (audited)."""

    list_display = ("month", "org", "team", "recipient", "revision", "status", "attempts", "sent_at", "last_error")
    list_filter = ("status", "org", "month")
    search_fields = ("recipient", "message_id")
    list_select_related = ("org", "team")
    ordering = ("-month", "team_id", "recipient", "revision")


@admin.register(m.ReportScopeOptOut)
class ReportScopeOptOutAdmin(ReadOnlyAdmin):
    """Who unsubscribed from which report, read-only: recipients change it themselves (the link in
    the e-mail, the reports page), through the audited ``report_scope_opt_out_set``."""

    list_display = ("email", "org", "team", "via", "created_at")
    list_filter = ("via", "org")
    search_fields = ("email",)
    list_select_related = ("org", "team")
