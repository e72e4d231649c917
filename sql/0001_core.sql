-- Reference data and API keys: who may use the service, and for which force or provider.

CREATE TABLE force (
    code       text PRIMARY KEY CHECK (code ~ '^[a-z][a-z0-9-]{1,31}$'),
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE provider (
    id         uuid PRIMARY KEY,
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX provider_name_uq ON provider (lower(name));
CREATE INDEX provider_paging_idx ON provider (created_at, id);

-- Keys are stored only as a SHA-256 hash of a 256-bit random secret; `prefix` lets people
-- tell keys apart in listings without revealing them.
CREATE TABLE api_key (
    id           uuid PRIMARY KEY,
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    role         text NOT NULL CHECK (role IN ('admin', 'officer', 'provider')),
    force_code   text REFERENCES force (code),
    provider_id  uuid REFERENCES provider (id),
    key_hash     bytea NOT NULL UNIQUE,
    prefix       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz,
    -- A key's scope follows from its role: exactly one force for officers, one provider
    -- for providers, none for admins.
    CONSTRAINT api_key_scope CHECK (
        (role = 'admin' AND force_code IS NULL AND provider_id IS NULL)
        OR (role = 'officer' AND force_code IS NOT NULL AND provider_id IS NULL)
        OR (role = 'provider' AND provider_id IS NOT NULL AND force_code IS NULL)
    )
);
CREATE INDEX api_key_paging_idx ON api_key (created_at, id);
