"""The single URL table, with the roles that may call each route; openapi.yaml lists exactly
these operations and the same roles as `x-roles` (tests hold them together)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from aiohttp import web

from service import keys
from service.domain.lifecycle import ACTIONS
from service.handlers import (
    alerts,
    api_keys,
    audit,
    bookings,
    capacity,
    events,
    reference,
    reports,
    system,
    webhooks,
)
from service.vocab import Role

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# None: the route is public (no key). Otherwise the roles whose keys may call it; every other
# role is answered 403 by service.middlewares.authorize before the request is looked at.
Roles = frozenset[Role] | None

PUBLIC: Roles = None
EVERY_ROLE = frozenset(Role)
ADMIN = frozenset({Role.ADMIN})
OFFICER = frozenset({Role.OFFICER})
PROVIDER = frozenset({Role.PROVIDER})
PROVIDER_OR_ADMIN = frozenset({Role.PROVIDER, Role.ADMIN})
OFFICER_OR_ADMIN = frozenset({Role.OFFICER, Role.ADMIN})


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    roles: Roles
    # Whether HEAD is answered like GET. Not on routes whose GET is audited as a read of
    # personal fields: a HEAD shows nothing, so it must neither be audited as a read nor,
    # unaudited, learn the size of what a GET would show (its Content-Length).
    head: bool = True


ROUTES: tuple[Route, ...] = (
    Route("GET", "/healthz", system.healthz, PUBLIC),
    Route("GET", "/readyz", system.readyz, PUBLIC),
    Route("GET", "/metrics", system.metrics, PUBLIC),
    Route("GET", "/openapi.yaml", system.openapi, PUBLIC),
    Route("GET", "/docs", system.docs, PUBLIC),
    Route("GET", "/docs/static/{filename}", system.docs_asset, PUBLIC),
    #
    Route("GET", "/v1/forces", reference.list_forces, EVERY_ROLE),
    Route("POST", "/v1/forces", reference.create_force, ADMIN),
    Route("GET", "/v1/providers", reference.list_providers, EVERY_ROLE),
    Route("POST", "/v1/providers", reference.create_provider, ADMIN),
    Route("GET", "/v1/providers/{provider_id}", reference.get_provider, EVERY_ROLE),
    #
    Route("GET", "/v1/api-keys", api_keys.list_api_keys, ADMIN),
    Route("POST", "/v1/api-keys", api_keys.create_api_key, ADMIN),
    Route("DELETE", "/v1/api-keys/{key_id}", api_keys.revoke_api_key, ADMIN),
    #
    Route("GET", "/v1/audit", audit.list_audit, ADMIN),
    Route("GET", "/v1/alerts", alerts.list_security_alerts, ADMIN),
    Route("GET", "/v1/events", events.list_events, EVERY_ROLE),
    Route("GET", "/v1/reports/summary", reports.get_report_summary, EVERY_ROLE),
    #
    Route("GET", "/v1/webhooks", webhooks.list_webhooks, EVERY_ROLE),
    Route("POST", "/v1/webhooks", webhooks.create_webhook, EVERY_ROLE),
    Route("GET", "/v1/webhooks/{webhook_id}", webhooks.get_webhook, EVERY_ROLE),
    Route("DELETE", "/v1/webhooks/{webhook_id}", webhooks.delete_webhook, EVERY_ROLE),
    Route(
        "GET",
        "/v1/webhooks/{webhook_id}/deliveries",
        webhooks.list_webhook_deliveries,
        EVERY_ROLE,
    ),
    #
    Route("GET", "/v1/sites", capacity.list_sites, PROVIDER_OR_ADMIN),
    Route("POST", "/v1/sites", capacity.create_site, PROVIDER),
    Route("GET", "/v1/sites/{site_id}", capacity.get_site, PROVIDER_OR_ADMIN),
    Route("PATCH", "/v1/sites/{site_id}", capacity.patch_site, PROVIDER),
    Route("POST", "/v1/sites/{site_id}/confirm-capacity", capacity.confirm_capacity, PROVIDER),
    Route("GET", "/v1/sites/{site_id}/beds", capacity.list_beds, PROVIDER_OR_ADMIN),
    Route("POST", "/v1/sites/{site_id}/beds", capacity.create_bed, PROVIDER),
    Route("PATCH", "/v1/sites/{site_id}/beds/{bed_id}", capacity.patch_bed, PROVIDER),
    Route("DELETE", "/v1/sites/{site_id}/beds/{bed_id}", capacity.delete_bed, PROVIDER),
    Route("GET", "/v1/sites/{site_id}/blocks", capacity.list_blocks, PROVIDER_OR_ADMIN),
    Route("POST", "/v1/sites/{site_id}/blocks", capacity.create_block, PROVIDER),
    Route("DELETE", "/v1/sites/{site_id}/blocks/{block_id}", capacity.delete_block, PROVIDER),
    Route("GET", "/v1/sites/{site_id}/occupancy", capacity.occupancy, PROVIDER_OR_ADMIN),
    #
    Route("GET", "/v1/availability", bookings.availability, OFFICER_OR_ADMIN),
    Route("GET", "/v1/bookings", bookings.list_bookings, EVERY_ROLE, head=False),
    Route("POST", "/v1/bookings", bookings.create_booking, OFFICER),
    Route("GET", "/v1/bookings/{booking_id}", bookings.get_booking, EVERY_ROLE, head=False),
    *(
        Route(
            "POST",
            f"/v1/bookings/{{booking_id}}/{name}",
            bookings.action_handler(name),
            action.roles,
        )
        for name, action in ACTIONS.items()
    ),
    Route("POST", "/v1/bookings/{booking_id}/feedback", bookings.create_feedback, PROVIDER),
)


def route_roles() -> Mapping[tuple[str, str], Roles]:
    """(method, path template) -> the roles that may call it; HEAD as its GET."""
    table: dict[tuple[str, str], Roles] = {}
    for route in ROUTES:
        table[route.method, route.path] = route.roles
        if route.method == "GET" and route.head:
            table["HEAD", route.path] = route.roles
    return table


def add_routes(app: web.Application) -> None:
    for route in ROUTES:
        if route.method == "GET":
            app.router.add_get(route.path, route.handler, allow_head=route.head)
        else:
            app.router.add_route(route.method, route.path, route.handler)
    app[keys.ROUTE_ROLES] = route_roles()
