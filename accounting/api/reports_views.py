"""The monthly report through the API: ``/api/v1/reports/{YYYY-MM}/`` (the figures as JSON, with
the three recommendations) and its files ``report.html``, ``report.pdf``, ``jobs.csv`` (the
dashboard's job export columns) and ``ledger.parquet`` (the month's job-hours, the exports
selector's Parquet). Any read scope; the token's principal decides what the report covers, as
everywhere (``accounting.selectors.access``): ``team`` (a slug the token sees) narrows it to one
team, without it a report covers everything the token sees (an organisation admin: the roll-up
with the fleet overhead). Figures and content: docs/reports.md."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

from django.http import HttpResponse, StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response

from accounting.api import schema
from accounting.api.base import ApiView, field_error
from accounting.api.exports_views import CsvRenderer, ParquetRenderer
from accounting.api.serializers import validated
from accounting.reports.render import report_html, report_json, report_pdf
from accounting.selectors.access import teams_visible
from accounting.selectors.exports import export_page, export_parquet_stream
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
