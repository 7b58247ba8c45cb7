-- Partitioned history (PROTOCOL §9): `messages` becomes a table partitioned by `ts` in weekly
-- ranges, so `room.retention_days` drops old history a whole partition at a time (DROP TABLE: no
-- row deletes, no vacuum debt) instead of deleting rows.
--
-- The upgrade renames nothing a client sees and renumbers nothing: the existing table becomes the
-- first partition, `messages_legacy`, covering everything up to the migration (one scan to check
-- its rows fit, and one build each of the two indexes below it lacks). New partitions follow it.
--
-- What changes in the table's constraints:
-- - A partitioned table's unique indexes must include the partition key, so (room, seq) and the
--   idempotency key (room, user_id, client_msg_id) become plain indexes. Both stay unique by
--   construction: every write goes through chorus_log_append (or V2's chorus_append), which holds
--   the room row's lock while it checks the idempotency key and hands out the next seq.
-- - The foreign key to rooms is not carried over (the same functions create the room row first).
-- - Lookups by (room, seq) visit each partition's index: one index probe per partition (about
--   53 a year with retention 0; see docs/CAPACITY.md).

ALTER TABLE messages RENAME TO messages_legacy;
ALTER TABLE messages_legacy RENAME CONSTRAINT messages_pkey TO messages_legacy_pkey;
ALTER INDEX messages_idempotency RENAME TO messages_legacy_idempotency;
ALTER INDEX messages_own RENAME TO messages_legacy_own;
ALTER INDEX messages_deleted RENAME TO messages_legacy_deleted;
ALTER INDEX messages_edits RENAME TO messages_legacy_edits;

CREATE TABLE messages (LIKE messages_legacy INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (ts);

-- Backfill, gap repair, history pages and edit/delete/react targets.
CREATE INDEX messages_seq ON messages (room, seq);
-- Idempotent sends: the original for a repeated (room, user, client_msg_id).
CREATE INDEX messages_idempotency ON messages (room, user_id, client_msg_id)
    WHERE client_msg_id IS NOT NULL;
-- As in V3 (same definitions, so the old table's indexes are attached, not rebuilt).
CREATE INDEX messages_own ON messages (room, user_id, seq) WHERE kind = 'message';
CREATE INDEX messages_deleted ON messages (room, seq) INCLUDE (user_id, deleted_seq)
    WHERE kind = 'message' AND deleted_seq IS NOT NULL;
CREATE INDEX messages_edits ON messages (room, target) WHERE kind = 'edit';

-- Which partitions hold history, and the (exclusive) end of each one's range.
CREATE TABLE history_partitions (
    name  text PRIMARY KEY,
    upper timestamptz NOT NULL
);

DO $$
DECLARE
    v_bound timestamptz;
BEGIN
    -- Up to the migration (or the newest row, if a node's clock ran ahead).
    SELECT greatest(now(), max(ts) + interval '1 microsecond') INTO v_bound FROM messages_legacy;
    EXECUTE format('ALTER TABLE messages ATTACH PARTITION messages_legacy '
                   'FOR VALUES FROM (MINVALUE) TO (%L)', v_bound);
    INSERT INTO history_partitions (name, upper) VALUES ('messages_legacy', v_bound);
END
$$;

-- The partition-level indexes now cover what the old unique ones did (see above).
ALTER TABLE messages_legacy DROP CONSTRAINT messages_legacy_pkey;
DROP INDEX messages_legacy_idempotency;

-- Creates the weekly partitions (Monday 00:00 UTC to the next) up to `p_now + p_ahead`, and with
-- `p_retention_days` > 0 drops every partition whose whole range ended at least that many days
-- before `p_now`. Returns how many it created and dropped. Every node calls it at start and
-- hourly (src/store/postgres.rs); an advisory lock makes concurrent calls take turns, and a short
-- lock timeout keeps a drop from queueing appends behind it (it is retried an hour later).
-- `p_now` exists for tests (a clock moved forward).
CREATE FUNCTION chorus_history_partitions(
    p_retention_days int, p_now timestamptz DEFAULT now(), p_ahead interval DEFAULT '14 days'
) RETURNS TABLE (created int, dropped int) LANGUAGE plpgsql AS $$
DECLARE
    v_upper timestamptz;
    v_next timestamptz;
    v_name text;
    v_old record;
BEGIN
    created := 0;
    dropped := 0;
    SET LOCAL lock_timeout = '2s';
    -- "chorus-h" in ASCII: not the migration lock.
    PERFORM pg_advisory_xact_lock(7161132898815373160);
    SELECT max(h.upper) INTO v_upper FROM history_partitions h;
    WHILE v_upper < p_now + p_ahead LOOP
        v_next := (date_trunc('week', v_upper AT TIME ZONE 'UTC') + interval '7 days')
                  AT TIME ZONE 'UTC';
        v_name := 'messages_' || to_char(v_upper AT TIME ZONE 'UTC', 'YYYYMMDD"t"HH24MISS');
        EXECUTE format('CREATE TABLE %I PARTITION OF messages FOR VALUES FROM (%L) TO (%L)',
                       v_name, v_upper, v_next);
        INSERT INTO history_partitions (name, upper) VALUES (v_name, v_next);
        v_upper := v_next;
        created := created + 1;
    END LOOP;
    IF p_retention_days > 0 THEN
        FOR v_old IN
            SELECT h.name FROM history_partitions h
            WHERE h.upper <= p_now - make_interval(days => p_retention_days)
            ORDER BY h.upper
        LOOP
            EXECUTE format('DROP TABLE %I', v_old.name);
            DELETE FROM history_partitions WHERE name = v_old.name;
            dropped := dropped + 1;
        END LOOP;
    END IF;
    RETURN NEXT;
END
$$;

SELECT * FROM chorus_history_partitions(0);
