"""A typed async client for the Places of Safety API, for force and provider systems.

One method per `/v1` operation of openapi.yaml, named as its `operationId` in snake_case
(`createBooking` is `create_booking`), taking and returning the models of service.models.
A `problem+json` answer is raised as `ApiError` (a subclass per status; `.slug` names the
problem). Every POST carries an `Idempotency-Key` (a fresh one per call unless you pass your
own), and a call that meets a dropped connection, a timeout or a 503 is sent again with the
SAME key, so a retried hold never holds twice: the service replays the first answer.

    async with Client("https://pos.example", api_key) as client:
        booking = await client.create_booking(BookingIn(...))
        async for event in client.events(after=saved_cursor):
            ...

This module imports nothing of the server but service.models and service.vocab (an
import-linter contract holds it to that), so it can be copied or vendored on its own with them.
"""

from __future__ import annotations

import asyncio
import binascii
import json
import secrets
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self, TypeVar
from uuid import UUID, uuid4

import aiohttp
from pydantic import BaseModel
from standardwebhooks.webhooks import Webhook as _Signer
from standardwebhooks.webhooks import WebhookVerificationError

from service.models import (
    ActionIn,
    AlertOut,
    AlertQuery,
    ApiKeyCreated,
    ApiKeyIn,
    ApiKeyOut,
    AuditEntry,
    AuditQuery,
    AvailabilityOut,
    AvailabilityQuery,
    BedIn,
    BedOut,
    BedPatch,
    BlockIn,
    BlockListQuery,
    BlockOut,
    BookingIn,
    BookingListQuery,
    BookingOut,
    CancelIn,
    DeclineIn,
    Delivery,
    Event,
    EventPage,
    ExtendIn,
    FeedbackIn,
    ForceIn,
    ForceOut,
    NoShowIn,
    Occupancy,
    Page,
    ProviderIn,
    ProviderOut,
    ReportQuery,
    ReportSummary,
    SiteIn,
    SiteOut,
    SitePatch,
    Webhook,
    WebhookCreated,
    WebhookIn,
    WindowQuery,
)
from service.vocab import EventType

__all__ = [
    "OPERATIONS",
    "ApiError",
    "BadRequestError",
    "Client",
    "ConflictError",
    "EventStream",
    "ForbiddenError",
    "NotFoundError",
    "PreconditionFailedError",
    "RateLimitedError",
    "Retry",
    "UnauthorizedError",
    "UnavailableError",
    "UnprocessableError",
    "WebhookVerificationError",
    "verify_webhook",
]

# Each /v1 operation the client calls: operationId -> (method, path template), as openapi.yaml
# says (tests/unit/test_operation_ids.py holds the two together).
OPERATIONS: Final[dict[str, tuple[str, str]]] = {
    "listForces": ("GET", "/v1/forces"),
    "createForce": ("POST", "/v1/forces"),
    "listProviders": ("GET", "/v1/providers"),
    "createProvider": ("POST", "/v1/providers"),
    "getProvider": ("GET", "/v1/providers/{provider_id}"),
    "listApiKeys": ("GET", "/v1/api-keys"),
    "createApiKey": ("POST", "/v1/api-keys"),
    "revokeApiKey": ("DELETE", "/v1/api-keys/{key_id}"),
    "listAudit": ("GET", "/v1/audit"),
    "listAlerts": ("GET", "/v1/alerts"),
    "getReportSummary": ("GET", "/v1/reports/summary"),
    "listSites": ("GET", "/v1/sites"),
    "createSite": ("POST", "/v1/sites"),
    "getSite": ("GET", "/v1/sites/{site_id}"),
    "updateSite": ("PATCH", "/v1/sites/{site_id}"),
    "confirmCapacity": ("POST", "/v1/sites/{site_id}/confirm-capacity"),
    "listBeds": ("GET", "/v1/sites/{site_id}/beds"),
    "createBed": ("POST", "/v1/sites/{site_id}/beds"),
    "updateBed": ("PATCH", "/v1/sites/{site_id}/beds/{bed_id}"),
    "deleteBed": ("DELETE", "/v1/sites/{site_id}/beds/{bed_id}"),
    "listBlocks": ("GET", "/v1/sites/{site_id}/blocks"),
    "createBlock": ("POST", "/v1/sites/{site_id}/blocks"),
    "deleteBlock": ("DELETE", "/v1/sites/{site_id}/blocks/{block_id}"),
    "getOccupancy": ("GET", "/v1/sites/{site_id}/occupancy"),
    "searchAvailability": ("GET", "/v1/availability"),
    "listBookings": ("GET", "/v1/bookings"),
    "createBooking": ("POST", "/v1/bookings"),
    "getBooking": ("GET", "/v1/bookings/{booking_id}"),
    "confirmBooking": ("POST", "/v1/bookings/{booking_id}/confirm"),
    "acceptBooking": ("POST", "/v1/bookings/{booking_id}/accept"),
    "declineBooking": ("POST", "/v1/bookings/{booking_id}/decline"),
    "cancelBooking": ("POST", "/v1/bookings/{booking_id}/cancel"),
    "checkInBooking": ("POST", "/v1/bookings/{booking_id}/check-in"),
    "checkOutBooking": ("POST", "/v1/bookings/{booking_id}/check-out"),
    "noShowBooking": ("POST", "/v1/bookings/{booking_id}/no-show"),
    "createFeedback": ("POST", "/v1/bookings/{booking_id}/feedback"),
    "extendBooking": ("POST", "/v1/bookings/{booking_id}/extend"),
    "listEvents": ("GET", "/v1/events"),
    "createWebhook": ("POST", "/v1/webhooks"),
    "listWebhooks": ("GET", "/v1/webhooks"),
    "getWebhook": ("GET", "/v1/webhooks/{webhook_id}"),
    "deleteWebhook": ("DELETE", "/v1/webhooks/{webhook_id}"),
    "listWebhookDeliveries": ("GET", "/v1/webhooks/{webhook_id}/deliveries"),
}

PROBLEM_BASE = "urn:places-of-safety:problem:"

M = TypeVar("M", bound=BaseModel)
Id = UUID | str


# --- errors -------------------------------------------------------------------------------------


class ApiError(Exception):
    """An answer of 400 or more; for the service's own answers, its problem+json fields."""

    def __init__(
        self,
        status: int,
        type: str,  # the RFC 9457 member's name
        title: str,
        detail: str | None,
        errors: list[dict[str, Any]] | None,
        body: Any,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.errors = errors
        self.body = body
        self.headers: Mapping[str, str] = headers or {}
        super().__init__(f"{status} {self.slug}: {detail or title}")

    @property
    def slug(self) -> str:
        """The problem type's last part (`no-capacity`, `validation-error`, ...)."""
        return self.type.removeprefix(PROBLEM_BASE)

    @property
    def retry_after(self) -> float | None:
        value = self.headers.get("Retry-After")
        try:
            return None if value is None else max(0.0, float(value))
        except ValueError:
            return None


class BadRequestError(ApiError):
    """400: the request is malformed or breaks a rule (`errors` names the fields)."""


class UnauthorizedError(ApiError):
    """401: no key, or an unknown or revoked one."""


class ForbiddenError(ApiError):
    """403: your role may not do this."""


class NotFoundError(ApiError):
    """404: no such object in your scope."""


class ConflictError(ApiError):
    """409: the current state refuses it (`no-capacity`, a wrong-state action, ...)."""


class PreconditionFailedError(ApiError):
    """412: a stale If-Match."""


class UnprocessableError(ApiError):
    """422: e.g. an Idempotency-Key reused with another request."""


class RateLimitedError(ApiError):
    """429: slow down (`retry_after` seconds), or a cap of live holds reached."""


class UnavailableError(ApiError):
    """503: the service cannot answer now; retried by the client before it reaches you."""


_BY_STATUS: Final[dict[int, type[ApiError]]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    412: PreconditionFailedError,
    422: UnprocessableError,
    429: RateLimitedError,
    503: UnavailableError,
}


def _error(status: int, reason: str, headers: Mapping[str, str], raw: bytes) -> ApiError:
    cls = _BY_STATUS.get(status, ApiError)
    try:
        body: Any = json.loads(raw) if raw else None
    except ValueError:
        body = raw.decode(errors="replace")
    if isinstance(body, dict):
        errors = body.get("errors")
        return cls(
            status,
            str(body.get("type", "about:blank")),
            str(body.get("title", reason)),
            None if body.get("detail") is None else str(body["detail"]),
            errors if isinstance(errors, list) else None,
            body,
            headers=headers,
        )
    # Not the service's own answer (a proxy's page, say).
    return cls(status, "about:blank", reason, None, None, body, headers=headers)


# --- retries ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Retry:
    """How often a call is sent again after a dropped connection, a timeout, a 503 or a 409
    `idempotency-in-flight`, and how long it waits between tries (doubling, with jitter, and
    at least the answer's Retry-After). GETs and POSTs are retried (every POST carries an
    Idempotency-Key that stays the same on every try); PATCH and DELETE are sent once.
    `Retry(attempts=1)` turns retries off."""

    attempts: int = 4
    base_seconds: float = 0.25
    max_seconds: float = 8.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        backoff = min(self.max_seconds, self.base_seconds * 2.0 ** (attempt - 1))
        wait = backoff * secrets.SystemRandom().uniform(0.5, 1.0)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_seconds))
        return wait


_RETRIED_METHODS = frozenset({"GET", "POST"})


def _transient(error: ApiError) -> bool:
    return error.status == 503 or error.slug == "idempotency-in-flight"


# --- the client ---------------------------------------------------------------------------------


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(_param(v) for v in value)
    return str(value)


def _query(model: BaseModel | None = None, **extra: Any) -> dict[str, str]:
    """Query parameters: the fields a query model was given, then `extra` (None left out)."""
    values: dict[str, Any] = {}
    if model is not None:
        values.update(model.model_dump(mode="json", exclude_unset=True))
    values.update(extra)
    return {name: _param(value) for name, value in values.items() if value is not None}


def _if_match(version: int | str | None) -> dict[str, str]:
    if version is None:
        return {}
    tag = str(version)
    return {"If-Match": tag if tag.startswith(('"', "W/")) or tag == "*" else f'"{tag}"'}


class Client:
    """The API over one aiohttp session; use as `async with Client(base_url, api_key) as c`."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        retry: Retry | None = None,
        session: aiohttp.ClientSession | None = None,
        user_agent: str = "places-of-safety-client/1",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry = retry or Retry()
        self._timeout = timeout
        self._headers = {"Accept": "application/json", "User-Agent": user_agent}
        if api_key is not None:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._session = session
        self._owns_session = session is None

    async def __aenter__(self) -> Self:
        self._ensure_session()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
            self._session = None

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        return self._session

    async def _call(
        self,
        operation: str,
        *,
        path: Mapping[str, Id] | None = None,
        query: Mapping[str, str] | None = None,
        body: BaseModel | None = None,
        headers: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        wait: float = 0.0,
    ) -> bytes | None:
        """Send one operation (again, on a transient failure, as `self.retry` allows);
        the answer's body, None for 204; an ApiError for 400 and above."""
        method, template = OPERATIONS[operation]
        url = self.base_url + template.format(**{k: str(v) for k, v in (path or {}).items()})
        sent = {**self._headers, **(headers or {})}
        data = None
        if body is not None:
            # Only the fields given: an absent field and an explicit null differ (PATCH).
            data = body.model_dump_json(exclude_unset=True).encode()
            sent["Content-Type"] = "application/json"
        if method == "POST":
            # One key for every try of this call: a retry replays, it never acts twice.
            sent["Idempotency-Key"] = idempotency_key or str(uuid4())
        timeout = aiohttp.ClientTimeout(total=self._timeout + wait)
        attempts = self.retry.attempts if method in _RETRIED_METHODS else 1
        session = self._ensure_session()
        for attempt in range(1, attempts + 1):
            try:
                async with session.request(
                    method, url, params=query, data=data, headers=sent, timeout=timeout
                ) as resp:
                    raw = await resp.read()
                    status, reason, answer = resp.status, resp.reason or "", resp.headers
            except (aiohttp.ClientConnectionError, TimeoutError):
                if attempt == attempts:
                    raise
                await asyncio.sleep(self.retry.delay(attempt))
                continue
            if status < 400:
                return None if status == 204 else raw
            error = _error(status, reason, answer, raw)
            if attempt == attempts or not _transient(error):
                raise error
            await asyncio.sleep(self.retry.delay(attempt, error.retry_after))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _model(self, model: type[M], operation: str, **kw: Any) -> M:
        raw = await self._call(operation, **kw)
        return model.model_validate_json(raw or b"")

    # --- reference data -------------------------------------------------------------------

    async def list_forces(
        self, *, cursor: str | None = None, limit: int | None = None
    ) -> Page[ForceOut]:
        query = _query(cursor=cursor, limit=limit)
        return await self._model(Page[ForceOut], "listForces", query=query)

    async def create_force(self, body: ForceIn, *, idempotency_key: str | None = None) -> ForceOut:
        return await self._model(
            ForceOut, "createForce", body=body, idempotency_key=idempotency_key
        )

    async def list_providers(
        self, *, cursor: str | None = None, limit: int | None = None
    ) -> Page[ProviderOut]:
        query = _query(cursor=cursor, limit=limit)
        return await self._model(Page[ProviderOut], "listProviders", query=query)

    async def create_provider(
        self, body: ProviderIn, *, idempotency_key: str | None = None
    ) -> ProviderOut:
        return await self._model(
            ProviderOut, "createProvider", body=body, idempotency_key=idempotency_key
        )

    async def get_provider(self, provider_id: Id) -> ProviderOut:
        return await self._model(ProviderOut, "getProvider", path={"provider_id": provider_id})

    # --- API keys and the audit log -------------------------------------------------------

    async def list_api_keys(
        self, *, cursor: str | None = None, limit: int | None = None
    ) -> Page[ApiKeyOut]:
        query = _query(cursor=cursor, limit=limit)
        return await self._model(Page[ApiKeyOut], "listApiKeys", query=query)

    async def create_api_key(
        self, body: ApiKeyIn, *, idempotency_key: str | None = None
    ) -> ApiKeyCreated:
        """The new key's secret is in `.key`, shown this once (a replay shows None)."""
        return await self._model(
            ApiKeyCreated, "createApiKey", body=body, idempotency_key=idempotency_key
        )

    async def revoke_api_key(self, key_id: Id) -> None:
        await self._call("revokeApiKey", path={"key_id": key_id})

    async def list_audit(
        self,
        query: AuditQuery | None = None,
        *,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> Page[AuditEntry]:
        params = _query(query, cursor=cursor, limit=limit)
        return await self._model(Page[AuditEntry], "listAudit", query=params)

    async def list_alerts(
        self,
        query: AlertQuery | None = None,
        *,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> Page[AlertOut]:
        """Security alerts (admins): a key, its force and what happened."""
        params = _query(query, cursor=cursor, limit=limit)
        return await self._model(Page[AlertOut], "listAlerts", query=params)

    # --- reports ----------------------------------------------------------------------------

    async def get_report_summary(self, query: ReportQuery) -> ReportSummary:
        """The summary report as JSON (for CSV, ask the API with `Accept: text/csv`)."""
        return await self._model(ReportSummary, "getReportSummary", query=_query(query))

    # --- sites, beds, blocks --------------------------------------------------------------

    async def list_sites(
        self, *, cursor: str | None = None, limit: int | None = None
    ) -> Page[SiteOut]:
        query = _query(cursor=cursor, limit=limit)
        return await self._model(Page[SiteOut], "listSites", query=query)

    async def create_site(self, body: SiteIn, *, idempotency_key: str | None = None) -> SiteOut:
        return await self._model(SiteOut, "createSite", body=body, idempotency_key=idempotency_key)

    async def get_site(self, site_id: Id) -> SiteOut:
        return await self._model(SiteOut, "getSite", path={"site_id": site_id})

    async def update_site(
        self, site_id: Id, body: SitePatch, *, if_match: int | str | None = None
    ) -> SiteOut:
        """`if_match`: the `version` you read (or an ETag); a stale one is 412."""
        return await self._model(
            SiteOut, "updateSite", path={"site_id": site_id}, body=body, headers=_if_match(if_match)
        )

    async def confirm_capacity(self, site_id: Id, *, idempotency_key: str | None = None) -> SiteOut:
        """The provider's "still accurate": the site's capacity is confirmed now (no longer
        `stale`)."""
        return await self._model(
            SiteOut,
            "confirmCapacity",
            path={"site_id": site_id},
            idempotency_key=idempotency_key,
        )

    async def list_beds(
        self, site_id: Id, *, cursor: str | None = None, limit: int | None = None
    ) -> Page[BedOut]:
        query = _query(cursor=cursor, limit=limit)
        return await self._model(Page[BedOut], "listBeds", path={"site_id": site_id}, query=query)

    async def create_bed(
        self, site_id: Id, body: BedIn, *, idempotency_key: str | None = None
    ) -> BedOut:
        return await self._model(
            BedOut,
            "createBed",
            path={"site_id": site_id},
            body=body,
            idempotency_key=idempotency_key,
        )

    async def update_bed(
        self, site_id: Id, bed_id: Id, body: BedPatch, *, if_match: int | str | None = None
    ) -> BedOut:
        return await self._model(
            BedOut,
            "updateBed",
            path={"site_id": site_id, "bed_id": bed_id},
            body=body,
            headers=_if_match(if_match),
        )

    async def delete_bed(
        self, site_id: Id, bed_id: Id, *, if_match: int | str | None = None
    ) -> None:
        await self._call(
            "deleteBed", path={"site_id": site_id, "bed_id": bed_id}, headers=_if_match(if_match)
        )

    async def list_blocks(
        self,
        site_id: Id,
        query: BlockListQuery | None = None,
        *,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> Page[BlockOut]:
        params = _query(query, cursor=cursor, limit=limit)
        return await self._model(
            Page[BlockOut], "listBlocks", path={"site_id": site_id}, query=params
        )

    async def create_block(
        self, site_id: Id, body: BlockIn, *, idempotency_key: str | None = None
    ) -> BlockOut:
        return await self._model(
            BlockOut,
            "createBlock",
            path={"site_id": site_id},
            body=body,
            idempotency_key=idempotency_key,
        )

    async def delete_block(self, site_id: Id, block_id: Id) -> None:
        await self._call("deleteBlock", path={"site_id": site_id, "block_id": block_id})

    async def get_occupancy(self, site_id: Id, query: WindowQuery) -> Occupancy:
        return await self._model(
            Occupancy, "getOccupancy", path={"site_id": site_id}, query=_query(query)
        )

    # --- availability and bookings --------------------------------------------------------

    async def search_availability(self, query: AvailabilityQuery) -> AvailabilityOut:
        return await self._model(AvailabilityOut, "searchAvailability", query=_query(query))

    async def list_bookings(
        self,
        query: BookingListQuery | None = None,
        *,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> Page[BookingOut]:
        params = _query(query, cursor=cursor, limit=limit)
        return await self._model(Page[BookingOut], "listBookings", query=params)

    async def create_booking(
        self, body: BookingIn, *, idempotency_key: str | None = None
    ) -> BookingOut:
        """Hold the best-fitting bed at `body.site_id`; confirm within the hold's time."""
        return await self._model(
            BookingOut, "createBooking", body=body, idempotency_key=idempotency_key
        )

    async def get_booking(self, booking_id: Id) -> BookingOut:
        return await self._model(BookingOut, "getBooking", path={"booking_id": booking_id})

    async def _act(
        self,
        operation: str,
        booking_id: Id,
        body: BaseModel | None,
        idempotency_key: str | None,
    ) -> BookingOut:
        return await self._model(
            BookingOut,
            operation,
            path={"booking_id": booking_id},
            body=body,
            idempotency_key=idempotency_key,
        )

    async def confirm_booking(
        self, booking_id: Id, body: ActionIn | None = None, *, idempotency_key: str | None = None
    ) -> BookingOut:
        return await self._act("confirmBooking", booking_id, body, idempotency_key)

    async def accept_booking(
        self, booking_id: Id, body: ActionIn | None = None, *, idempotency_key: str | None = None
    ) -> BookingOut:
        return await self._act("acceptBooking", booking_id, body, idempotency_key)

    async def decline_booking(
        self, booking_id: Id, body: DeclineIn, *, idempotency_key: str | None = None
    ) -> BookingOut:
        """`body.reason_code` (default `other`); `body.reason` is required with `other`."""
        return await self._act("declineBooking", booking_id, body, idempotency_key)

    async def cancel_booking(
        self, booking_id: Id, body: CancelIn, *, idempotency_key: str | None = None
    ) -> BookingOut:
        """`body.reason_code` (default `other`); `body.reason` is required with `other`."""
        return await self._act("cancelBooking", booking_id, body, idempotency_key)

    async def check_in_booking(
        self, booking_id: Id, body: ActionIn | None = None, *, idempotency_key: str | None = None
    ) -> BookingOut:
        return await self._act("checkInBooking", booking_id, body, idempotency_key)

    async def check_out_booking(
        self, booking_id: Id, body: ActionIn | None = None, *, idempotency_key: str | None = None
    ) -> BookingOut:
        return await self._act("checkOutBooking", booking_id, body, idempotency_key)

    async def no_show_booking(
        self, booking_id: Id, body: NoShowIn | None = None, *, idempotency_key: str | None = None
    ) -> BookingOut:
        """`body.reason_code` (default `person_did_not_arrive`); `body.reason` is required with
        `other`."""
        return await self._act("noShowBooking", booking_id, body, idempotency_key)

    async def extend_booking(
        self, booking_id: Id, body: ExtendIn, *, idempotency_key: str | None = None
    ) -> BookingOut:
        return await self._act("extendBooking", booking_id, body, idempotency_key)

    async def create_feedback(
        self, booking_id: Id, body: FeedbackIn, *, idempotency_key: str | None = None
    ) -> BookingOut:
        """The person's own answers, given with their consent (provider keys)."""
        return await self._act("createFeedback", booking_id, body, idempotency_key)

    # --- the event feed -------------------------------------------------------------------

    async def list_events(
        self,
        *,
        after: str | None = None,
        limit: int | None = None,
        wait: float | None = None,
        types: Sequence[EventType | str] | None = None,
    ) -> EventPage:
        """One page of the feed after `after` (from the oldest kept event when None); with
        `wait`, the service holds the request up to that many seconds (at most 30) until an
        event comes. Loop with `after=page.next_cursor` (always present)."""
        query = _query(after=after, limit=limit, wait=wait, types=list(types) if types else None)
        return await self._model(EventPage, "listEvents", query=query, wait=wait or 0.0)

    def events(
        self,
        after: str | None = None,
        wait: float = 25,
        types: Sequence[EventType | str] | None = None,
        *,
        limit: int | None = None,
    ) -> EventStream:
        """Every event after `after`, forever: `async for event in client.events(): ...`.
        Keep the stream object to read `.cursor`, the position to resume from."""
        return EventStream(self, after=after, wait=wait, types=types, limit=limit)

    # --- webhooks -------------------------------------------------------------------------

    async def create_webhook(
        self, body: WebhookIn, *, idempotency_key: str | None = None
    ) -> WebhookCreated:
        """`.secret` (`whsec_...`) is shown this once: keep it to verify deliveries."""
        return await self._model(
            WebhookCreated, "createWebhook", body=body, idempotency_key=idempotency_key
        )

    async def list_webhooks(
        self, *, cursor: str | None = None, limit: int | None = None
    ) -> Page[Webhook]:
        query = _query(cursor=cursor, limit=limit)
        return await self._model(Page[Webhook], "listWebhooks", query=query)

    async def get_webhook(self, webhook_id: Id) -> Webhook:
        return await self._model(Webhook, "getWebhook", path={"webhook_id": webhook_id})

    async def delete_webhook(self, webhook_id: Id) -> None:
        await self._call("deleteWebhook", path={"webhook_id": webhook_id})

    async def list_webhook_deliveries(
        self, webhook_id: Id, *, cursor: str | None = None, limit: int | None = None
    ) -> Page[Delivery]:
        """Delivery attempts, newest first."""
        query = _query(cursor=cursor, limit=limit)
        return await self._model(
            Page[Delivery], "listWebhookDeliveries", path={"webhook_id": webhook_id}, query=query
        )


class EventStream:
    """The feed as an endless async iterator of Events, long-polling `GET /v1/events`.

    `cursor` is where to resume (`client.events(after=cursor)`) to get every event after the
    last one this stream has handed you, so save it once you have handled that event. Within
    a page it stays at the page's start (the feed's cursor is per page), so a resumed stream
    may see some events again: delivery is at least once; skip an `event.id` already handled.

    A dropped connection, a timeout, a 5xx or a 429 that outlasts the client's retries is
    waited out (the client's Retry backoff, at least Retry-After) and the poll resumes from
    where it was; any other ApiError (a bad key, a cursor the service did not issue) is raised.
    """

    def __init__(
        self,
        client: Client,
        *,
        after: str | None,
        wait: float,
        types: Sequence[EventType | str] | None,
        limit: int | None,
    ) -> None:
        self.cursor = after
        self._client = client
        self._wait = wait
        self._types = types
        self._limit = limit
        self._buffer: deque[Event] = deque()
        self._page_end = after
        self._failures = 0

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event:
        while not self._buffer:
            page = await self._poll(self._page_end)
            self._buffer.extend(page.items)
            self._page_end = page.next_cursor
            if not page.items:
                self.cursor = page.next_cursor
        event = self._buffer.popleft()
        if not self._buffer:
            # The page's last event: once it is handled, the whole page is.
            self.cursor = self._page_end
        return event

    async def _poll(self, after: str | None) -> EventPage:
        while True:
            retry_after = None
            try:
                page = await self._client.list_events(
                    after=after, limit=self._limit, wait=self._wait, types=self._types
                )
            except (aiohttp.ClientConnectionError, TimeoutError):
                pass
            except ApiError as error:
                if error.status != 429 and error.status < 500:
                    raise
                retry_after = error.retry_after
            else:
                self._failures = 0
                return page
            self._failures += 1
            await asyncio.sleep(self._client.retry.delay(self._failures, retry_after))


# --- webhooks received ----------------------------------------------------------------------------


def verify_webhook(secret: str, body: bytes | str, headers: Mapping[str, str]) -> Event:
    """The Event a webhook delivery carries, once its Standard Webhooks signature checks out
    against `secret` (the `whsec_...` shown when the subscription was made). Raises
    WebhookVerificationError for a missing or wrong signature, or a timestamp more than five
    minutes off (a replay). Pass the body exactly as received, before any JSON parsing."""
    try:
        _Signer(secret).verify(body, dict(headers), json_parse=False)
    except (ValueError, binascii.Error) as exc:
        # A malformed signature header (no comma, not base64) is a bad signature too.
        raise WebhookVerificationError("malformed webhook signature") from exc
    return Event.model_validate_json(body)
