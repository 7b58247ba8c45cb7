-- The room log (PROTOCOL §7): edits, deletes and reactions are entries of the same per-room
-- sequence as messages; read cursors and reactions are state beside it.
--
-- Nothing is renumbered or rewritten: the new columns have constant defaults (a catalogue change in
-- Postgres ≥ 11, no table rewrite), so every existing row becomes a `message` entry with its seq.

-- `kind`: message | edit | delete | react. `target`: the message an edit/delete/react is about.
-- `ord` on `message` rows: how many message entries the room had up to and including this one
-- (NULL on rows written before V3, which are all messages numbered from 1: their ord is their seq).
-- On `message` rows, `body` is the current body (after the last edit), `edited_ts` the last edit's
-- time, and `deleted_seq` the seq of the delete entry (NULL while not deleted). On `edit` rows,
-- `deleted_seq` is set too when their target is deleted (their body is erased with it).
ALTER TABLE messages
    ADD COLUMN kind        text NOT NULL DEFAULT 'message',
    ADD COLUMN target      bigint,
    ADD COLUMN react_key   text,
    ADD COLUMN react_op    text,
    ADD COLUMN edited_ts   timestamptz,
    ADD COLUMN deleted_seq bigint,
    ADD COLUMN ord         bigint;

-- When the room's last entry was committed (microseconds, so rooms rarely tie): `GET /api/me/rooms`
-- lists the most recent first. `msg_count`: the room's message entries (the next `ord`).
ALTER TABLE rooms ADD COLUMN last_ts timestamptz, ADD COLUMN msg_count bigint NOT NULL DEFAULT 0;
UPDATE rooms SET last_ts = (SELECT max(m.ts) FROM messages m WHERE m.room = rooms.id),
                 msg_count = last_seq;

-- Unread counts without counting every unread message (src/store/postgres.rs `unread_sql`): the
-- ord of the last message at or before a seq (the primary key, a row or two back), a user's own
-- messages, and the deleted ones. One more index on every message insert (messages_own); an
-- index for the ord lookups too cost more on the append path than it saved on reads.
CREATE INDEX messages_own ON messages (room, user_id, seq) WHERE kind = 'message';
CREATE INDEX messages_deleted ON messages (room, seq) INCLUDE (user_id, deleted_seq)
    WHERE kind = 'message' AND deleted_seq IS NOT NULL;
-- A delete erases the bodies of its target's edits: find them without scanning the room.
CREATE INDEX messages_edits ON messages (room, target) WHERE kind = 'edit';

-- Who holds which reaction now; `seq` is the `react` entry that added it.
CREATE TABLE reactions (
    room      text NOT NULL,
    target    bigint NOT NULL,
    react_key text NOT NULL,
    user_id   text NOT NULL,
    seq       bigint NOT NULL,
    PRIMARY KEY (room, target, react_key, user_id)
);

-- A user's read cursor per room, and the rooms a user has (posted in, or read): a row with
-- read_seq 0 is written the first time a user posts in a room.
-- No foreign key to rooms: its check would take a share lock on the room row that every append
-- holds, and a first read would wait for (or deadlock with) the room's group commit.
CREATE TABLE read_cursors (
    room     text NOT NULL,
    user_id  text NOT NULL,
    read_seq bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (room, user_id)
);
CREATE INDEX read_cursors_by_user ON read_cursors (user_id);
INSERT INTO read_cursors (room, user_id) SELECT DISTINCT room, user_id FROM messages;

-- One round trip per group commit, for every entry type: under the room row lock, answer repeated
-- (user, client_msg_id) with the original, check each entry's rule against the current state
-- (which includes the earlier entries of the same batch), insert the entries that pass with the
-- next seqs and apply their effect, advance the counter. One statement, so one transaction.
-- Rows come back in input order (idx = 1-based position); `outcome` is ok | duplicate |
-- not_found | forbidden | gone, and only `ok` rows took a seq.
--
-- `chorus_append` (V2) stays: a node of the previous version keeps posting messages with it
-- during a rolling deploy (its rows are `message` entries by default).
CREATE FUNCTION chorus_log_append(
    p_room text, p_epoch text, p_ids text[], p_users text[], p_names text[], p_bodies text[],
    p_ts timestamptz, p_cids text[], p_kinds text[], p_targets bigint[], p_keys text[],
    p_ops text[], p_mods boolean[]
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
        RETURN NEXT;
    END LOOP;

    IF v_last > v_start THEN
        UPDATE rooms SET last_seq = v_last, msg_count = v_msgs, last_ts = clock_timestamp()
        WHERE rooms.id = p_room;
        -- The rooms a user has: where they posted (a cursor at 0 until they read).
        INSERT INTO read_cursors (room, user_id)
        SELECT DISTINCT p_room, u FROM unnest(p_users) AS u
        ON CONFLICT DO NOTHING;
    END IF;
END
$$;
