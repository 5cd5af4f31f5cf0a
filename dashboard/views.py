"""Dashboard pages: thin views over accounting.selectors.dashboard / fleet and dashboard.figures.

Every view is login-protected and derives the user's ``Principal`` first (the API's access
rule, ``accounting.selectors.access``), handed to the selectors as their ``scope``; they
filter by it, so a page, a JSON endpoint, the CSV export and the reports apply one rule.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import hashlib
import importlib.metadata
from collections.abc import Callable
from functools import cache
from pathlib import Path

import drf_spectacular_sidecar
import plotly
from csp.constants import SELF
from csp.decorators import csp_replace
from django.contrib.auth.decorators import login_required
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotModified,
    JsonResponse,
    StreamingHttpResponse,
)
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounting.domain.errors import InputError, StateError
from accounting.models import HardwareModel, Job, ReportScopeOptOut
from accounting.reports.render import report_html
from accounting.selectors import dashboard as sel
from accounting.selectors import fleet as fleet_sel
from accounting.selectors.access import Principal, principal_for
from accounting.selectors.report_deliveries import (
    latest_delivery_ids,
    report_delivery_list,
    report_delivery_months,
    report_subscription_list,
)
from accounting.selectors.reports import month_report
from accounting.services.report_delivery import (
    report_scope_opt_out_set,
    report_unsubscribe,
    report_unsubscribe_delivery_get,
)
from dashboard import figures
from dashboard.forms import (
    GROUP_BY_LABELS,
    JobFilterForm,
    OverviewForm,
    PeriodTeamForm,
    TradeoffForm,
    ignored_filters,
    valid_data,
)

PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
PLOTLY_VERSION = plotly.__version__
# ReDoc from drf-spectacular-sidecar, with the one address it would load from the internet
# (the "API docs by Redocly" logo, hard-coded in the bundle) pointed at a local image.
REDOC_JS = (
    Path(drf_spectacular_sidecar.__file__).parent / "static/drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js"
)
REDOC_VERSION = importlib.metadata.version("drf-spectacular-sidecar")
REDOC_REMOTE_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
REDOC_LOCAL_LOGO = "dashboard/docs-mark.svg"  # a static file
LIVE_REFRESH_S = 5
JOB_LIVE_SPAN = dt.timedelta(minutes=30)  # the job page's live chart shows this much
JOBS_PAGE_SIZE = 50


def _render(request: HttpRequest, template: str, nav: str, context: dict) -> HttpResponse:
    context.update({"nav": nav, "plotly_version": PLOTLY_VERSION})
    ignored = ignored_filters(context["form"]) if "form" in context else []
    ignored += context.pop("ignored_params", [])  # query parameters outside a form, refused the same way
    if ignored:
        context["ignored_filters"] = ignored
    return render(request, template, context)


def _scope(request: HttpRequest) -> Principal:
    """The dashboard selectors' scope: the session user's principal, the API's access rule
    (``accounting.selectors.access``), for pages, CSV exports and reports alike."""
    return principal_for(user=request.user)


def _today() -> dt.date:
    return timezone.now().astimezone(dt.UTC).date()


def _query_without(request: HttpRequest, *keys: str) -> str:
    params = request.GET.copy()
    for key in keys:
        params.pop(key, None)
    return params.urlencode()


# --- plotly.js from the installed package ---------------------------------------------------


@cache
def _plotly_gzip() -> tuple[bytes, str]:
    raw = PLOTLY_JS.read_bytes()
    return gzip.compress(raw, compresslevel=6, mtime=0), hashlib.sha256(raw).hexdigest()[:16]


@require_GET
def plotly_js(request: HttpRequest, version: str) -> HttpResponseBase:
    """plotly.min.js from the installed plotly package (never a CDN), versioned URL, cached for a year."""
    if version != PLOTLY_VERSION:
        raise Http404("unknown plotly.js version")
    body, digest = _plotly_gzip()
    return _immutable_js(
        request,
        gzipped=body,
        digest=digest,
        plain=lambda: FileResponse(PLOTLY_JS.open("rb"), content_type="text/javascript; charset=utf-8"),
    )


def _immutable_js(
    request: HttpRequest, *, gzipped: bytes, digest: str, plain: Callable[[], HttpResponseBase]
) -> HttpResponseBase:
    """A versioned script served from this machine: 304 on a matching ETag, gzip when accepted,
    else ``plain()``; cached for a year (the URL changes with the version)."""
    etag = f'"{digest}"'
    if request.headers.get("If-None-Match") == etag:
        response: HttpResponseBase = HttpResponseNotModified()
    elif "gzip" in request.headers.get("Accept-Encoding", ""):
        response = HttpResponse(gzipped, content_type="text/javascript; charset=utf-8")
        response["Content-Encoding"] = "gzip"
    else:
        response = plain()
    response["Cache-Control"] = "public, max-age=31536000, immutable"
    response["ETag"] = etag
    response["Vary"] = "Accept-Encoding"
    return response


@cache
def _redoc_gzip() -> tuple[bytes, bytes, str]:
    raw = REDOC_JS.read_bytes().replace(REDOC_REMOTE_LOGO, static(REDOC_LOCAL_LOGO).encode())
    return raw, gzip.compress(raw, compresslevel=6, mtime=0), hashlib.sha256(raw).hexdigest()[:16]


@require_GET
def redoc_js(request: HttpRequest, version: str) -> HttpResponseBase:
    """ReDoc's standalone bundle for /api/redoc/, served from this machine with its logo local."""
    if version != REDOC_VERSION:
        raise Http404("unknown ReDoc bundle version")
    raw, body, digest = _redoc_gzip()
    return _immutable_js(
        request,
        gzipped=body,
        digest=digest,
        plain=lambda: HttpResponse(raw, content_type="text/javascript; charset=utf-8"),
    )


# --- overview ------------------------------------------------------------------------------


@login_required
def overview(request: HttpRequest) -> HttpResponse:
    scope = _scope(request)
    teams = sel.team_option_list(scope=scope)
    form = OverviewForm(request.GET or None, teams=teams)
    period, team_id = form.resolved(today=_today())
    group_by = valid_data(form).get("group_by") or "team"
    data = sel.overview_get(scope=scope, period=period, team_id=team_id, group_by=group_by)
    label = GROUP_BY_LABELS[group_by]
    figs = {
        "energy": figures.stacked_daily_figure(
            days=data.days,
            groups=data.groups,
            metric="energy_kwh",
            title=f"Energy by {label.lower()}",
            group_label=label,
        ),
        "operational": figures.stacked_daily_figure(
            days=data.days,
            groups=data.groups,
            metric="co2e_operational_kg",
            title=f"Operational carbon by {label.lower()}",
            group_label=label,
        ),
        "embodied": figures.stacked_daily_figure(
            days=data.days,
            groups=data.groups,
            metric="co2e_embodied_kg",
            title=f"Embodied carbon by {label.lower()}",
            group_label=label,
        ),
        "split": figures.share_donut_figure(values=data.energy_split_kwh, title="Where the energy went", unit="kWh"),
    }
    return _render(
        request,
        "dashboard/overview.html",
        "overview",
        {
            "form": form,
            "data": data,
            "figs": figs,
            "period": period,
            "group_label": label,
            "disclosure": sel.overview_disclosure_get(scope=scope, period=period, team_id=team_id),
        },
    )


# --- sites ---------------------------------------------------------------------------------


@login_required
def sites(request: HttpRequest) -> HttpResponse:
    scope = _scope(request)
    form = PeriodTeamForm(request.GET or None, teams=sel.team_option_list(scope=scope), default_period="7d")
    period, team_id = form.resolved(today=_today())
    data = fleet_sel.site_overview_get(scope=scope, period=period, team_id=team_id)
    figs = {
        "intensity": figures.intensity_curves_figure(curves=data.intensity),
        "heatmap": figures.energy_heatmap_figure(site_names=data.heatmap_site_names, matrix=data.heatmap_kwh),
        "carbon": figures.site_carbon_figure(sites=data.sites),
    }
    return _render(
        request, "dashboard/sites.html", "sites", {"form": form, "data": data, "figs": figs, "period": period}
    )


# --- devices -------------------------------------------------------------------------------


@login_required
def devices(request: HttpRequest) -> HttpResponse:
    scope = _scope(request)
    form = PeriodTeamForm(request.GET or None, teams=sel.team_option_list(scope=scope), default_period="7d")
    period, team_id = form.resolved(today=_today())
    data = fleet_sel.device_overview_get(scope=scope, period=period, now=timezone.now(), team_id=team_id)
    figs = {
        "hours": figures.model_hours_figure(models=data.models),
        "util": figures.model_util_power_figure(models=data.models),
        "embodied": figures.embodied_figure(rows=data.embodied),
    }
    return _render(
        request,
        "dashboard/devices.html",
        "devices",
        {
            "form": form,
            "data": data,
            "figs": figs,
            "period": period,
            "summary": fleet_sel.device_usage_summary(rows=data.models),
        },
    )


# --- jobs ----------------------------------------------------------------------------------


def _job_filters(request: HttpRequest, scope: Principal) -> tuple[JobFilterForm, sel.JobListFilters, str]:
    devices = list(HardwareModel.objects.filter(kind=HardwareModel.Kind.GPU).order_by("name").values("key", "name"))
    form = JobFilterForm(request.GET or None, teams=sel.team_option_list(scope=scope), devices=devices)
    data = valid_data(form)
    end = data.get("end")
    filters = sel.JobListFilters(
        team_id=data.get("team"),
        username=data.get("user") or "",
        family=data.get("family") or "",
        kind=data.get("kind") or "",
        device_model=data.get("device") or "",
        status=data.get("status") or "",
        start=data.get("start"),
        end=end + dt.timedelta(days=1) if end else None,
        q=(data.get("q") or "").strip(),
    )
    sort = data.get("sort") or "-started"
    if sort.lstrip("-") not in sel.SORT_FIELDS:
        sort = "-started"
    return form, filters, sort


@login_required
def job_list(request: HttpRequest) -> HttpResponse:
    scope = _scope(request)
    form, filters, sort = _job_filters(request, scope)
    ignored_params = []
    raw_page = request.GET.get("page", "1")
    try:
        page = int(raw_page)
        if page < 1:
            raise ValueError
    except ValueError:
        page = 1
        ignored_params.append({"label": "Page", "value": raw_page, "message": "not a page number; page 1 is shown."})
    result = sel.job_list(scope=scope, filters=filters, sort=sort, page=page, page_size=JOBS_PAGE_SIZE)
    columns = [
        ("name", "Job"),
        ("team", "Team · user"),
        ("status", "Status"),
        ("started", "Started (UTC)"),
        ("gpu_hours", "GPU-h"),
        ("energy", "Energy (kWh)"),
        ("co2e", "CO2e (kg)"),
    ]
    return _render(
        request,
        "dashboard/jobs.html",
        "jobs",
        {
            "form": form,
            "page": result,
            "columns": columns,
            "query_no_page": _query_without(request, "page"),
            "query_no_sort": _query_without(request, "page", "sort"),
            "query": request.GET.urlencode(),
            "ignored_params": ignored_params,
        },
    )


class _Echo:
    def write(self, value: str) -> str:
        return value


@login_required
def job_export(request: HttpRequest) -> StreamingHttpResponse:
    scope = _scope(request)
    _form, filters, sort = _job_filters(request, scope)
    writer = csv.writer(_Echo())
    rows = (writer.writerow(r) for r in sel.job_export_rows(scope=scope, filters=filters, sort=sort))
    stamp = timezone.now().strftime("%Y%m%dT%H%M")
    response = StreamingHttpResponse(rows, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="carbonledger-jobs-{stamp}.csv"'
    return response


@login_required
def job_detail(request: HttpRequest, pk: int) -> HttpResponse:
    scope = _scope(request)
    data = sel.job_detail_get(scope=scope, job_id=pk)
    if data is None:
        raise Http404("No such job")
    figs = {
        "trace": figures.job_trace_figure(traces=data["device_traces"]),
        "hours": figures.job_hours_figure(hours=data["hours"]),
        "energy": figures.breakdown_figure(values=data["breakdown_energy_kwh"], title="Energy breakdown", unit="kWh"),
        "carbon": figures.breakdown_figure(values=data["breakdown_co2e_kg"], title="Carbon breakdown", unit="kgCO2e"),
    }
    job: Job = data["job"]
    now = timezone.now()
    service = (
        sel.service_rates_get(
            scope=scope, job_id=job.pk, period=request.GET.get("service_period", sel.DEFAULT_SERVICE_PERIOD), now=now
        )
        if job.has_serving_counters  # type: ignore[attr-defined]  # annotated by job_detail_get
        else None
    )
    if service is not None:
        figs["service"] = figures.service_rates_figure(hours=service.hours, basis_label=service.basis_label)
    # A young running job has no whole hours yet: its trace is drawn from the raw windows.
    power = None
    if job.ended_at is None and (now - job.started_at).total_seconds() < sel.YOUNG_JOB_S:
        power = sel.job_power_get(scope=scope, job_id=job.pk, now=now)
        figs["trace"] = figures.job_window_figure(power=power) or figs["trace"]
    if job.ended_at is None:
        live = power or sel.job_power_get(scope=scope, job_id=job.pk, now=now, start=now - JOB_LIVE_SPAN)
        figs["live"] = figures.power_series_figure(
            t=live["total"]["t"] if live else [],
            power_kw=live["total"]["power_kw"] if live else [],
            title="Live GPU power of this job (kW, all its GPUs, per window)",
        )
        data["live_power"] = live
    deadline = job.started_at + dt.timedelta(hours=(data["duration_h"] or 1.0) + 24)
    return _render(
        request,
        "dashboard/job_detail.html",
        "jobs",
        {
            "d": data,
            "job": job,
            "service": service,
            "figs": figs,
            "options": sel.whatif_option_get(),
            "deadline": deadline,
            "project_url": f"/api/v1/jobs/{job.pk}/project/",
            "raw_trace": power is not None,
            "live_span_s": int(JOB_LIVE_SPAN.total_seconds()),
        },
    )


def _iso_param(request: HttpRequest, name: str) -> dt.datetime | None:
    """An aware ISO 8601 query parameter, or None when absent; ValueError naming it when bad."""
    raw = request.GET.get(name)
    if not raw:
        return None
    try:
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{name}: not an ISO 8601 date-time") from None
    if value.tzinfo is None:
        raise ValueError(f"{name}: give a time zone (e.g. Z or +00:00)")
    return value


@login_required
@require_GET
def job_power(request: HttpRequest, pk: int) -> JsonResponse:
    """Raw windows of a job's GPUs in [start, end) (a zoom, or the live chart's last minutes),
    its energy so far, current power and projected total."""
    scope = _scope(request)
    try:
        start, end = _iso_param(request, "start"), _iso_param(request, "end")
    except ValueError as exc:
        return JsonResponse({"title": "Bad query parameter", "status": 400, "detail": str(exc)}, status=400)
    data = sel.job_power_get(scope=scope, job_id=pk, now=timezone.now(), start=start, end=end)
    if data is None:
        raise Http404("No such job")
    response = JsonResponse(data)
    response["Cache-Control"] = "no-store"
    return response


# --- live ----------------------------------------------------------------------------------


@login_required
def live(request: HttpRequest) -> HttpResponse:
    scope = _scope(request)
    now = timezone.now()
    fleet = sel.fleet_power_get(scope=scope, now=now)
    return _render(
        request,
        "dashboard/live.html",
        "live",
        {
            "initial": sel.running_job_list(scope=scope, now=now),
            "refresh_s": LIVE_REFRESH_S,
            "fleet": fleet,
            "fleet_fig": figures.power_series_figure(
                t=fleet["t"],
                power_kw=fleet["power_kw"],
                title="GPU power of the fleet you see (kW, per minute, last hour)",
            ),
        },
    )


@login_required
@require_GET
def live_data(request: HttpRequest) -> JsonResponse:
    scope = _scope(request)
    now = timezone.now()
    response = JsonResponse(
        {**sel.running_job_list(scope=scope, now=now), "fleet_power": sel.fleet_power_get(scope=scope, now=now)}
    )
    response["Cache-Control"] = "no-store"
    return response


# --- trade-offs ----------------------------------------------------------------------------


@login_required
def tradeoffs(request: HttpRequest) -> HttpResponse:
    scope = _scope(request)
    form = TradeoffForm(request.GET or None, teams=sel.team_option_list(scope=scope), default_period="90d")
    period, team_id = form.resolved(today=_today())
    cd = valid_data(form)
    family = cd.get("family") or TradeoffForm.DEFAULTS["family"]
    kind = cd.get("kind") or TradeoffForm.DEFAULTS["kind"]
    x_metric = cd.get("x") or TradeoffForm.DEFAULTS["x"]
    colour = cd.get("colour") or TradeoffForm.DEFAULTS["colour"]
    data = sel.tradeoff_point_list(
        scope=scope, period=period, family=family, kind=kind, x_metric=x_metric, team_id=team_id
    )
    fig = figures.tradeoff_figure(data=data, colour_by=colour)
    return _render(
        request,
        "dashboard/tradeoffs.html",
        "tradeoffs",
        {
            "form": form,
            "data": data,
            "fig": fig,
            "period": period,
            "family_label": Job.Family(family).label,
            "kind_label": Job.Kind(kind).label,
        },
    )


# --- what-if planner -----------------------------------------------------------------------


@login_required
def planner(request: HttpRequest) -> HttpResponse:
    scope = _scope(request)
    defaults = fleet_sel.planner_default_get(scope=scope, now=timezone.now())
    fam, kind = dict(Job.Family.choices), dict(Job.Kind.choices)
    for w in defaults["workloads"]:
        w["label"] = f"{fam.get(w['family'], w['family'])} {kind.get(w['kind'], w['kind']).lower()}"
    return _render(
        request,
        "dashboard/planner.html",
        "planner",
        {
            "options": sel.whatif_option_get(),
            "defaults": defaults,
        },
    )


# --- budgets -------------------------------------------------------------------------------


@login_required
def budgets(request: HttpRequest) -> HttpResponse:
    scope = _scope(request)
    now = timezone.now()
    on = None
    ignored_params = []
    raw = request.GET.get("on", "")
    if raw:
        try:
            on = dt.date.fromisoformat(raw)
        except ValueError:
            ignored_params.append({"label": "On", "value": raw, "message": "not a date (YYYY-MM-DD); today is shown."})
    rows = sel.team_budget_list(scope=scope, now=now, on=on)
    charts = [{"fid": f"fig-burn-{r.team_id}", "fig": figures.burndown_figure(row=r)} for r in rows]
    return _render(
        request,
        "dashboard/budgets.html",
        "budgets",
        {"rows": rows, "charts": charts, "on": on or now.date(), "ignored_params": ignored_params},
    )


# --- methodology ---------------------------------------------------------------------------


@login_required
def methodology(request: HttpRequest) -> HttpResponse:
    return _render(
        request,
        "dashboard/methodology.html",
        "methodology",
        {"data": sel.methodology_factor_list(scope=_scope(request))},
    )


# --- reports -------------------------------------------------------------------------------


def _user_id(request: HttpRequest) -> int:
    return int(request.user.pk or 0)  # behind login_required: a signed-in user


@login_required
def reports(request: HttpRequest) -> HttpResponse:
    return _render(
        request,
        "dashboard/reports.html",
        "reports",
        {
            "months": sel.report_month_list(scope=_scope(request)),
            "subscriptions": report_subscription_list(user_id=_user_id(request)),
            "email": getattr(request.user, "email", ""),
        },
    )


@login_required
@require_POST
def report_subscription(request: HttpRequest) -> HttpResponse:
    """A signed-in user subscribes to (or unsubscribes from) one report they receive by
    membership: ``org``, ``team`` (empty: the roll-up), ``subscribe`` "yes"/"no"."""
    try:
        org_id = int(request.POST["org"])
        team_id = int(request.POST["team"]) if request.POST.get("team") else None
    except (KeyError, ValueError) as exc:
        raise Http404("No such report") from exc
    wanted = request.POST.get("subscribe")
    if wanted not in ("yes", "no"):
        return HttpResponse("subscribe must be yes or no", status=400, content_type="text/plain")
    mine = {(s.org_id, s.team_id) for s in report_subscription_list(user_id=_user_id(request))}
    if (org_id, team_id) not in mine:
        raise Http404("No such report")
    report_scope_opt_out_set(
        org_id=org_id,
        team_id=team_id,
        email=getattr(request.user, "email", ""),
        opted_out=wanted == "no",
        via=ReportScopeOptOut.Via.PAGE,
        actor=request.user,
    )
    return redirect(reverse("dashboard:reports") + "#subscriptions")


# RFC 8058: a mail client's one-click unsubscribe POSTs without cookies or a CSRF token; the
# signed token in the URL is the credential (it names one delivery, one address, one report).
@csrf_exempt
@require_http_methods(["GET", "POST"])
def report_unsubscribe_page(request: HttpRequest, token: str) -> HttpResponse:
    """The unsubscribe link of a report e-mail, no login: GET asks to confirm (link checkers
    and previews change nothing), POST unsubscribes. A forged, altered or expired link is
    refused (400), a used one too (410); neither changes anything."""
    try:
        if request.method == "POST":
            row = report_unsubscribe(token=token, now=timezone.now())
        else:
            row = report_unsubscribe_delivery_get(token=token)
    except InputError as exc:
        return render(request, "dashboard/report_unsubscribe.html", {"error": exc.message}, status=400)
    except StateError as exc:
        return render(request, "dashboard/report_unsubscribe.html", {"error": str(exc)}, status=410)
    scope_label = row.team.name if row.team is not None else f"{row.org.name} (organisation roll-up)"
    return render(
        request,
        "dashboard/report_unsubscribe.html",
        {"done": request.method == "POST", "recipient": row.recipient, "scope_label": scope_label},
    )


def _report_team(request: HttpRequest, teams: list) -> int | None:
    """The ``team`` query parameter of a report page: one of the viewer's teams, else 404."""
    try:
        team_id = int(request.GET["team"]) if request.GET.get("team") else None
    except ValueError:
        team_id = None
    if team_id is not None and team_id not in {t["id"] for t in teams}:
        raise Http404("No such team")
    return team_id


def _report_month_date(year: int, month: int) -> dt.date:
    if not (1 <= month <= 12 and 2000 <= year <= 2100):
        raise Http404("No such month")
    return dt.date(year, month, 1)


@login_required
def report_month(request: HttpRequest, year: int, month: int) -> HttpResponse:
    first = _report_month_date(year, month)
    scope = _scope(request)
    teams = sel.team_option_list(scope=scope)
    team_id = _report_team(request, teams)
    data = sel.report_month_get(scope=scope, month=first, team_id=team_id, today=_today())
    started = first <= _today()
    files = []
    preview_url = ""
    if started:
        # The files come from the API (a dashboard session is a read principal there): one
        # implementation of each file, scoped by the same access rule.
        slug = next((t["slug"] for t in teams if t["id"] == team_id), None)
        query = f"?team={slug}" if slug else ""
        label = f"{first:%Y-%m}"
        files = [
            (name, reverse(route, kwargs={"month": label}) + query, what)
            for name, route, what in (
                ("HTML", "api-report-html", "the report as a web page"),
                ("PDF", "api-report-pdf", "the report to file or print"),
                ("CSV", "api-report-jobs-csv", "the month's jobs"),
                ("Parquet", "api-report-ledger-parquet", "the month's ledger by job and hour, for analysts"),
            )
        ]
        preview_url = reverse("dashboard:report-preview", args=[year, month]) + (
            f"?team={team_id}" if team_id is not None else ""
        )
    return _render(
        request,
        "dashboard/report_month.html",
        "reports",
        {
            "data": data,
            "fig": figures.report_team_figure(teams=data["teams"]),
            "teams": teams,
            "team_id": team_id,
            "month": first,
            "files": files,
            "preview_url": preview_url,
        },
    )


# --- report deliveries ---------------------------------------------------------------------

_DELIVERY_BADGE = {
    "sent": "completed",
    "pending": "running",
    "sending": "running",
    "retry": "at_risk",
    "failed": "failed",
    "skipped": "preempted",
    "uncertain": "preempted",
}


@login_required
def report_deliveries(request: HttpRequest) -> HttpResponse:
    """What the monthly e-mails did: per month, report (team or roll-up), recipient and
    revision, the delivery ledger's status, attempts and last error, and whether the month's
    figures changed after sending. Scoped like every page: an admin sees the organisation's,
    a member their teams'."""
    scope = _scope(request)
    months = report_delivery_months(scope=scope)
    ignored_params = []
    raw = request.GET.get("month", "")
    month = months[0] if months else None
    if raw:
        try:
            month = dt.date.fromisoformat(f"{raw}-01")
        except ValueError:
            message = "not a month (YYYY-MM); the latest is shown."
            ignored_params.append({"label": "Month", "value": raw, "message": message})
    rows = report_delivery_list(scope=scope, month=month) if month else []
    latest = latest_delivery_ids(rows)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    revised = {row.pk for row in rows if row.pk in latest and row.revised_after_sending}
    return _render(
        request,
        "dashboard/report_deliveries.html",
        "reports",
        {
            "months": months,
            "month": month,
            "rows": [
                {"d": row, "badge": _DELIVERY_BADGE.get(row.status, ""), "revised": row.pk in revised} for row in rows
            ],
            "counts": sorted(counts.items()),
            "revised": len(revised),
            "ignored_params": ignored_params,
        },
    )


@login_required
@require_GET
@xframe_options_sameorigin
@csp_replace({"frame-ancestors": [SELF]})  # type: ignore[arg-type]  # typed for (request) views only
def report_preview(request: HttpRequest, year: int, month: int) -> HttpResponse:
    """The monthly report exactly as it is mailed (charts inline), framed by the month's page."""
    first = _report_month_date(year, month)
    if first > _today():
        raise Http404("This month has not begun")
    scope = _scope(request)
    team_id = _report_team(request, sel.team_option_list(scope=scope))
    report = month_report(scope=scope, month=first, team_id=team_id, today=_today())
    page = reverse("dashboard:report-month", args=[year, month]) + (f"?team={team_id}" if team_id is not None else "")
    return HttpResponse(report_html(report, for_email=False, dashboard_url=request.build_absolute_uri(page)))
