"""Ingest endpoint for agent batches (thin: parse, authorise, call the service)."""

from __future__ import annotations

import json

import orjson
from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.permissions import BasePermission
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from accounting.api.auth import ApiTokenAuthentication, authenticated_token, request_token, token_expiry_headers
from accounting.api.errors import problem_response
from accounting.api.serializers import ProblemSerializer
from accounting.models import ApiToken
from telemetry.api.ingest_schema import INGEST_BATCH
from telemetry.parsing import BatchError, decompress
from telemetry.services import batch_ingest
from telemetry.wire_v2 import parse_any

_READ_CHUNK_BYTES = 64 * 1024
PROBLEM = "application/problem+json"


def _read_body(request, *, max_bytes: int) -> bytes:
    """The raw body, never more than max_bytes of it held.

    A chunked body (Transfer-Encoding: chunked) has no Content-Length, and Django's WSGI request
    then reads nothing. A server that decodes the chunks itself says so with
    ``wsgi.input_terminated`` (gunicorn does): its input ends with the body and is read to the
    end here. Without that flag, reading past a missing length could block on the socket."""
    meta = request.META
    if meta.get("CONTENT_LENGTH") or not meta.get("wsgi.input_terminated"):
        return request.body
    stream = meta["wsgi.input"]
    chunks: list[bytes] = []
    size = 0
    while chunk := stream.read(min(_READ_CHUNK_BYTES, max_bytes + 1 - size)):
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            raise BatchError(413, "body", f"body exceeds {max_bytes} bytes")
    return b"".join(chunks)


def _loads(raw: bytes):
    """orjson on the hot path; the standard library for what orjson refuses, so NaN/Infinity
    literals reach the parser (which names the field) and other errors read the same as ever."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(raw)
    except RecursionError:
        # orjson stops at 1024 levels, the standard library at the interpreter's recursion limit;
        # a well-formed batch is 7 levels deep.
        raise BatchError(400, "body", "JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BatchError(400, "body", f"not valid JSON: {exc}") from exc


class IsHostToken(BasePermission):
    message = "Only host tokens may post telemetry."

    def has_permission(self, request, view) -> bool:
        token = request_token(request)
        return token is not None and token.scope == ApiToken.Scope.HOST


class JsonAlways(BaseContentNegotiation):
    """The agents' endpoint answers JSON (problem details included) whatever the Accept header
    says: no browsable API, and no negotiation on each of the many small POSTs of a fleet."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class IngestAckSerializer(serializers.Serializer):
    batch_id = serializers.UUIDField()
    accepted_windows = serializers.IntegerField()
    duplicate = serializers.BooleanField()


class BatchIngestView(APIView):
    authentication_classes = [ApiTokenAuthentication]
    permission_classes = [IsHostToken]
    parser_classes: list = []  # the body is read raw: it may be gzip
    renderer_classes = [JSONRenderer]
    content_negotiation_class = JsonAlways
    # No throttle: a host token posts only its own host's batches, which the seq and overlap
    # checks keep to one stream (the cost of a POST: docs/performance.md).
    throttle_classes: list = []

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        for name, value in token_expiry_headers(authenticated_token(request)).items():  # the agent logs the warning
            response[name] = value
        return response

    @extend_schema(
        summary="Post a batch of telemetry windows (agent)",
        description='See docs/wire-format.md. Wire format v1 (one object per window) or v2 (`"format": 2`: '
        "columns, one set per batch and one per GPU). Body may be gzip (Content-Encoding: gzip). A re-sent batch_id "
        "is acknowledged with duplicate=true and changes nothing.",
        request={"application/json": INGEST_BATCH},
        responses={
            202: IngestAckSerializer,
            200: OpenApiResponse(IngestAckSerializer, description="Duplicate batch: already stored"),
            (400, PROBLEM): OpenApiResponse(ProblemSerializer, description="Invalid batch; names the field"),
            (401, PROBLEM): OpenApiResponse(ProblemSerializer, description="Missing, invalid or revoked token."),
            (403, PROBLEM): OpenApiResponse(ProblemSerializer, description="Not a host token."),
            (409, PROBLEM): OpenApiResponse(ProblemSerializer, description="Windows overlap stored telemetry"),
            (413, PROBLEM): OpenApiResponse(ProblemSerializer, description="Body too large (after decompression)"),
            (503, PROBLEM): OpenApiResponse(
                ProblemSerializer, description="The database is unavailable; `Retry-After` says when to retry."
            ),
        },
        examples=[
            OpenApiExample(
                "ack",
                value={"batch_id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "accepted_windows": 80, "duplicate": False},
                response_only=True,
            )
        ],
    )
    def post(self, request):
        max_bytes = settings.INGEST_MAX_BODY_BYTES
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        try:
            if declared > max_bytes:
                raise BatchError(413, "body", f"body exceeds {max_bytes} bytes")
            raw = decompress(
                body=_read_body(request, max_bytes=max_bytes),
                encoding=request.META.get("HTTP_CONTENT_ENCODING", ""),
                max_bytes=max_bytes,
            )
            data = _loads(raw)
            now = timezone.now()
            batch = parse_any(
                data=data,
                now=now,
                clock_skew_s=settings.INGEST_CLOCK_SKEW_S,
                retention_days=settings.TELEMETRY_RETENTION_DAYS,
                max_windows=settings.INGEST_MAX_WINDOWS_PER_BATCH,
            )
            result = batch_ingest(token=request.auth, batch=batch, now=now)
        except BatchError as exc:
            return problem_response(
                status_code=exc.status,
                title="Batch rejected",
                detail=f"{exc.field}: {exc.message}",
                errors=[{"field": exc.field, "message": exc.message}],
            )
        body = {"batch_id": result.batch_id, "accepted_windows": result.accepted_windows, "duplicate": result.duplicate}
        return Response(body, status=status.HTTP_200_OK if result.duplicate else status.HTTP_202_ACCEPTED)
