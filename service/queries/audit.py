"""Reading the audit log (rows are written only through service.queries.records). Columns
are named as GET /v1/audit names them."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg

from service.db import Connection

# Each filter is optional; the planner sees the values given (custom plans), so an object or a
# key filter reads audit_object_idx or audit_key_idx, a time window audit_at_idx, and none
# walks the primary key in id order. The id is a string in the API (a bigint outgrows the
# integers JSON readers keep exactly).
LIST = """
SELECT id::text AS id, at, api_key_id AS key_id, role, scope, request_id, action, object_type,
       object_id, fields
FROM audit
WHERE ($1::text IS NULL OR object_type = $1)
  AND ($2::text IS NULL OR object_id = $2)
  AND ($3::uuid IS NULL OR api_key_id = $3)
  AND ($4::timestamptz IS NULL OR at >= $4)
  AND ($5::timestamptz IS NULL OR at < $5)
  AND ($6::bigint IS NULL OR id > $6)
ORDER BY audit.id
LIMIT $7
"""


async def list_page(
    conn: Connection,
    *,
    object_type: str | None,
    object_id: str | None,
    key_id: UUID | None,
    since: datetime | None,
    until: datetime | None,
    after: int | None,
    limit: int,
) -> list[asyncpg.Record]:
    return await conn.fetch(LIST, object_type, object_id, key_id, since, until, after, limit)
