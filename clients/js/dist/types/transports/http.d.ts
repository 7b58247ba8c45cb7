import type { PostEntry, Transport, TransportHost } from "../transport.js";
export declare class HttpTransport implements Transport {
    readonly kind: "sse" | "poll";
    private readonly host;
    private readonly base;
    private readonly fetch;
    readonly renewal: "rejoin";
    private dead;
    private streams;
    constructor(kind: "sse" | "poll", host: TransportHost, base: string, fetch: typeof globalThis.fetch);
    open(): void;
    close(): void;
    private roomUrl;
    private headers;
    /** A request failed for want of a server: reconnect everything. */
    private lost;
    /** Reads the head; answers `joined` (recovered when `since` is still good), then streams. */
    join(room: string, since: number | null, epoch: string | undefined, ref: string): void;
    private joinRoom;
    leave(room: string): void;
    private streamSse;
    private streamPoll;
    /** A send, edit, delete or react over REST, with its client_msg_id as the Idempotency-Key. */
    post(e: PostEntry): boolean;
    private rest;
    /** Over HTTP the client moves the cursor with its own REST call. */
    markRead(): boolean;
    typing(): void;
}
