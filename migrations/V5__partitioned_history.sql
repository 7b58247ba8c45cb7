-- Partitioned history (PROTOCOL §9): `messages` becomes a table partitioned by `ts` in weekly
-- ranges, so `room.retention_days` drops old history a whole partition at a time (DROP TABLE: no
-- row deletes, no vacuum debt) instead of deleting rows.
--
-- The upgrade renames nothing a client sees and renumbers nothing: the existing table becomes the
-- first partition, `messages_legacy`, covering everything up to the migration (one scan to check
-- its rows fit, one build of the (room, seq) index, and its idempotency keys copied into
-- message_keys). New partitions follow it.
--
-- What changes in the table's constraints:
-- - A partitioned table's unique indexes must include the partition key, so (room, seq) becomes a
--   plain index; it stays unique by construction (every write goes through chorus_log_append,
--   which holds the room row's lock while it hands out the next seq).
-- - Idempotency keys move to their own table, `message_keys` (room, user_id, client_msg_id → seq):
--   looking a key up in `messages` would probe every partition's index for every entry with a
--   client_msg_id (a year of weekly partitions made appends 3× slower: loadtest/pg_append).
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

-- Idempotent entries: which entry a (room, user, client_msg_id) made. `ts` is the entry's, so the
-- keys of dropped history can be dropped with it.
CREATE TABLE message_keys (
    room          text NOT NULL,
    user_id       text NOT NULL,
    client_msg_id text NOT NULL,
    seq           bigint NOT NULL,
    ts            timestamptz NOT NULL,
    PRIMARY KEY (room, user_id, client_msg_id)
);
INSERT INTO message_keys (room, user_id, client_msg_id, seq, ts)
SELECT room, user_id, client_msg_id, seq, ts FROM messages_legacy WHERE client_msg_id IS NOT NULL;

-- messages_seq and message_keys now do what the old unique indexes did (see above).
ALTER TABLE messages_legacy DROP CONSTRAINT messages_legacy_pkey;
DROP INDEX messages_legacy_idempotency;

-- V4's append function with the idempotency key looked up in, and written to, message_keys.
-- Everything else is unchanged. (The 13-argument form of V4 calls this one.)
CREATE OR REPLACE FUNCTION chorus_log_append(
    p_room text, p_epoch text, p_ids text[], p_users text[], p_names text[], p_bodies text[],
    p_ts timestamptz, p_cids text[], p_kinds text[], p_targets bigint[], p_keys text[],
    p_ops text[], p_mods boolean[],
    p_hook_eps text[], p_hook_kinds text[]
) RETURNS TABLE (
    idx int, outcome text, seq bigint, id text, user_id text, user_name text, body text,
    ts timestamptz, client_msg_id text, kind text, target bigint, react_key text, react_op text,
    edited_ts timestamptz, deleted_seq bigint, epoch text
) LANGUAGE plpgsql AS $$
-- The output columns (id, seq, ...) share names with table columns: in SQL, table columns win.
-- Rows are emitted with RETURN NEXT from the output variables (cheaper than a query per row).
#variable_conflict use_column
DECLARE
    v_start bigint;
    v_last bigint;
    v_msgs bigint;
    v_old messages%ROWTYPE;
    v_target messages%ROWTYPE;
    v_held bigint;
    v_holds boolean;
    v_key bigint;
    -- The seqs and kinds of this batch's new entries, for the outbox (only with endpoints).
    v_hooked boolean := coalesce(cardinality(p_hook_eps), 0) > 0;
    v_seqs bigint[] := '{}';
    v_kinds text[] := '{}';
BEGIN
    INSERT INTO rooms AS r (id, epoch) VALUES (p_room, p_epoch)
    ON CONFLICT (id) DO UPDATE SET last_seq = r.last_seq
    RETURNING r.epoch, r.last_seq, r.msg_count INTO epoch, v_last, v_msgs;
    v_start := v_last;

    FOR i IN 1 .. coalesce(array_length(p_kinds, 1), 0) LOOP
        idx := i;
        outcome := NULL;
        v_holds := false;
        IF p_cids[i] IS NOT NULL THEN
            -- One probe of message_keys; the entry's row only for a repeat (a key whose entry
            -- retention dropped finds nothing, and is taken again).
            SELECT k.seq INTO v_key FROM message_keys k
            WHERE k.room = p_room AND k.user_id = p_users[i] AND k.client_msg_id = p_cids[i];
            IF FOUND THEN
                SELECT * INTO v_old FROM messages m WHERE m.room = p_room AND m.seq = v_key;
                v_holds := FOUND;
            END IF;
        END IF;

        IF NOT v_holds AND p_kinds[i] <> 'message' THEN
            SELECT * INTO v_target FROM messages m
            WHERE m.room = p_room AND m.seq = p_targets[i] AND m.kind = 'message';
            IF NOT FOUND THEN
                outcome := 'not_found';
            ELSIF p_kinds[i] = 'edit' THEN
                IF v_target.user_id <> p_users[i] THEN
                    outcome := 'forbidden';
                ELSIF v_target.deleted_seq IS NOT NULL THEN
                    outcome := 'gone';
                END IF;
            ELSIF p_kinds[i] = 'delete' THEN
                IF v_target.user_id <> p_users[i] AND NOT p_mods[i] THEN
                    outcome := 'forbidden';
                ELSIF v_target.deleted_seq IS NOT NULL THEN
                    -- Deleting what is deleted holds already: the delete entry that did it.
                    SELECT * INTO v_old FROM messages m
                    WHERE m.room = p_room AND m.seq = v_target.deleted_seq;
                    v_holds := true;
                END IF;
            ELSIF v_target.deleted_seq IS NOT NULL THEN
                outcome := 'gone';
            ELSE
                SELECT r.seq INTO v_held FROM reactions r
                WHERE r.room = p_room AND r.target = p_targets[i]
                  AND r.react_key = p_keys[i] AND r.user_id = p_users[i];
                IF FOUND AND p_ops[i] = 'add' THEN
                    -- Held already: the entry that added it.
                    SELECT * INTO v_old FROM messages m WHERE m.room = p_room AND m.seq = v_held;
                    v_holds := true;
                ELSIF NOT FOUND AND p_ops[i] = 'remove' THEN
                    -- Nothing to remove: the target itself.
                    v_old := v_target;
                    v_holds := true;
                END IF;
            END IF;
        END IF;

        IF outcome IS NOT NULL THEN
            -- Refused: only idx, outcome and epoch are set.
            seq := NULL; id := NULL; user_id := NULL; user_name := NULL; body := NULL;
            ts := NULL; client_msg_id := NULL; kind := NULL; target := NULL; react_key := NULL;
            react_op := NULL; edited_ts := NULL; deleted_seq := NULL;
            RETURN NEXT;
            CONTINUE;
        END IF;
        IF v_holds THEN
            outcome := 'duplicate';
            seq := v_old.seq; id := v_old.id; user_id := v_old.user_id;
            user_name := v_old.user_name; body := v_old.body; ts := v_old.ts;
            client_msg_id := v_old.client_msg_id; kind := v_old.kind; target := v_old.target;
            react_key := v_old.react_key; react_op := v_old.react_op;
            edited_ts := v_old.edited_ts; deleted_seq := v_old.deleted_seq;
            RETURN NEXT;
            CONTINUE;
        END IF;

        v_last := v_last + 1;
        outcome := 'ok'; seq := v_last; id := p_ids[i]; user_id := p_users[i];
        user_name := p_names[i]; ts := p_ts; client_msg_id := p_cids[i]; kind := p_kinds[i];
        target := p_targets[i]; react_key := p_keys[i]; react_op := p_ops[i];
        edited_ts := NULL; deleted_seq := NULL;
        -- The new entry's idempotency key (every kind; a key left by dropped history is retaken).
        IF p_cids[i] IS NOT NULL THEN
            INSERT INTO message_keys AS k (room, user_id, client_msg_id, seq, ts)
            VALUES (p_room, p_users[i], p_cids[i], v_last, p_ts)
            ON CONFLICT (room, user_id, client_msg_id) DO UPDATE SET seq = excluded.seq,
                                                                     ts = excluded.ts;
        END IF;
        IF p_kinds[i] = 'message' THEN
            v_msgs := v_msgs + 1;
            body := p_bodies[i];
            INSERT INTO messages (room, seq, id, user_id, user_name, body, ts, client_msg_id, ord)
            VALUES (p_room, v_last, p_ids[i], p_users[i], p_names[i], p_bodies[i], p_ts,
                    p_cids[i], v_msgs);
            IF v_hooked THEN
                v_seqs := v_seqs || v_last;
                v_kinds := v_kinds || p_kinds[i];
            END IF;
            RETURN NEXT;
            CONTINUE;
        END IF;
        body := CASE WHEN p_kinds[i] = 'edit' THEN p_bodies[i] ELSE '' END;
        INSERT INTO messages (room, seq, id, user_id, user_name, body, ts, client_msg_id, kind,
                              target, react_key, react_op)
        VALUES (p_room, v_last, p_ids[i], p_users[i], p_names[i], body, p_ts, p_cids[i],
                p_kinds[i], p_targets[i], p_keys[i], p_ops[i]);
        IF p_kinds[i] = 'edit' THEN
            UPDATE messages SET body = p_bodies[i], edited_ts = p_ts
            WHERE room = p_room AND seq = p_targets[i];
        ELSIF p_kinds[i] = 'delete' THEN
            -- Erase: the body and every edit's body, and the reactions.
            UPDATE messages SET body = '', deleted_seq = v_last
            WHERE room = p_room AND seq = p_targets[i];
            UPDATE messages SET body = '', deleted_seq = v_last
            WHERE room = p_room AND target = p_targets[i] AND kind = 'edit';
            DELETE FROM reactions WHERE room = p_room AND target = p_targets[i];
        ELSIF p_ops[i] = 'add' THEN
            INSERT INTO reactions (room, target, react_key, user_id, seq)
            VALUES (p_room, p_targets[i], p_keys[i], p_users[i], v_last);
        ELSE
            DELETE FROM reactions
            WHERE room = p_room AND target = p_targets[i] AND react_key = p_keys[i]
              AND user_id = p_users[i];
        END IF;
        IF v_hooked THEN
            v_seqs := v_seqs || v_last;
            v_kinds := v_kinds || p_kinds[i];
        END IF;
        RETURN NEXT;
    END LOOP;

    IF v_last > v_start THEN
        UPDATE rooms SET last_seq = v_last, msg_count = v_msgs, last_ts = clock_timestamp()
        WHERE rooms.id = p_room;
        -- The rooms a user has: where they posted (a cursor at 0 until they read).
        INSERT INTO read_cursors (room, user_id)
        SELECT DISTINCT p_room, u FROM unnest(p_users) AS u
        ON CONFLICT DO NOTHING;
        -- The transactional outbox: every endpoint that wants an entry gets its row in this same
        -- commit, and its (endpoint, room) queue counts it.
        IF v_hooked THEN
            WITH added AS (
                INSERT INTO webhook_outbox (endpoint, room, seq)
                SELECT h.ep, p_room, e.s
                FROM unnest(v_seqs, v_kinds) AS e(s, k)
                JOIN unnest(p_hook_eps, p_hook_kinds) AS h(ep, k) ON h.k = e.k
                RETURNING webhook_outbox.endpoint
            )
            INSERT INTO webhook_queues AS q (endpoint, room, pending)
            SELECT a.endpoint, p_room, count(*) FROM added a GROUP BY a.endpoint
            ON CONFLICT (endpoint, room) DO UPDATE SET pending = q.pending + excluded.pending;
        END IF;
    END IF;
END
$$;

-- V2's function, kept for a node of an older version, now the log append's message case.
CREATE OR REPLACE FUNCTION chorus_append(
    p_room text, p_epoch text, p_ids text[], p_users text[], p_names text[], p_bodies text[],
    p_ts timestamptz, p_cids text[]
) RETURNS TABLE (
    idx int, seq bigint, id text, user_id text, user_name text, body text, ts timestamptz,
    client_msg_id text, duplicate boolean, epoch text
) LANGUAGE sql AS $$
    SELECT a.idx, a.seq, a.id, a.user_id, a.user_name, a.body, a.ts, a.client_msg_id,
           a.outcome = 'duplicate', a.epoch
    FROM chorus_log_append(p_room, p_epoch, p_ids, p_users, p_names, p_bodies, p_ts, p_cids,
        array_fill('message'::text, ARRAY[cardinality(p_bodies)]),
        array_fill(NULL::bigint, ARRAY[cardinality(p_bodies)]),
        array_fill(NULL::text, ARRAY[cardinality(p_bodies)]),
        array_fill(NULL::text, ARRAY[cardinality(p_bodies)]),
        array_fill(false, ARRAY[cardinality(p_bodies)]), '{}'::text[], '{}'::text[]) a
$$;

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
    -- The end of the newest partition dropped: every entry before it is gone.
    v_gone timestamptz;
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
            SELECT h.name, h.upper FROM history_partitions h
            WHERE h.upper <= p_now - make_interval(days => p_retention_days)
            ORDER BY h.upper
        LOOP
            EXECUTE format('DROP TABLE %I', v_old.name);
            DELETE FROM history_partitions WHERE name = v_old.name;
            dropped := dropped + 1;
            v_gone := v_old.upper;
        END LOOP;
        IF v_gone IS NOT NULL THEN
            -- The keys of the entries that went with them (one scan of message_keys).
            DELETE FROM message_keys k WHERE k.ts < v_gone;
        END IF;
    END IF;
    RETURN NEXT;
END
$$;

SELECT * FROM chorus_history_partitions(0);
