/** One entry of a room's ordered log. Every type advances the room's cursor (`seq`). */
export interface EntryBase {
    room: string;
    seq: number;
    id: string;
    user: string;
    name?: string;
    ts: string;
    clientMsgId?: string;
}
/** One reaction key on a message: how many hold it, and up to 20 of them. */
export interface Reaction {
    key: string;
    count: number;
    users: string[];
}
/** A chat message, in its current state when it came from the store (backfill, history). */
export interface Message extends EntryBase {
    type: "message";
    body: string;
    /** When it was last edited (history and backfill; live edits arrive as `edit` entries). */
    editedTs?: string;
    deleted?: boolean;
    reactions?: Reaction[];
}
export interface EditEntry extends EntryBase {
    type: "edit";
    target: number;
    body: string;
    deleted?: boolean;
}
export interface DeleteEntry extends EntryBase {
    type: "delete";
    target: number;
}
export interface ReactEntry extends EntryBase {
    type: "react";
    target: number;
    key: string;
    op: "add" | "remove";
}
export type Entry = Message | EditEntry | DeleteEntry | ReactEntry;
/** The server's answer once an entry is committed (or was already: `duplicate`). */
export interface Ack {
    room: string;
    seq: number;
    id: string;
    ts: string;
    clientMsgId: string;
    duplicate: boolean;
}
/** What `join` resolves with, and the `joined` event (also after every automatic re-join). */
export interface Joined {
    room: string;
    epoch?: string;
    /** The room's head when joined; entries after it (or after `since`) follow live. */
    lastSeq: number;
    /** True: every entry after `since` follows, gap-free. False without `since`, or when the gap
     * since it could not be filled (then a `reset` event: reload with `history`). */
    recovered: boolean;
    /** This user's read cursor and unread count, when the server could tell. */
    readSeq?: number;
    unread?: number;
}
export interface ReadState {
    room: string;
    seq: number;
    unread: number;
    lastSeq: number;
}
export interface PresenceUser {
    user: string;
    name?: string;
}
export interface HistoryPage {
    room: string;
    epoch?: string;
    lastSeq: number;
    messages: Message[];
}
export interface MyRoom {
    room: string;
    lastSeq: number;
    readSeq: number;
    unread: number;
    lastMessage?: Message;
}
/** A page of `myRoomsPage()`: pass `next` as `after` for the following one. */
export interface MyRoomsPage {
    rooms: MyRoom[];
    next?: string;
}
/** A message `search()` found: its current text, and `highlight`, an HTML fragment of it (escaped by
 * the server) with the matching words in `<mark>`. Insert `highlight` as HTML, never `body`. */
export interface SearchHit {
    room: string;
    seq: number;
    user: string;
    name?: string;
    body: string;
    ts: string;
    highlight: string;
}
/** A page of `search()`, newest first: pass `next` as `before` for the following one. */
export interface SearchPage {
    results: SearchHit[];
    next?: string;
}
/** A send, edit, delete or react the client holds until the server acks it. */
export interface PendingEntry {
    clientMsgId: string;
    room: string;
    kind: "send" | "edit" | "delete" | "react";
    body?: string;
    target?: number;
    /** `queued`: waiting for its turn or a connection; `sending`: on the wire; `retrying`: waiting after `rate_limited` or an outage. */
    status: "queued" | "sending" | "retrying";
    attempts: number;
    /** While `retrying`: the code that made it wait (`rate_limited`, `unavailable`, `internal`). */
    retryReason?: string;
}
/** `connecting` (first attempt) → `open` ⇄ `reconnecting` → `closed` (by `close()` or a fatal refusal). */
export type ConnectionState = "connecting" | "open" | "reconnecting" | "closed";
export type TransportKind = "websocket" | "sse" | "poll";
/** Just enough of the WebSocket interface (the browser's, Node 22's, or the `ws` package's). */
export interface WebSocketLike {
    readonly readyState: number;
    send(data: string): void;
    close(code?: number, reason?: string): void;
    onopen: ((ev: any) => void) | null;
    onmessage: ((ev: any) => void) | null;
    onclose: ((ev: any) => void) | null;
    onerror: ((ev: any) => void) | null;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;
export interface ChorusOptions {
    /** The node (or load balancer) to talk to, e.g. `https://chat.example.com`. Default: the page's origin. */
    url?: string;
    /** A JWT. Give `getToken` too (or instead) so the client can renew it. */
    token?: string;
    /** Returns a fresh JWT. Called before the current one expires, when the server refuses it, and at `connect()` without `token`. */
    getToken?: () => string | Promise<string>;
    /** `auto` (default): WebSocket where there is one, else Server-Sent Events, else long-polling. */
    transport?: "auto" | TransportKind;
    /** A WebSocket constructor, for platforms without a global one (e.g. the `ws` package on Node 18–21). */
    WebSocket?: WebSocketConstructor;
    /** Reconnect backoff: full jitter between 0 and min(maxMs, minMs·2^attempt). Default 500 ms … 30 s. */
    backoff?: {
        minMs?: number;
        maxMs?: number;
    };
    /** Give up on a WebSocket that has not said hello after this long, and try again. Default 15 s. */
    connectTimeoutMs?: number;
    /** The `fetch` to use (default: the global one). */
    fetch?: typeof fetch;
}
/** Event name → what its listeners receive. */
export interface ChorusEvents {
    state: {
        state: ConnectionState;
        previous: ConnectionState;
        reason?: string;
    };
    message: {
        room: string;
        message: Message;
    };
    entry: {
        room: string;
        entry: EditEntry | DeleteEntry | ReactEntry;
    };
    joined: Joined;
    read: ReadState;
    unread: {
        room: string;
        unread: number;
    };
    presence: {
        room: string;
        users: PresenceUser[];
    };
    typing: {
        room: string;
        user: string;
    };
    reset: {
        room: string;
        lastSeq: number;
    };
    pending: {
        room: string;
        pending: PendingEntry[];
    };
    token: {
        expiresAt?: number;
    };
    error: import("./errors.js").ChorusError;
}
