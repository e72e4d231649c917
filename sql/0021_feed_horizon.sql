-- The feed's horizon counts only transactions that may still write events (issue 15 item 2).
--
-- sql/0010 reads the events of transactions below pg_snapshot_xmin(pg_current_snapshot()): the
-- oldest transaction still running ANYWHERE on the server, so a long transaction in another
-- database, or an operator's bulk import in this one, held every feed reader and webhook back
-- until it ended. Transaction ids are the server's, but only this database's event writers can
-- put an event below the horizon: a running transaction is passed over when it is known to be
-- another database's, or a session of this one that is not the service's.
--
-- The service's sessions are the event writers: they connect as application_name
-- 'places-of-safety' (service/db.py; its tools as 'places-of-safety/<tool>'), and set it when
-- they connect, before any of their transactions has an id. Any other session that inserts an
-- event is refused (the trigger below), so no event can commit behind a horizon that passed its
-- transaction over. Whatever cannot be told (an id whose session pg_stat_activity does not show
-- to this role, a prepared transaction) still holds the horizon: never passed over, at worst
-- waited for, as before.
CREATE FUNCTION is_event_writer(application_name text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT application_name = 'places-of-safety'
        OR application_name LIKE 'places-of-safety/%'
$$;

-- Every transaction below the result has ended, or is one that writes no event here. Running
-- transactions are read from the statement's snapshot (pg_current_snapshot() is the active
-- one), and who runs them from pg_stat_activity afterwards: an id in the snapshot that is still
-- running then is still its session's (an id belongs to one session for its whole life), and
-- one that has ended by then committed before the events are read. STABLE: one snapshot with
-- the statement that calls it.
CREATE FUNCTION event_horizon() RETURNS xid8
LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT min(x)
         FROM pg_snapshot_xip(s.snap) AS x
         WHERE NOT EXISTS (
             SELECT 1
             FROM pg_stat_activity a
             WHERE a.backend_xid = xid(x)
               AND (a.datname IS DISTINCT FROM current_database()
                    OR NOT is_event_writer(a.application_name))
         )),
        pg_snapshot_xmax(s.snap)
    )
    FROM (SELECT pg_current_snapshot() AS snap) AS s
$$;

-- Refuses an event from any other session, and from one that took the service's name after it
-- connected (SET application_name: its transaction may have been passed over already).
CREATE FUNCTION event_writer_only() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    name text;
    source text;
BEGIN
    SELECT s.setting, s.source INTO name, source
    FROM pg_settings s WHERE s.name = 'application_name';
    IF NOT is_event_writer(name) OR source = 'session' THEN
        RAISE EXCEPTION 'only the service writes events (this session is %)', quote_literal(name)
            USING HINT = 'Connect with application_name=places-of-safety (as the connection '
                'starts, not SET later): the feed''s readers skip other sessions'' transactions '
                '(sql/0021_feed_horizon.sql).';
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER event_writer_only BEFORE INSERT ON event
    FOR EACH STATEMENT EXECUTE FUNCTION event_writer_only();
