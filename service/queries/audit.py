"""Reading the audit log (rows are written only through service.queries.records). Columns
are named as GET /v1/audit names them."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg

from service.db import Connection

# Each filter is optional. A generic plan (which a prepared statement may switch to after a
# few calls) could serve `$1 IS NULL OR ...` only by walking the primary key and filtering,
# through a table that grows with every booking read; so each call is planned for its own
# values (PLAN_EACH_CALL): an object filter reads audit_object_idx, a key filter
# audit_key_idx, in id order (tests/integration/test_query_plans.py). The id is a string in
# the API (a bigint outgrows the integers JSON readers keep exactly).
PLAN_EACH_CALL = "SET LOCAL plan_cache_mode = force_custom_plan"

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
    # Its own transaction (a savepoint inside one), so the setting ends with this read.
    async with conn.transaction():
        await conn.execute(PLAN_EACH_CALL)
        return await conn.fetch(LIST, object_type, object_id, key_id, since, until, after, limit)
