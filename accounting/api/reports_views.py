"""The monthly report through the API: ``/api/v1/reports/{YYYY-MM}/`` (the figures as JSON, with
the three recommendations) and its files ``report.html``, ``report.pdf``, ``jobs.csv`` (the
dashboard's job export columns) and ``ledger.parquet`` (the month's job-hours, the exports
selector's Parquet). Any read scope; the token's principal decides what the report covers, as
everywhere (``accounting.selectors.access``): ``team`` (a slug the token sees) narrows it to one
team, without it a report covers everything the token sees (an organisation admin: the roll-up
with the fleet overhead). Figures and content: docs/reports.md.

``/api/v1/reports/{YYYY-MM}/deliveries/``: what the month's e-mails did (the delivery ledger,
docs/reports-delivery.md), for user and admin tokens only (recipients' addresses are personal
data: a scheduler has no business with them): an admin token the organisation's (the roll-up's
included), a user token its user's teams' (the roll-up too where the user is an organisation
admin), as on the dashboard's deliveries page."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

from django.http import HttpResponse, StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response

from accounting.api import schema
from accounting.api.base import ApiView, field_error
from accounting.api.exports_views import CsvRenderer, ParquetRenderer
from accounting.api.permissions import Scope
from accounting.api.serializers import validated
from accounting.models import ReportDelivery
from accounting.reports.render import report_html, report_json, report_pdf
from accounting.selectors.access import teams_visible
from accounting.selectors.exports import export_page, export_parquet_stream
from accounting.selectors.report_deliveries import latest_delivery_ids, report_delivery_list
from accounting.selectors.reports import MonthReport, month_jobs_csv_rows, month_report

PARQUET_MAX_ROWS = 1_000_000  # a month's job-hours beyond this: page with /api/v1/exports/


class ReportQuerySerializer(serializers.Serializer):
    team = serializers.SlugField(required=False, help_text="Only this team's report: a team the token sees.")


class _FileRenderer(BaseRenderer):
    """A file's media type for content negotiation; an error's problem details stay JSON."""

    charset = None

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return JSONRenderer().render(data)


class _HtmlRenderer(_FileRenderer):
    media_type = "text/html"
    format = "html"


class _PdfRenderer(_FileRenderer):
    media_type = "application/pdf"
    format = "pdf"


class _ReportView(ApiView):
    def month_of(self, month: str) -> dt.date:
        if not re.fullmatch(r"\d{4}-\d{2}", month):
            raise exceptions.NotFound("No such month: give YYYY-MM.")
        try:
            start = dt.date.fromisoformat(f"{month}-01")
        except ValueError:
            raise exceptions.NotFound("No such month: give YYYY-MM.")
        if not 2000 <= start.year <= 2100:
            raise exceptions.NotFound("No such month: give YYYY-MM.")
        return start

    def report(self, month: str) -> MonthReport:
        start = self.month_of(month)
        query = validated(ReportQuerySerializer, self.request.query_params.dict())
        principal = self.principal()
        team_id = None
        if "team" in query:
            teams = list(teams_visible(principal=principal).filter(slug=query["team"]).values_list("pk", flat=True))
            if len(teams) != 1:
                raise field_error("team", "No such team visible to this token.")
            (team_id,) = teams
        today = timezone.now().astimezone(dt.UTC).date()
        return month_report(scope=principal, month=start, team_id=team_id, today=today)

    def dashboard_url(self, report: MonthReport) -> str:
        path = reverse("dashboard:report-month", args=[report.month.year, report.month.month])
        if report.team_id is not None:
            path += f"?team={report.team_id}"
        return self.request.build_absolute_uri(path)

    def filename(self, report: MonthReport, ext: str) -> str:
        who = f"team-{report.team_id}" if report.team_id is not None else "all"
        return f"carbonledger-report-{report.month:%Y-%m}-{who}.{ext}"

    def perform_content_negotiation(self, request, force=False):
        # A file whatever the Accept header says (browsers send text/html): never a 406.
        return super().perform_content_negotiation(request, force=True)


class ReportView(_ReportView):
    @extend_schema(**schema.REPORT_SCHEMA)
    def get(self, request, month: str):
        report = self.report(month)
        return Response(report_json(report, dashboard_url=self.dashboard_url(report)))


class ReportHtmlView(_ReportView):
    renderer_classes = [_HtmlRenderer]

    @extend_schema(**schema.report_file_schema("html"))
    def get(self, request, month: str):
        report = self.report(month)
        body = report_html(report, for_email=False, dashboard_url=self.dashboard_url(report))
        response = HttpResponse(body, content_type="text/html; charset=utf-8")
        disposition = "inline" if request.query_params.get("inline") == "1" else "attachment"
        response["Content-Disposition"] = f'{disposition}; filename="{self.filename(report, "html")}"'
        return response


class ReportPdfView(_ReportView):
    renderer_classes = [_PdfRenderer]

    @extend_schema(**schema.report_file_schema("pdf"))
    def get(self, request, month: str):
        report = self.report(month)
        response = HttpResponse(
            report_pdf(report, dashboard_url=self.dashboard_url(report)), content_type="application/pdf"
        )
        response["Content-Disposition"] = f'attachment; filename="{self.filename(report, "pdf")}"'
        return response


class ReportJobsCsvView(_ReportView):
    renderer_classes = [CsvRenderer]

    @extend_schema(**schema.report_file_schema("csv"))
    def get(self, request, month: str):
        report = self.report(month)
        buf = io.StringIO()
        csv.writer(buf).writerows(month_jobs_csv_rows(report, scope=self.principal()))
        response = HttpResponse(buf.getvalue().encode(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{self.filename(report, "csv")}"'
        return response


class ReportLedgerParquetView(_ReportView):
    renderer_classes = [ParquetRenderer]

    @extend_schema(**schema.report_file_schema("parquet"))
    def get(self, request, month: str):
        report = self.report(month)
        page = export_page(
            principal=self.principal(),
            dataset="job-hours",
            start=dt.datetime.combine(report.month, dt.time.min, tzinfo=dt.UTC),
            end=dt.datetime.combine(report.period_end, dt.time.min, tzinfo=dt.UTC),
            team_ids=None if report.team_id is None else [report.team_id],
            limit=PARQUET_MAX_ROWS,
        )
        response = StreamingHttpResponse(export_parquet_stream(page), content_type="application/vnd.apache.parquet")
        response["Content-Disposition"] = f'attachment; filename="{self.filename(report, "parquet")}"'
        if page.next_cursor is not None:
            response["X-Next-Cursor"] = page.next_cursor
        return response


DELIVERIES_MAX_ROWS = 10_000  # a month's deliveries beyond this: narrow by team or status


class ReportDeliveryQuerySerializer(serializers.Serializer):
    team = serializers.SlugField(required=False, help_text="Only this team's deliveries: a team the token sees.")
    status = serializers.ChoiceField(
        choices=ReportDelivery.Status.choices, required=False, help_text="Only deliveries in this status."
    )


class ReportDeliverySerializer(serializers.Serializer):
    month = serializers.CharField(help_text="`YYYY-MM`")
    org = serializers.SlugField(help_text="The organisation's slug")
    team = serializers.SlugField(allow_null=True, help_text="The team's slug; null for the organisation roll-up")
    team_name = serializers.CharField(allow_null=True)
    recipient = serializers.EmailField(help_text="Lower-cased")
    revision = serializers.IntegerField(
        help_text="0: the scheduled send; each revised report or forced resend adds one"
    )
    status = serializers.ChoiceField(choices=ReportDelivery.Status.choices)
    attempts = serializers.IntegerField()
    last_error = serializers.CharField(help_text="The last SMTP error, or why the row was skipped; empty if none")
    message_id = serializers.CharField(help_text="The Message-ID the message was (or is being) sent with")
    reason = serializers.CharField(help_text="Why this revision: revised figures, a forced resend's reason")
    forced_by = serializers.CharField(help_text="Who forced a resend; empty for a scheduled or revised send")
    created_at = serializers.DateTimeField()
    sent_at = serializers.DateTimeField(allow_null=True)
    next_attempt_at = serializers.DateTimeField(allow_null=True, help_text="When a retry is due")
    unsubscribed_at = serializers.DateTimeField(allow_null=True, help_text="The recipient used this message's link")
    revised_after_sending = serializers.BooleanField(
        help_text="Sent, the recipient's latest revision, and the month's figures changed since"
    )


class ReportDeliveryListSerializer(serializers.Serializer):
    month = serializers.CharField()
    count = serializers.IntegerField()
    truncated = serializers.BooleanField(help_text=f"More than {DELIVERIES_MAX_ROWS} rows: narrow by team or status")
    results = ReportDeliverySerializer(many=True)


def _delivery_json(row: ReportDelivery, *, latest: set[int]) -> dict[str, object]:
    return {
        "month": f"{row.month:%Y-%m}",
        "org": row.org.slug,
        "team": row.team.slug if row.team is not None else None,
        "team_name": row.team.name if row.team is not None else None,
        "recipient": row.recipient,
        "revision": row.revision,
        "status": row.status,
        "attempts": row.attempts,
        "last_error": row.last_error,
        "message_id": row.message_id,
        "reason": row.reason,
        "forced_by": row.forced_by,
        "created_at": row.created_at,
        "sent_at": row.sent_at,
        "next_attempt_at": row.next_attempt_at,
        "unsubscribed_at": row.unsubscribed_at,
        "revised_after_sending": row.pk in latest and row.revised_after_sending,
    }


class ReportDeliveriesView(_ReportView):
    scopes = (Scope.USER, Scope.ADMIN)

    @extend_schema(
        operation_id="report_month_deliveries",
        summary="What a month's report e-mails did: one row per report, recipient and revision",
        description=(
            "The delivery ledger of the month (docs/reports-delivery.md): for each report (a team's, or the "
            "organisation roll-up with `team` null), recipient and revision, its `status` (pending, sending, retry, "
            "sent, failed, skipped, uncertain), attempts, last error, Message-ID, and whether the month's figures "
            "changed after sending. User and admin tokens only: an admin token sees its organisation's deliveries, "
            "a user token those of its user's teams (and the roll-up where the user is an organisation admin). "
            "Ordered by team, recipient and revision; at most "
            f"{DELIVERIES_MAX_ROWS} rows (`truncated`). Rule beyond the schema (400 naming the field): `team` a team "
            "the token sees."
        ),
        parameters=[
            schema.REPORT_MONTH_PARAM,
            OpenApiParameter("team", str, description="A team slug."),
            OpenApiParameter("status", str, enum=list(ReportDelivery.Status.values), description="A status."),
        ],
        responses={
            200: OpenApiResponse(ReportDeliveryListSerializer, description="The month's deliveries"),
            **schema.ERRORS,
            **schema.REPORT_NOT_FOUND,
        },
        tags=["reports"],
    )
    def get(self, request, month: str):
        start = self.month_of(month)
        query = validated(ReportDeliveryQuerySerializer, self.request.query_params.dict())
        principal = self.principal()
        team_id = None
        if "team" in query:
            teams = list(teams_visible(principal=principal).filter(slug=query["team"]).values_list("pk", flat=True))
            if len(teams) != 1:
                raise field_error("team", "No such team visible to this token.")
            (team_id,) = teams
        rows = report_delivery_list(
            scope=principal, month=start, team_id=team_id, status=query.get("status"), limit=DELIVERIES_MAX_ROWS + 1
        )
        truncated = len(rows) > DELIVERIES_MAX_ROWS
        rows = rows[:DELIVERIES_MAX_ROWS]
        # "Revised after sending" is judged against each recipient's latest revision, whatever
        # the status filter kept.
        every = rows if "status" not in query else report_delivery_list(scope=principal, month=start, team_id=team_id)
        latest = latest_delivery_ids(every)
        body = {
            "month": f"{start:%Y-%m}",
            "count": len(rows),
            "truncated": truncated,
            "results": [_delivery_json(r, latest=latest) for r in rows],
        }
        return Response(ReportDeliveryListSerializer(body).data)
