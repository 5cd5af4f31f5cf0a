"""config/gunicorn_logging.py writes gunicorn's access lines byte for byte, at a fraction of the
cost, and leaves custom formats to gunicorn; config/gunicorn.conf.py uses it."""

from __future__ import annotations

import datetime as dt
import logging
import runpy
from pathlib import Path
from types import SimpleNamespace

import pytest
from gunicorn import glogging
from gunicorn.config import Config

from config.gunicorn_logging import DEFAULT_ACCESS_LOG_FORMAT, Logger

ROOT = Path(__file__).resolve().parents[2]


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _logger(cls, access_log_format: str | None = None):
    cfg = Config()
    cfg.set("accesslog", "-")
    if access_log_format is not None:
        cfg.set("access_log_format", access_log_format)
    logger = cls(cfg)
    logger.now = lambda: "[08/Dec/2026:00:30:00 +0000]"
    handler = _Lines()
    logger.access_log.handlers = [handler]
    logger.access_log.propagate = False
    return logger, handler


def _request(**environ_overrides):
    environ = {
        "REMOTE_ADDR": "10.1.2.3",
        "REQUEST_METHOD": "POST",
        "RAW_URI": "/api/v1/ingest/batches?x=1",
        "PATH_INFO": "/api/v1/ingest/batches",
        "QUERY_STRING": "x=1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_USER_AGENT": 'carbonledger-agent/1.4 "edge"',
        "HTTP_AUTHORIZATION": "Bearer clk_secret",
        **environ_overrides,
    }
    resp = SimpleNamespace(status="202 Accepted", sent=71, headers=[("Content-Type", "application/json")])
    req = SimpleNamespace(headers=[("HOST", "127.0.0.1"), ("USER-AGENT", environ["HTTP_USER_AGENT"])])
    return resp, req, environ, dt.timedelta(microseconds=2345)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"HTTP_REFERER": 'https://example.com/"x"', "HTTP_AUTHORIZATION": "Basic dXNlcjpwYXNz"},
        {"REMOTE_ADDR": "::1", "HTTP_USER_AGENT": "-"},
    ],
)
def test_the_access_line_is_gunicorns_own(overrides):
    lines = []
    for cls in (Logger, glogging.Logger):  # one at a time: both write to the "gunicorn.access" logger
        logger, handler = _logger(cls)
        logger.access(*_request(**overrides))
        lines.append(handler.lines)
    ours, theirs = lines
    assert ours == theirs
    assert len(ours) == 1


def test_the_line_of_the_agents_post():
    ours, handler = _logger(Logger)
    ours.access(*_request())
    assert handler.lines == [
        '10.1.2.3 - - [08/Dec/2026:00:30:00 +0000] "POST /api/v1/ingest/batches?x=1 HTTP/1.1" 202 71 "-" '
        '"carbonledger-agent/1.4 \\"edge\\""'
    ]


def test_a_custom_format_is_left_to_gunicorn():
    ours, handler = _logger(Logger, "%(s)s %(D)s %({content-type}o)s")
    ours.access(*_request())
    assert handler.lines == ["202 2345 application/json"]


def test_no_access_log_writes_nothing():
    cfg = Config()
    logger = Logger(cfg)
    handler = _Lines()
    logger.access_log.handlers = [handler]
    logger.access(*_request())
    assert handler.lines == []


def test_the_config_file_uses_this_logger():
    settings = runpy.run_path(str(ROOT / "config" / "gunicorn.conf.py"))
    assert settings["logger_class"] == "config.gunicorn_logging.Logger"
    assert DEFAULT_ACCESS_LOG_FORMAT == Config().access_log_format
