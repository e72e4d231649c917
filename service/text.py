"""What text and times a client may send: the characters refused in text, and RFC 3339
timestamps with an offset. Shared by the request models and the cursor decoder."""

from __future__ import annotations

import re
from datetime import UTC, datetime

# Text a client sends is stored, shown to officers and printed on terminals, so it may not
# carry characters that PostgreSQL cannot store (U+0000, unpaired surrogates) or that change
# how the text around them is shown: C0 and C1 controls (escape sequences, bell, backspace,
# carriage return), DEL, line and paragraph separators, and bidirectional formatting (embeddings,
# overrides, isolates and marks). Free text (addresses, notes, reasons) keeps newline and tab.
# openapi.yaml carries the same rules as the `pattern`s below (ECMA-262, as JSON Schema reads
# them); a test holds the two together.
_FORMATTING = "\\u061C\\u200E\\u200F\\u2028-\\u202E\\u2066-\\u2069"
_ALWAYS_REFUSED = "\\x00-\\x08\\x0B-\\x1F\\x7F-\\x9F" + _FORMATTING
_LINE_REFUSED = "\\x00-\\x1F\\x7F-\\x9F" + _FORMATTING
# Unpaired surrogates are no Unicode characters at all, so JSON Schema patterns cannot name
# them (regex engines refuse the range); the service refuses them all the same.
_SURROGATES = "\\uD800-\\uDFFF"
# What str.strip() removes among the characters that remain allowed: text of these alone is blank.
_BLANK = " \\u00A0\\u1680\\u2000-\\u200A\\u202F\\u205F\\u3000"
_BLANK_TEXT = "\\x09\\x0A" + _BLANK
SINGLE_LINE_PATTERN = f"^[{_BLANK}]*[^{_LINE_REFUSED}{_BLANK}][^{_LINE_REFUSED}]*$"
FREE_TEXT_PATTERN = f"^[{_BLANK_TEXT}]*[^{_ALWAYS_REFUSED}{_BLANK_TEXT}][^{_ALWAYS_REFUSED}]*$"
OPTIONAL_TEXT_PATTERN = f"^[^{_ALWAYS_REFUSED}]*$"
_REFUSED_IN_LINE = re.compile(f"[{_LINE_REFUSED}{_SURROGATES}]")
_REFUSED_IN_TEXT = re.compile(f"[{_ALWAYS_REFUSED}{_SURROGATES}]")


def refused_character(value: str, *, free_text: bool = False) -> str | None:
    """The first character text may not hold, as U+XXXX; None when there is none."""
    found = (_REFUSED_IN_TEXT if free_text else _REFUSED_IN_LINE).search(value)
    return None if found is None else f"U+{ord(found.group()):04X}"


_RFC3339 = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
_NAIVE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?$")


def parse_timestamp(value: object) -> datetime:
    """RFC 3339 with an explicit offset, as a UTC datetime within years 1 to 9999."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("timestamp must include a UTC offset")
        moment = value
    elif not isinstance(value, str):
        raise ValueError("must be an RFC 3339 timestamp string")
    elif not _RFC3339.match(value):
        if _NAIVE.match(value):
            raise ValueError(
                "timestamp must include a UTC offset, e.g. 2026-11-23T03:00:00Z or +01:00"
            )
        raise ValueError("must be an RFC 3339 timestamp such as 2026-11-23T03:00:00Z")
    else:
        # Python < 3.11 style fractional seconds beyond microseconds are trimmed to 6 digits.
        text = re.sub(r"(\.[0-9]{6})[0-9]+", r"\1", value).replace("z", "Z").replace("t", "T")
        try:
            moment = datetime.fromisoformat(text)
        except ValueError as exc:
            raise ValueError(f"not a valid date or time: {exc}") from None
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        # 9999-12-31T23:59:59-01:00 is in year 10000 in UTC; 0001-01-01T00:00:00+01:00 in year 0.
        raise ValueError("must fall within years 1 to 9999 in UTC") from None
