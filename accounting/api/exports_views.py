"""Bulk exports of the ledger (``accounting.selectors.exports``): ``/api/v1/exports/job-hours.csv``,
``job-hours.parquet``, ``jobs.csv``, ``jobs.parquet``. Any read scope (a dashboard session too);
each principal gets the rows the access rule lets it see, ``team`` narrows to one of its teams.
Streamed; paged by time: ``from``/``to`` bound the rows, ``limit`` caps a page, and a page that
stops short says where the next starts (``X-Next-Cursor`` and a ``Link: <...>; rel="next"``
header with the same query and ``cursor``). Columns and units: docs/exports.md."""

from __future__ import annotations

import datetime as dt

from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.renderers import BaseRenderer, JSONRenderer

from accounting.api.base import ApiView, field_error
from accounting.api.schema import ERRORS
from accounting.api.serializers import AwareDateTimeField, validated
from accounting.selectors.access import teams_visible
from accounting.selectors.exports import (
    CursorInvalid,
    export_csv_stream,
    export_page,
    export_parquet_stream,
)

DEFAULT_DAYS = 7
DEFAULT_LIMIT = 100_000
MAX_LIMIT = 1_000_000
PARQUET = "application/vnd.apache.parquet"
CSV = "text/csv"

ExportQuerySerializer = type(
    "ExportQuerySerializer",
    (serializers.Serializer,),
    {
        "from": AwareDateTimeField(
            required=False, help_text=f"Rows at or after this (default: `to` - {DEFAULT_DAYS} days)."
        ),
        "to": AwareDateTimeField(required=False, help_text="Rows before this (default: now). After `from`."),
        "team": serializers.SlugField(required=False, help_text="Only this team's jobs: a team the token sees."),
        "cursor": serializers.CharField(
            required=False, max_length=200, help_text="Where this page starts: `X-Next-Cursor` of the previous page."
        ),
        "limit": serializers.IntegerField(
            required=False, min_value=1, max_value=MAX_LIMIT, help_text=f"Rows per page (default {DEFAULT_LIMIT})."
        ),
    },
)


class _FileRenderer(BaseRenderer):
    """The export's own media type; an error's problem details stay JSON whatever was accepted."""

    charset = None

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return JSONRenderer().render(data)


class CsvRenderer(_FileRenderer):
    media_type = CSV
    format = "csv"


class ParquetRenderer(_FileRenderer):
    media_type = PARQUET
    format = "parquet"


def _schema(dataset: str, fmt: str) -> dict:
    media = CSV if fmt == "csv" else PARQUET
    what = "one row per job and UTC hour" if dataset == "job-hours" else "one row per job (by start time)"
    return dict(
        operation_id=f"export_{dataset.replace('-', '_')}_{fmt}",
        summary=f"Export the ledger as {fmt.upper()}: {what}",
        description=(
            f"Streamed {fmt.upper()} of the rows of [`from`, `to`) this token sees, in time order, at most `limit`. "
            'When more rows follow, `X-Next-Cursor` (and `Link: <...>; rel="next"`) gives the next page. '
            "Columns, types and units: docs/exports.md. Rules beyond the schema (400 naming the field): `to` after "
            "`from`; `team` a team the token sees; `cursor` one this export returned."
        ),
        parameters=[
            ExportQuerySerializer,
            OpenApiParameter(
                "X-Next-Cursor",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                response=[200],
                description="The next page's `cursor`; absent on the last page.",
            ),
        ],
        responses={(200, media): OpenApiResponse(OpenApiTypes.BINARY, description=f"The {fmt.upper()} file"), **ERRORS},
        tags=["exports"],
    )


class _ExportView(ApiView):
    dataset = ""
    fmt = ""

    def perform_content_negotiation(self, request, force=False):
        # A file whatever the Accept header says (browsers send text/html): never a 406.
        return super().perform_content_negotiation(request, force=True)

    def get(self, request):
        query = validated(ExportQuerySerializer, request.query_params.dict())
        end = query.get("to") or timezone.now()
        start = query.get("from") or end - dt.timedelta(days=DEFAULT_DAYS)
        if end <= start:
            raise field_error("to", "Must be after `from`.")
        principal = self.principal()
        team_ids = None
        if "team" in query:
            team = teams_visible(principal=principal).filter(slug=query["team"]).values_list("pk", flat=True)
            team_ids = list(team)
            if not team_ids:
                raise field_error("team", "No such team visible to this token.")
        try:
            page = export_page(
                principal=principal,
                dataset=self.dataset,
                start=start,
                end=end,
                team_ids=team_ids,
                cursor=query.get("cursor"),
                limit=query.get("limit", DEFAULT_LIMIT),
            )
        except CursorInvalid as exc:
            raise field_error("cursor", str(exc))
        stream = export_csv_stream(page) if self.fmt == "csv" else export_parquet_stream(page)
        media = "text/csv; charset=utf-8" if self.fmt == "csv" else PARQUET
        response = StreamingHttpResponse(stream, content_type=media)
        stamp = f"{start:%Y%m%dT%H%M}-{end:%Y%m%dT%H%M}"
        response["Content-Disposition"] = f'attachment; filename="carbonledger-{self.dataset}-{stamp}.{self.fmt}"'
        if page.next_cursor is not None:
            params = request.query_params.copy()
            params["cursor"] = page.next_cursor
            params["from"], params["to"] = start.isoformat(), end.isoformat()
            response["X-Next-Cursor"] = page.next_cursor
            response["Link"] = f'<{request.build_absolute_uri(request.path)}?{params.urlencode()}>; rel="next"'
        return response


def _view(dataset: str, fmt: str) -> type[_ExportView]:
    renderer = CsvRenderer if fmt == "csv" else ParquetRenderer

    def get(self, request):  # its own function: extend_schema annotates the function object
        return _ExportView.get(self, request)

    attrs = {
        "dataset": dataset,
        "fmt": fmt,
        "renderer_classes": [renderer],
        "get": extend_schema(**_schema(dataset, fmt))(get),
    }
    return type(f"Export{dataset.title().replace('-', '')}{fmt.title()}View", (_ExportView,), attrs)


JobHoursCsvView = _view("job-hours", "csv")
JobHoursParquetView = _view("job-hours", "parquet")
JobsCsvView = _view("jobs", "csv")
JobsParquetView = _view("jobs", "parquet")
