"""The single URL table; openapi.yaml lists exactly these paths (a test holds them together)."""

from __future__ import annotations

from aiohttp import web

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


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/healthz", system.healthz)
    r.add_get("/readyz", system.readyz)
    r.add_get("/metrics", system.metrics)
    r.add_get("/openapi.yaml", system.openapi)
    r.add_get("/docs", system.docs)
    r.add_get("/docs/static/{filename}", system.docs_asset)

    r.add_get("/v1/forces", reference.list_forces)
    r.add_post("/v1/forces", reference.create_force)
    r.add_get("/v1/providers", reference.list_providers)
    r.add_post("/v1/providers", reference.create_provider)
    r.add_get("/v1/providers/{provider_id}", reference.get_provider)

    r.add_get("/v1/api-keys", api_keys.list_api_keys)
    r.add_post("/v1/api-keys", api_keys.create_api_key)
    r.add_delete("/v1/api-keys/{key_id}", api_keys.revoke_api_key)

    r.add_get("/v1/audit", audit.list_audit)
    r.add_get("/v1/alerts", alerts.list_security_alerts)
    r.add_get("/v1/events", events.list_events)
    r.add_get("/v1/reports/summary", reports.get_report_summary)

    r.add_get("/v1/webhooks", webhooks.list_webhooks)
    r.add_post("/v1/webhooks", webhooks.create_webhook)
    r.add_get("/v1/webhooks/{webhook_id}", webhooks.get_webhook)
    r.add_delete("/v1/webhooks/{webhook_id}", webhooks.delete_webhook)
    r.add_get("/v1/webhooks/{webhook_id}/deliveries", webhooks.list_webhook_deliveries)

    r.add_get("/v1/sites", capacity.list_sites)
    r.add_post("/v1/sites", capacity.create_site)
    r.add_get("/v1/sites/{site_id}", capacity.get_site)
    r.add_patch("/v1/sites/{site_id}", capacity.patch_site)
    r.add_post("/v1/sites/{site_id}/confirm-capacity", capacity.confirm_capacity)
    r.add_get("/v1/sites/{site_id}/beds", capacity.list_beds)
    r.add_post("/v1/sites/{site_id}/beds", capacity.create_bed)
    r.add_patch("/v1/sites/{site_id}/beds/{bed_id}", capacity.patch_bed)
    r.add_delete("/v1/sites/{site_id}/beds/{bed_id}", capacity.delete_bed)
    r.add_get("/v1/sites/{site_id}/blocks", capacity.list_blocks)
    r.add_post("/v1/sites/{site_id}/blocks", capacity.create_block)
    r.add_delete("/v1/sites/{site_id}/blocks/{block_id}", capacity.delete_block)
    r.add_get("/v1/sites/{site_id}/occupancy", capacity.occupancy)

    r.add_get("/v1/availability", bookings.availability)
    r.add_get("/v1/bookings", bookings.list_bookings)
    r.add_post("/v1/bookings", bookings.create_booking)
    r.add_get("/v1/bookings/{booking_id}", bookings.get_booking)
    for action in ACTIONS:
        r.add_post(f"/v1/bookings/{{booking_id}}/{action}", bookings.action_handler(action))
    r.add_post("/v1/bookings/{booking_id}/feedback", bookings.create_feedback)
