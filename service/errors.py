"""Problems the service reports to callers (RFC 9457), raised anywhere, rendered by one middleware.

Nothing here imports aiohttp: domain code raises these, `middlewares.py` turns them into
`application/problem+json` responses.
"""

from __future__ import annotations

from typing import Any

PROBLEM_BASE = "urn:places-of-safety:problem:"


class Problem(Exception):
    """A 4xx (or 503) answer with a stable machine-readable `type` slug."""

    status: int = 400
    slug: str = "bad-request"
    title: str = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        slug: str | None = None,
        title: str | None = None,
        status: int | None = None,
        errors: list[dict[str, str]] | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if slug is not None:
            self.slug = slug
        if title is not None:
            self.title = title
        if status is not None:
            self.status = status
        self.errors = errors
        self.extra = extra or {}
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors is not None:
            body["errors"] = self.errors
        body.update(self.extra)
        return body


class ValidationProblem(Problem):
    status = 400
    slug = "validation-error"
    title = "The request is not valid"


class Unauthorized(Problem):
    status = 401
    slug = "unauthorized"
    title = "Missing or invalid API key"


class Forbidden(Problem):
    status = 403
    slug = "forbidden"
    title = "Your role may not do this"


class NotFound(Problem):
    status = 404
    slug = "not-found"
    title = "Not found"


class Conflict(Problem):
    status = 409
    slug = "conflict"
    title = "Conflict with the current state"


class PreconditionFailed(Problem):
    status = 412
    slug = "precondition-failed"
    title = "The resource has changed"


class UnsupportedMediaType(Problem):
    status = 415
    slug = "unsupported-media-type"
    title = "Unsupported media type"


class Unprocessable(Problem):
    status = 422
    slug = "unprocessable"
    title = "The request cannot be carried out"


class Unavailable(Problem):
    status = 503
    slug = "unavailable"
    title = "Service unavailable"
