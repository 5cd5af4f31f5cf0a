"""Filter forms of the dashboard pages (GET parameters, validated). A bad filter is dropped on
its own and named on the page (``ignored_filters``); the valid ones still apply."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, cast

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS

from accounting.models import Job
from accounting.selectors.dashboard import GROUP_BY_CHOICES, Period

PERIOD_CHOICES = [
    ("7d", "Last 7 days"),
    ("30d", "Last 30 days"),
    ("90d", "Last 90 days"),
    ("mtd", "Month to date"),
    ("custom", "Custom range"),
]
MAX_RANGE_DAYS = 400


def _choice_field(form: forms.BaseForm, name: str) -> forms.ChoiceField:
    """A declared ChoiceField of ``form`` (``form.fields`` is typed as plain ``Field``)."""
    return cast(forms.ChoiceField, form.fields[name])


def valid_data(form: forms.Form) -> dict[str, Any]:
    """The filters that validated: an invalid field is left out, not the whole set. A form-wide
    error (a bad custom range) drops the period fields, so the default period applies."""
    if not form.is_bound:
        return {}
    form.is_valid()
    data = dict(form.cleaned_data)
    if form.non_field_errors():
        for name in ("period", "start", "end"):
            data.pop(name, None)
    return data


def ignored_filters(form: forms.Form) -> list[dict[str, str]]:
    """One entry per rejected filter, for the page's message: label, the value sent, why."""
    if not form.is_bound or form.is_valid():
        return []
    out = []
    for name, errors in form.errors.items():
        message = " ".join(str(e) for e in errors)
        if name == NON_FIELD_ERRORS:
            out.append({"label": "Period", "value": "", "message": f"{message} The default period applies."})
        else:
            label = str(form.fields[name].label or name.replace("_", " ").capitalize())
            out.append({"label": label, "value": str(form.data.get(name, "")), "message": message})
    return out


class PeriodTeamForm(forms.Form):
    period = forms.ChoiceField(choices=PERIOD_CHOICES, required=False)
    start = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), help_text="inclusive")
    team = forms.TypedChoiceField(coerce=int, required=False, empty_value=None)

    # Select values the page uses when the request names none: a bound form is given them too, so
    # the form always shows what the page shows (a select with no selected option would show its
    # first choice while the page used another).
    DEFAULTS: Mapping[str, str] = {}

    def __init__(self, data=None, *args, teams: Sequence[Mapping[str, Any]], default_period: str = "30d", **kwargs):
        defaults = {"period": default_period, **self.DEFAULTS}
        if data is not None:
            data = data.copy()
            for name, value in defaults.items():
                if not data.get(name):
                    data[name] = value
        super().__init__(data, *args, **kwargs)
        self.default_period = default_period
        for name, value in defaults.items():
            self.fields[name].initial = value
        _choice_field(self, "team").choices = [("", "All teams")] + [(t["id"], t["name"]) for t in teams]

    def clean(self):
        data = super().clean()
        if data is None:  # Form.clean() returns cleaned_data; only overrides may return None
            data = self.cleaned_data
        if data.get("period") == "custom":
            start, end = data.get("start"), data.get("end")
            if not start or not end:
                raise forms.ValidationError("A custom range needs a start and an end date.")
            if end < start:
                raise forms.ValidationError("The end date is before the start date.")
            if (end - start).days + 1 > MAX_RANGE_DAYS:
                raise forms.ValidationError(f"Pick at most {MAX_RANGE_DAYS} days.")
        return data

    def resolved(self, *, today: dt.date) -> tuple[Period, int | None]:
        data = valid_data(self)
        key = data.get("period") or self.default_period
        tomorrow = today + dt.timedelta(days=1)
        if key == "custom" and data.get("start") and data.get("end"):
            period = Period(start=data["start"], end=data["end"] + dt.timedelta(days=1))
        elif key == "mtd":
            period = Period(start=today.replace(day=1), end=tomorrow)
        else:
            days = {"7d": 7, "30d": 30, "90d": 90}.get(key, 30)
            period = Period(start=tomorrow - dt.timedelta(days=days), end=tomorrow)
        return period, data.get("team")


GROUP_BY_LABELS = {c: {"device_model": "Device model"}.get(c, c.title()) for c in GROUP_BY_CHOICES}


class OverviewForm(PeriodTeamForm):
    DEFAULTS = {"group_by": "team"}
    group_by = forms.ChoiceField(choices=list(GROUP_BY_LABELS.items()), required=False)


def _choices(enum, blank: str):
    return [("", blank), *enum.choices]


class JobFilterForm(forms.Form):
    q = forms.CharField(
        required=False,
        max_length=100,
        label="Search",
        widget=forms.TextInput(attrs={"placeholder": "name or scheduler id"}),
    )
    team = forms.TypedChoiceField(coerce=int, required=False, empty_value=None)
    user = forms.CharField(required=False, max_length=150)
    family = forms.ChoiceField(choices=_choices(Job.Family, "Any family"), required=False)
    kind = forms.ChoiceField(choices=_choices(Job.Kind, "Any kind"), required=False)
    device = forms.ChoiceField(required=False)
    status = forms.ChoiceField(choices=_choices(Job.Status, "Any status"), required=False)
    start = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="Started from")
    end = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="to (inclusive)")
    sort = forms.CharField(required=False, max_length=20, widget=forms.HiddenInput)

    def __init__(self, *args, teams: Sequence[Mapping[str, Any]], devices: Sequence[Mapping[str, Any]], **kwargs):
        super().__init__(*args, **kwargs)
        _choice_field(self, "team").choices = [("", "All teams")] + [(t["id"], t["name"]) for t in teams]
        _choice_field(self, "device").choices = [("", "Any device")] + [(d["key"], d["name"]) for d in devices]


class TradeoffForm(PeriodTeamForm):
    DEFAULTS = {"family": Job.Family.LLM.value, "kind": Job.Kind.TRAINING.value, "x": "throughput", "colour": "device"}
    family = forms.ChoiceField(choices=[c for c in Job.Family.choices], required=False)
    kind = forms.ChoiceField(choices=Job.Kind.choices, required=False)
    x = forms.ChoiceField(
        choices=[("throughput", "Throughput"), ("quality", "Quality")], required=False, label="X axis"
    )
    colour = forms.ChoiceField(
        choices=[("device", "Device"), ("zone", "Zone"), ("team", "Team")], required=False, label="Colour by"
    )
