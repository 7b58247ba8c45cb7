-- Webhooks (PROTOCOL §8): a transactional outbox written by the append itself, per (endpoint,
-- room) queues that dispatchers on any number of nodes lease, and the dead letters.
--
-- The outbox holds references, never bodies: the dispatcher reads the entry when it sends it, so
-- a delete still erases a body everywhere (an event sent after the delete carries the erased entry).

-- One row per event still to deliver. Delivered (or dead-lettered) rows are deleted at once, so the
-- table holds only the backlog.
CREATE TABLE webhook_outbox (
    endpoint text NOT NULL,
    room     text NOT NULL,
    seq      bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (endpoint, room, seq)
);

-- Per (endpoint, room): how many events wait (`pending`), the attempts of the oldest one, when it
-- may be tried next, and who holds the queue. A dispatcher leases a whole queue (so a room's events
-- go out one at a time, in seq order) until `lease_until`; a node that dies lets its leases expire
-- and another node resends from the head, with the same event ids.
CREATE TABLE webhook_queues (
    endpoint    text NOT NULL,
    room        text NOT NULL,
    pending     bigint NOT NULL DEFAULT 0,
    attempts    int NOT NULL DEFAULT 0,
    next_at     timestamptz NOT NULL DEFAULT now(),
    lease_until timestamptz NOT NULL DEFAULT '-infinity',
    lease_token text,
    last_error  text,
    PRIMARY KEY (endpoint, room)
);
CREATE INDEX webhook_queues_due ON webhook_queues (endpoint, next_at) WHERE pending > 0;

-- Events that failed `max_attempts` times; `POST /api/admin/webhooks/dead/{id}/replay` puts one back.
CREATE TABLE webhook_dead (
    id         bigserial PRIMARY KEY,
    endpoint   text NOT NULL,
    room       text NOT NULL,
    seq        bigint NOT NULL,
    attempts   int NOT NULL,
    error      text NOT NULL,
    created_at timestamptz NOT NULL,
    dead_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_dead_by_endpoint ON webhook_dead (endpoint);

-- The V3 append function with the outbox: `p_hook_eps`/`p_hook_kinds` are the (endpoint, entry
-- type) pairs that apply to this room (the node matches room patterns from its configuration).
-- Everything else is V3's function unchanged.
CREATE FUNCTION chorus_log_append(
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
            SELECT * INTO v_old FROM messages m
            WHERE m.room = p_room AND m.user_id = p_users[i] AND m.client_msg_id = p_cids[i];
            v_holds := FOUND;
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


-- The V3 signature stays for a node of the previous version during a rolling deploy (it has no
-- webhook configuration, so it writes no outbox rows).
CREATE OR REPLACE FUNCTION chorus_log_append(
    p_room text, p_epoch text, p_ids text[], p_users text[], p_names text[], p_bodies text[],
    p_ts timestamptz, p_cids text[], p_kinds text[], p_targets bigint[], p_keys text[],
    p_ops text[], p_mods boolean[]
) RETURNS TABLE (
    idx int, outcome text, seq bigint, id text, user_id text, user_name text, body text,
    ts timestamptz, client_msg_id text, kind text, target bigint, react_key text, react_op text,
    edited_ts timestamptz, deleted_seq bigint, epoch text
) LANGUAGE sql AS $$
    SELECT * FROM chorus_log_append(p_room, p_epoch, p_ids, p_users, p_names, p_bodies, p_ts,
        p_cids, p_kinds, p_targets, p_keys, p_ops, p_mods, '{}'::text[], '{}'::text[])
$$;
