-- The SQL functions nodes call, as they are now: the one place each body is written.
--
-- The numbered migrations (V1__…) change tables and are applied once, in order, by refinery.
-- This file is applied after them whenever its contents changed (src/store/migrate.rs keeps its
-- version and checksum in chorus_functions), inside the same migration lock. Every statement
-- here is CREATE OR REPLACE, so applying it again is harmless. A node of an older release never
-- applies an older copy over a newer one (the version only goes up), and a function an older
-- release still calls keeps its signature: it becomes a wrapper of the current one.
--
-- A change to a function is a change to this file (and FUNCTIONS_VERSION in migrate.rs), so its
-- history is this file's history.

-- Appends a batch of log entries to a room (PROTOCOL §3, §7) in one statement: lock the room row
-- (created if new), and for each entry, in order: return the original of a repeated
-- client_msg_id ('duplicate'), check an edit/delete/react against the room's state including the
-- batch's earlier entries ('not_found', 'forbidden', 'gone', or 'duplicate' when it already
-- holds), else insert it with the next seq ('ok'). Then advance the head, make the posters'
-- cursors, and write the outbox rows of the endpoints in p_hooks, all in the same commit.
--
-- The common batch takes a set-based path with the same outcome: messages only, no client_msg_id
-- repeated within the batch and none known to the room (one probe of message_keys for the whole
-- batch, under the room's row lock, so no concurrent append can add one). Then every entry is 'ok'
-- and numbered in order, and the keys and the messages are one INSERT each instead of a probe and
-- an insert per entry (issue 29: the row-at-a-time loop was the append's main cost). Any other
-- batch (an edit, delete or reaction, a retry) goes entry by entry.
--
-- p_entries: [{"id","user","name"?,"kind","body","cid"?,"target"?,"key"?,"op"?,"mod"?}, …]
-- p_hooks:   [{"endpoint","kind"}, …] (the webhook endpoints that want entries of that kind)
CREATE OR REPLACE FUNCTION chorus_append_entries(
    p_room text, p_epoch text, p_ts timestamptz, p_entries jsonb, p_hooks jsonb DEFAULT '[]'
) RETURNS TABLE (
    idx int, outcome text, seq bigint, id text, user_id text, user_name text, body text,
    ts timestamptz, client_msg_id text, kind text, target bigint, react_key text, react_op text,
    edited_ts timestamptz, deleted_seq bigint, epoch text
) LANGUAGE plpgsql AS $$
-- The output columns (id, seq, ...) share names with table columns: in SQL, table columns win.
-- Rows are emitted with RETURN NEXT from the output variables (cheaper than a query per row).
#variable_conflict use_column
DECLARE
    e record;
    v_start bigint;
    v_last bigint;
    v_msgs bigint;
    v_old messages%ROWTYPE;
    v_target messages%ROWTYPE;
    v_held bigint;
    v_holds boolean;
    v_key bigint;
    -- The seqs and kinds of this batch's new entries, for the outbox (only with endpoints).
    v_hooked boolean := jsonb_array_length(p_hooks) > 0;
    v_seqs bigint[] := '{}';
    v_kinds text[] := '{}';
    v_plain boolean;
    v_n bigint;
    v_epoch text;
BEGIN
    INSERT INTO rooms AS r (id, epoch) VALUES (p_room, p_epoch)
    ON CONFLICT (id) DO UPDATE SET last_seq = r.last_seq
    RETURNING r.epoch, r.last_seq, r.msg_count INTO epoch, v_last, v_msgs;
    v_start := v_last;
    v_epoch := epoch;

    SELECT coalesce(bool_and(x.d->>'kind' = 'message'), false)
           AND count(*) FILTER (WHERE x.d ? 'cid')
               = count(DISTINCT (x.d->>'user', x.d->>'cid')) FILTER (WHERE x.d ? 'cid'),
           count(*)
    INTO v_plain, v_n
    FROM jsonb_array_elements(p_entries) AS x(d);
    IF v_plain THEN
        -- A primary-key probe per entry, as a LATERAL with LIMIT so that no plan can turn it into
        -- a hash join over all of the room's keys (a generic plan did, at 2.5x the cost).
        v_plain := NOT EXISTS (
            SELECT 1 FROM jsonb_array_elements(p_entries) AS x(d)
            CROSS JOIN LATERAL (
                SELECT 1 FROM message_keys k
                WHERE k.room = p_room AND k.user_id = x.d->>'user'
                  AND k.client_msg_id = x.d->>'cid'
                LIMIT 1) AS hit);
    END IF;
    IF v_plain THEN
        INSERT INTO message_keys (room, user_id, client_msg_id, seq, ts)
        SELECT p_room, x.d->>'user', x.d->>'cid', v_last + x.n, p_ts
        FROM jsonb_array_elements(p_entries) WITH ORDINALITY AS x(d, n)
        WHERE x.d ? 'cid';
        RETURN QUERY
        WITH added AS (
            INSERT INTO messages AS m (room, seq, id, user_id, user_name, body, ts, client_msg_id,
                                       ord)
            SELECT p_room, v_last + x.n, x.d->>'id', x.d->>'user', x.d->>'name',
                   coalesce(x.d->>'body', ''), p_ts, x.d->>'cid', v_msgs + x.n
            FROM jsonb_array_elements(p_entries) WITH ORDINALITY AS x(d, n)
            RETURNING m.seq, m.id, m.user_id, m.user_name, m.body, m.ts, m.client_msg_id
        )
        SELECT (a.seq - v_last)::int, 'ok'::text, a.seq, a.id, a.user_id, a.user_name, a.body,
               a.ts, a.client_msg_id, 'message'::text, NULL::bigint, NULL::text, NULL::text,
               NULL::timestamptz, NULL::bigint, v_epoch
        FROM added a ORDER BY a.seq;
        IF v_hooked THEN
            v_seqs := ARRAY(SELECT generate_series(v_last + 1, v_last + v_n));
            v_kinds := array_fill('message'::text, ARRAY[v_n::int]);
        END IF;
        v_last := v_last + v_n;
        v_msgs := v_msgs + v_n;
    END IF;

    FOR e IN
        SELECT x.n::int AS n, x.d->>'id' AS eid, x.d->>'user' AS euser, x.d->>'name' AS ename,
               coalesce(x.d->>'body', '') AS ebody, x.d->>'cid' AS ecid, x.d->>'kind' AS ekind,
               (x.d->>'target')::bigint AS etarget, x.d->>'key' AS ekey, x.d->>'op' AS eop,
               coalesce((x.d->>'mod')::boolean, false) AS emod
        FROM jsonb_array_elements(p_entries) WITH ORDINALITY AS x(d, n)
        WHERE NOT v_plain
        ORDER BY x.n
    LOOP
        idx := e.n;
        outcome := NULL;
        v_holds := false;
        IF e.ecid IS NOT NULL THEN
            -- One probe of message_keys; the entry's row only for a repeat (a key whose entry
            -- retention dropped finds nothing, and is taken again).
            SELECT k.seq INTO v_key FROM message_keys k
            WHERE k.room = p_room AND k.user_id = e.euser AND k.client_msg_id = e.ecid;
            IF FOUND THEN
                SELECT * INTO v_old FROM messages m WHERE m.room = p_room AND m.seq = v_key;
                v_holds := FOUND;
            END IF;
        END IF;

        IF NOT v_holds AND e.ekind <> 'message' THEN
            SELECT * INTO v_target FROM messages m
            WHERE m.room = p_room AND m.seq = e.etarget AND m.kind = 'message';
            IF NOT FOUND THEN
                outcome := 'not_found';
            ELSIF e.ekind = 'edit' THEN
                IF v_target.user_id <> e.euser THEN
                    outcome := 'forbidden';
                ELSIF v_target.deleted_seq IS NOT NULL THEN
                    outcome := 'gone';
                END IF;
            ELSIF e.ekind = 'delete' THEN
                IF v_target.user_id <> e.euser AND NOT e.emod THEN
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
                WHERE r.room = p_room AND r.target = e.etarget
                  AND r.react_key = e.ekey AND r.user_id = e.euser;
                IF FOUND AND e.eop = 'add' THEN
                    -- Held already: the entry that added it.
                    SELECT * INTO v_old FROM messages m WHERE m.room = p_room AND m.seq = v_held;
                    v_holds := true;
                ELSIF NOT FOUND AND e.eop = 'remove' THEN
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
        outcome := 'ok'; seq := v_last; id := e.eid; user_id := e.euser;
        user_name := e.ename; ts := p_ts; client_msg_id := e.ecid; kind := e.ekind;
        target := e.etarget; react_key := e.ekey; react_op := e.eop;
        edited_ts := NULL; deleted_seq := NULL;
        -- The new entry's idempotency key (every kind; a key left by dropped history is retaken).
        IF e.ecid IS NOT NULL THEN
            INSERT INTO message_keys AS k (room, user_id, client_msg_id, seq, ts)
            VALUES (p_room, e.euser, e.ecid, v_last, p_ts)
            ON CONFLICT (room, user_id, client_msg_id) DO UPDATE SET seq = excluded.seq,
                                                                     ts = excluded.ts;
        END IF;
        IF e.ekind = 'message' THEN
            v_msgs := v_msgs + 1;
            body := e.ebody;
            INSERT INTO messages (room, seq, id, user_id, user_name, body, ts, client_msg_id, ord)
            VALUES (p_room, v_last, e.eid, e.euser, e.ename, e.ebody, p_ts, e.ecid, v_msgs);
        ELSE
            body := CASE WHEN e.ekind = 'edit' THEN e.ebody ELSE '' END;
            INSERT INTO messages (room, seq, id, user_id, user_name, body, ts, client_msg_id,
                                  kind, target, react_key, react_op)
            VALUES (p_room, v_last, e.eid, e.euser, e.ename, body, p_ts, e.ecid, e.ekind,
                    e.etarget, e.ekey, e.eop);
            IF e.ekind = 'edit' THEN
                UPDATE messages SET body = e.ebody, edited_ts = p_ts
                WHERE room = p_room AND seq = e.etarget;
            ELSIF e.ekind = 'delete' THEN
                -- Erase: the body and every edit's body, and the reactions.
                UPDATE messages SET body = '', deleted_seq = v_last
                WHERE room = p_room AND seq = e.etarget;
                UPDATE messages SET body = '', deleted_seq = v_last
                WHERE room = p_room AND target = e.etarget AND kind = 'edit';
                DELETE FROM reactions WHERE room = p_room AND target = e.etarget;
            ELSIF e.eop = 'add' THEN
                INSERT INTO reactions (room, target, react_key, user_id, seq)
                VALUES (p_room, e.etarget, e.ekey, e.euser, v_last);
            ELSE
                DELETE FROM reactions
                WHERE room = p_room AND target = e.etarget AND react_key = e.ekey
                  AND user_id = e.euser;
            END IF;
        END IF;
        IF v_hooked THEN
            v_seqs := v_seqs || v_last;
            v_kinds := v_kinds || e.ekind;
        END IF;
        RETURN NEXT;
    END LOOP;

    IF v_last > v_start THEN
        UPDATE rooms SET last_seq = v_last, msg_count = v_msgs, last_ts = clock_timestamp()
        WHERE rooms.id = p_room;
        -- The rooms a user has: where they posted (a cursor at 0 until they read).
        INSERT INTO read_cursors (room, user_id)
        SELECT DISTINCT p_room, x.d->>'user' FROM jsonb_array_elements(p_entries) AS x(d)
        ON CONFLICT DO NOTHING;
        -- The transactional outbox: every endpoint that wants an entry gets its row in this same
        -- commit, and its (endpoint, room) queue counts it.
        IF v_hooked THEN
            WITH added AS (
                INSERT INTO webhook_outbox (endpoint, room, seq)
                SELECT h.endpoint, p_room, n.s
                FROM unnest(v_seqs, v_kinds) AS n(s, k)
                JOIN jsonb_to_recordset(p_hooks) AS h(endpoint text, kind text) ON h.kind = n.k
                RETURNING webhook_outbox.endpoint
            )
            INSERT INTO webhook_queues AS q (endpoint, room, pending)
            SELECT a.endpoint, p_room, count(*) FROM added a GROUP BY a.endpoint
            ON CONFLICT (endpoint, room) DO UPDATE SET pending = q.pending + excluded.pending;
        END IF;
    END IF;
END
$$;

-- The positional form nodes before 0.3 call (V5's signature; its V4 and V2 forms call it in turn):
-- a wrapper of chorus_append_entries, so every node runs the same body during a rolling upgrade.
CREATE OR REPLACE FUNCTION chorus_log_append(
    p_room text, p_epoch text, p_ids text[], p_users text[], p_names text[], p_bodies text[],
    p_ts timestamptz, p_cids text[], p_kinds text[], p_targets bigint[], p_keys text[],
    p_ops text[], p_mods boolean[],
    p_hook_eps text[], p_hook_kinds text[]
) RETURNS TABLE (
    idx int, outcome text, seq bigint, id text, user_id text, user_name text, body text,
    ts timestamptz, client_msg_id text, kind text, target bigint, react_key text, react_op text,
    edited_ts timestamptz, deleted_seq bigint, epoch text
) LANGUAGE sql AS $$
    SELECT * FROM chorus_append_entries(
        p_room, p_epoch, p_ts,
        (SELECT coalesce(jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                    'id', p_ids[i], 'user', p_users[i], 'name', p_names[i], 'kind', p_kinds[i],
                    'body', p_bodies[i], 'cid', p_cids[i], 'target', p_targets[i],
                    'key', p_keys[i], 'op', p_ops[i], 'mod', p_mods[i])) ORDER BY i), '[]')
         FROM generate_subscripts(p_kinds, 1) AS i),
        (SELECT coalesce(jsonb_agg(jsonb_build_object('endpoint', p_hook_eps[i],
                                                      'kind', p_hook_kinds[i]) ORDER BY i), '[]')
         FROM generate_subscripts(p_hook_eps, 1) AS i))
$$;
