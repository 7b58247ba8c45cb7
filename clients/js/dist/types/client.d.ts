import type { Ack, ChorusEvents, ChorusOptions, ConnectionState, HistoryPage, Joined, MyRoom, MyRoomsPage, PendingEntry, PresenceUser, ReadState, SearchPage, TransportKind } from "./types.js";
import { Emitter } from "./util.js";
/** Room ids the server accepts (PROTOCOL.md §2). */
export declare const ROOM_PATTERN: RegExp;
export declare const isValidRoom: (room: string) => boolean;
/** The server's default `limits.max_body_bytes` (a node that says otherwise in `hello` wins). */
export declare const DEFAULT_MAX_BODY_BYTES = 4096;
export declare class Chorus extends Emitter<ChorusEvents> {
    /** The connection state; listen to `state` for changes. */
    state: ConnectionState;
    /** The user id the server knows this client as (the token's `sub`). */
    user: string | null;
    /** The name others see on this user's entries: the token's `name` claim, else the user id. */
    displayName: string | null;
    private token?;
    private readonly base;
    private readonly opts;
    private kind;
    private readonly WS?;
    private readonly fetch;
    private readonly backoff;
    private readonly connectTimeoutMs;
    private maxBodyBytes;
    private rooms;
    private reads;
    private openWaiters;
    /** The current connection's transport; a dropped one is never called back. */
    private current;
    /** A connection opening with a renewed token; it replaces `current` once the node says hello. */
    private next;
    private ws;
    private attempt;
    /** The last connection ended with a drain: reconnect within DRAIN_BACKOFF_MAX_MS. */
    private draining;
    private authFailures;
    private dials;
    private timers;
    private refreshTimer?;
    private tokenRequest;
    private refCounter;
    /** What every room is given of this client. */
    private readonly roomHost;
    constructor(options?: ChorusOptions);
    /** The transport in use: `websocket`, or `sse` / `poll` (reads) with REST (writes). */
    get transport(): TransportKind;
    /** Connects (if not already) and resolves once open; rejects if the client closes for good first. */
    connect(): Promise<void>;
    /** While `reconnecting`: try now instead of waiting out the backoff (a "retry now" button). */
    reconnectNow(): void;
    /** Closes for good (not an error): unsent entries and unanswered joins are rejected with `closed`. */
    close(): void;
    private dial;
    /** A transport of the current kind, with a host that goes quiet once it is not current. */
    private newTransport;
    private retry;
    /** Forget everything tied to the current connection; rooms stay, to be joined again. */
    private dropConnection;
    private shutdown;
    /** A refusal that reconnecting cannot cure: tell the app, then close. */
    private fatal;
    /**
     * Token renewal without a visible reconnect: the connection with the new token said hello, so it
     * becomes the current one (the state stays `open`). Every room is joined on it with `since`, so
     * nothing is missed or repeated across the switch; unacked entries go again with their
     * client_msg_id, and reads waiting for an answer are asked again on it.
     */
    private moveTo;
    private opened;
    private setState;
    private later;
    /** Asks the app for a fresh token (one request at a time). */
    private renewToken;
    /** The server refused the token (4001, 401): renew it and reconnect, or close if we cannot. */
    private authFailed;
    /** Renew a little before expiry, then move to the new token (resuming every room). */
    private scheduleRefresh;
    private onFrame;
    /** An `error` answering our request `ref`: a join, an entry, or a read. */
    private onRefused;
    private onRead;
    /** Whether the server answers and takes the token: `ok`, `auth` (401) or `down`. */
    private probe;
    private authHeaders;
    /** An authenticated REST call; a refused token is renewed once. */
    private api;
    /**
     * Joins `room` (now, or as soon as the connection opens) and resolves with its state. With `since`,
     * every entry after that seq is delivered first. Rejects with a ChorusError naming the room.
     * After any reconnect the client joins again by itself, resuming after the last entry it delivered.
     */
    join(room: string, options?: {
        since?: number;
    }): Promise<Joined>;
    /** Leaves `room`: no more events from it; its unsent entries are rejected. */
    leave(room: string): void;
    /** The rooms joined, with their cursor and unread count. */
    joinedRooms(): {
        room: string;
        lastSeq: number | null;
        unread: number;
    }[];
    /** Unread messages in `room`: exact at each `joined`/`read` from the server, counted from live entries between. */
    unread(room: string): number;
    presence(room: string): PresenceUser[];
    private startRoom;
    private joinFailed;
    private dropRoom;
    /**
     * Posts `body` to `room` and resolves with the ack once it is committed. Entries to one room are
     * committed in the order of these calls, each exactly once (the client keeps its client_msg_id
     * across retries and reconnects); while offline they wait, listed by `pending()`.
     */
    send(room: string, body: string, options?: {
        clientMsgId?: string;
    }): Promise<Ack>;
    /** Replaces the body of your message `seq`. */
    edit(room: string, seq: number, body: string, options?: {
        clientMsgId?: string;
    }): Promise<Ack>;
    /** Deletes message `seq` (yours, or any as a moderator). */
    delete(room: string, seq: number, options?: {
        clientMsgId?: string;
    }): Promise<Ack>;
    /** Adds (`add`) or removes (`remove`) your reaction `key` on message `seq`. */
    react(room: string, seq: number, key: string, op?: "add" | "remove", options?: {
        clientMsgId?: string;
    }): Promise<Ack>;
    /** Entries not yet acked, in the order they will be committed (all rooms, or one). */
    pending(room?: string): PendingEntry[];
    private enqueue;
    /** Moves your read cursor in `room` to `seq`; every one of your devices hears it. */
    markRead(room: string, seq: number): Promise<ReadState>;
    /** Tells the room you are typing (WebSocket only; ephemeral). */
    typing(room: string): void;
    /** Messages before `before` (or the latest), ascending, in their current state. */
    history(room: string, options?: {
        before?: number;
        limit?: number;
    }): Promise<HistoryPage>;
    /** Your rooms, most recent first, with unread counts (the first `limit`, default 100). */
    myRooms(options?: {
        limit?: number;
    }): Promise<MyRoom[]>;
    /** A page of your rooms; pass the page's `next` as `after` for the one after it. */
    myRoomsPage(options?: {
        after?: string;
        limit?: number;
    }): Promise<MyRoomsPage>;
    /**
     * Full-text search in the rooms this token may read (or in `room`), newest first: every word must
     * match; `"a phrase"`, `or` and `-word` work as in a web search box. Pass a page's `next` as `before`.
     */
    search(q: string, options?: {
        room?: string;
        before?: string;
        limit?: number;
    }): Promise<SearchPage>;
    private ref;
}
