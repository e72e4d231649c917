-- Stored answers for Idempotency-Key: per caller, kept 24 h, written in the same transaction
-- as the change they answer for, so a replay can never disagree with what committed.

CREATE TABLE idempotency_key (
    api_key_id       uuid NOT NULL REFERENCES api_key (id),
    key              text NOT NULL,
    request_hash     bytea NOT NULL,
    response_status  integer NOT NULL,
    response_type    text NOT NULL,
    response_headers jsonb NOT NULL DEFAULT '{}',
    response_body    bytea NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (api_key_id, key)
);
CREATE INDEX idempotency_key_age_idx ON idempotency_key (created_at);
