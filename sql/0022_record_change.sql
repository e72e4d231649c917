-- One call records one change (issue 16 item 3): a booking's step of history, the events it
-- announces and its audit row, written together by one statement from the service
-- (service/usecases/changes.py) instead of a statement each; the rows are those the service
-- wrote one statement at a time before, shaped as they were:
--
-- * history, when `p_status` is given: the step a booking took (`p_booking_id`), who took it,
--   why and its code;
-- * events, in this order, each when given: the booking's (from its state now; ids, state,
--   window and who it concerns, never a personal field), a security alert's (`p_alert_id`: the
--   alert, its kind, the key and its force, never a person), its site's availability change
--   (`p_site_id` with its `p_cause`: the site and the cause, never its address or location);
--   one INSERT for all of them, so the outbox's statement triggers run once;
-- * the audit row, when `p_object_type` is given: who (key, role, scope), which request, what
--   was done to which object and the names of the fields it changed (never their values).

-- The events one change announces, in the order above. A plain SQL function, so the planner
-- inlines it into the INSERT below (and tests/integration/test_query_plans.py can read its plan).
CREATE FUNCTION change_events(
    p_event_type text, p_booking_id uuid, p_alert_id uuid, p_site_id uuid, p_cause text
) RETURNS TABLE (
    n integer, type text, booking_id uuid, site_id uuid, force_code text, provider_id uuid,
    data jsonb
)
LANGUAGE sql STABLE AS $$
    SELECT 1, p_event_type, b.id, b.site_id, b.force_code, s.provider_id,
           jsonb_build_object(
               'booking_id', b.id, 'status', a.status, 'site_id', b.site_id,
               'force', b.force_code, 'bed_id', a.bed_id,
               'start', lower(a.period), 'end', upper(a.period)
           )
    FROM booking b
    JOIN allocation a ON a.id = b.id
    JOIN site s ON s.id = b.site_id
    WHERE p_event_type IS NOT NULL AND p_alert_id IS NULL AND b.id = p_booking_id
    UNION ALL
    SELECT 2, p_event_type, NULL, NULL, NULL, NULL,
           jsonb_build_object(
               'alert_id', al.id, 'kind', al.kind, 'api_key_id', al.api_key_id,
               'force', al.force_code, 'site_id', al.site_id, 'booking_id', al.booking_id
           )
    FROM security_alert al
    WHERE p_event_type IS NOT NULL AND al.id = p_alert_id
    UNION ALL
    SELECT 3, 'site.availability_changed', NULL, s.id, NULL, s.provider_id,
           jsonb_build_object('site_id', s.id, 'cause', p_cause)
    FROM site s
    WHERE p_cause IS NOT NULL AND s.id = p_site_id
$$;

CREATE FUNCTION record_change(
    p_at timestamptz,
    p_actor text,
    p_api_key_id uuid,
    p_role text,
    p_scope text,
    p_request_id text,
    p_action text,
    p_object_type text,
    p_object_id text,
    p_fields text[],
    p_booking_id uuid,
    p_status text,
    p_reason text,
    p_reason_code text,
    p_event_type text,
    p_alert_id uuid,
    p_site_id uuid,
    p_cause text
) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_status IS NOT NULL THEN
        INSERT INTO booking_transition (
            booking_id, action, status, at, actor, api_key_id, reason, reason_code
        )
        VALUES (
            p_booking_id, p_action, p_status, p_at, p_actor, p_api_key_id, p_reason,
            p_reason_code
        );
    END IF;

    IF (p_event_type IS NOT NULL) OR (p_cause IS NOT NULL) THEN
        INSERT INTO event (type, booking_id, site_id, force_code, provider_id, data, occurred_at)
        SELECT e.type, e.booking_id, e.site_id, e.force_code, e.provider_id, e.data, p_at
        FROM change_events(p_event_type, p_booking_id, p_alert_id, p_site_id, p_cause) AS e
        ORDER BY e.n;
    END IF;

    IF p_object_type IS NOT NULL THEN
        INSERT INTO audit (
            at, api_key_id, role, scope, request_id, action, object_type, object_id, fields
        )
        VALUES (
            p_at, p_api_key_id, p_role, p_scope, p_request_id, p_action, p_object_type,
            p_object_id, p_fields
        );
    END IF;
END
$$;
