-- Rooms carry the per-room sequence counter. `last_seq` is updated in the same transaction that inserts
-- the messages, under the row lock, so seqs are gap-free and commit in order (a plain SEQUENCE would
-- hand out values that commit out of order, and a reader doing `seq > last` would skip messages).
CREATE TABLE rooms (
    id         text PRIMARY KEY,
    -- Changes only if a room's history is reset; clients compare it to know whether `since` still applies.
    epoch      text NOT NULL,
    last_seq   bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE messages (
    room          text NOT NULL REFERENCES rooms (id),
    seq           bigint NOT NULL,
    id            text NOT NULL,
    user_id       text NOT NULL,
    user_name     text,
    body          text NOT NULL,
    ts            timestamptz NOT NULL,
    client_msg_id text,
    PRIMARY KEY (room, seq)
);

-- Idempotent sends: one message per (room, user, client_msg_id).
CREATE UNIQUE INDEX messages_idempotency ON messages (room, user_id, client_msg_id)
    WHERE client_msg_id IS NOT NULL;
