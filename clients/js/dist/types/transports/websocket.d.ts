import type { PostEntry, Transport, TransportHost } from "../transport.js";
import type { WebSocketConstructor } from "../types.js";
/** What the client remembers of its WebSockets across attempts. */
export interface WebSocketRecord {
    /** One has said hello (then a failure is an outage, never a reason to fall back). */
    worked: boolean;
    /** Attempts in a row that never opened while HTTP answered. */
    failures: number;
    /** The app asked for WebSocket only: never fall back. */
    only: boolean;
}
export declare class WebSocketTransport implements Transport {
    private readonly host;
    private readonly base;
    private readonly WS;
    private readonly connectTimeoutMs;
    private readonly record;
    readonly kind: "websocket";
    readonly renewal: "reconnect";
    private ws;
    private dead;
    private hello;
    private lastHeard;
    private heartbeat?;
    private timeout?;
    constructor(host: TransportHost, base: string, WS: WebSocketConstructor, connectTimeoutMs: number, record: WebSocketRecord);
    open(token: string): void;
    close(): void;
    private closed;
    private send;
    private startHeartbeat;
    join(room: string, since: number | null, epoch: string | undefined, ref: string): void;
    leave(room: string, ref: string): void;
    post(e: PostEntry): boolean;
    markRead(room: string, seq: number, ref: string): boolean;
    typing(room: string): void;
}
