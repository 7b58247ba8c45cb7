-- One round trip per group commit: lock the room row, return originals for repeated
-- (user, client_msg_id), insert the new messages with the next seqs, advance the counter. Called as a
-- single statement, so it is one transaction: all of the batch commits, or none of it.
-- Rows come back in input order (idx = 1-based position in the arrays).
CREATE FUNCTION chorus_append(
    p_room text, p_epoch text, p_ids text[], p_users text[], p_names text[], p_bodies text[],
    p_ts timestamptz, p_cids text[]
) RETURNS TABLE (
    idx int, seq bigint, id text, user_id text, user_name text, body text, ts timestamptz,
    client_msg_id text, duplicate boolean, epoch text
) LANGUAGE plpgsql AS $$
-- The output columns (id, seq, ...) share names with table columns: table columns win.
#variable_conflict use_column
DECLARE
    v_epoch text;
    v_last bigint;
    v_old messages%ROWTYPE;
BEGIN
    -- Takes the row lock that serialises every append to this room until commit.
    INSERT INTO rooms AS r (id, epoch) VALUES (p_room, p_epoch)
    ON CONFLICT (id) DO UPDATE SET last_seq = r.last_seq
    RETURNING r.epoch, r.last_seq INTO v_epoch, v_last;

    FOR i IN 1 .. coalesce(array_length(p_bodies, 1), 0) LOOP
        IF p_cids[i] IS NOT NULL THEN
            SELECT * INTO v_old FROM messages m
            WHERE m.room = p_room AND m.user_id = p_users[i] AND m.client_msg_id = p_cids[i];
            IF FOUND THEN
                RETURN QUERY SELECT i, v_old.seq, v_old.id, v_old.user_id, v_old.user_name, v_old.body,
                                    v_old.ts, v_old.client_msg_id, true, v_epoch;
                CONTINUE;
            END IF;
        END IF;
        v_last := v_last + 1;
        INSERT INTO messages (room, seq, id, user_id, user_name, body, ts, client_msg_id)
        VALUES (p_room, v_last, p_ids[i], p_users[i], p_names[i], p_bodies[i], p_ts, p_cids[i]);
        RETURN QUERY SELECT i, v_last, p_ids[i], p_users[i], p_names[i], p_bodies[i], p_ts, p_cids[i],
                            false, v_epoch;
    END LOOP;

    UPDATE rooms SET last_seq = v_last WHERE rooms.id = p_room;
END
$$;
