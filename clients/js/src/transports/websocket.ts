// The WebSocket transport: one socket for everything (PROTOCOL.md §3), an application ping to
// notice a dead path the socket itself does not, and the close codes read as the client should
// act on them. A socket that closes before `hello` is told apart from an outage by one REST
// probe (the WebSocket API hides the status of a refused upgrade: a 401 looks like a network
// failure), and a WebSocket that never got through while HTTP works falls back to HTTP.

import { ChorusError, type ErrorCode } from "../errors.js";
import { parseFrame } from "../protocol.js";
import type { PostEntry, Transport, TransportHost } from "../transport.js";
import type { WebSocketConstructor, WebSocketLike } from "../types.js";

/** Close codes after which reconnecting cannot help (PROTOCOL.md §3, close codes). */
const FATAL_CLOSE: Record<number, ErrorCode> = {
  1000: "closed",
  1002: "protocol_error",
  1007: "protocol_error",
  1008: "policy_violation",
  4003: "forbidden",
};

/** How many WebSocket attempts that never opened (on a client whose WebSocket never worked) before falling back to HTTP. */
const FAILURES_BEFORE_FALLBACK = 3;

/** What the client remembers of its WebSockets across attempts. */
export interface WebSocketRecord {
  /** One has said hello (then a failure is an outage, never a reason to fall back). */
  worked: boolean;
  /** Attempts in a row that never opened while HTTP answered. */
  failures: number;
  /** The app asked for WebSocket only: never fall back. */
  only: boolean;
}

export class WebSocketTransport implements Transport {
  readonly kind = "websocket" as const;
  readonly renewal = "reconnect" as const;
  private ws: WebSocketLike | null = null;
  private dead = false;
  private hello = false;
  private lastHeard = 0;
  private heartbeat?: ReturnType<typeof setInterval>;
  private timeout?: ReturnType<typeof setTimeout>;

  constructor(
    private readonly host: TransportHost,
    private readonly base: string,
    private readonly WS: WebSocketConstructor,
    private readonly connectTimeoutMs: number,
    private readonly record: WebSocketRecord,
  ) {}

  open(token: string): void {
    const url = `${this.base.replace(/^http/, "ws")}/ws?access_token=${encodeURIComponent(token)}`;
    let ws: WebSocketLike;
    try {
      ws = new this.WS(url);
    } catch (e) {
      this.host.lost(`cannot open a WebSocket: ${e instanceof Error ? e.message : String(e)}`);
      return;
    }
    this.ws = ws;
    // A socket that neither opens nor fails (a wedged network path) must not hold the client forever.
    this.timeout = this.host.later(this.connectTimeoutMs, () => {
      if (!this.dead && !this.hello) this.host.lost("the server did not answer in time");
    });
    ws.onmessage = (ev: { data: unknown }) => {
      if (this.dead) return;
      this.lastHeard = Date.now();
      const frame = parseFrame(String(ev.data));
      if (!frame) return; // the server sends JSON only
      if (frame.type === "hello") {
        this.hello = true;
        if (this.timeout) clearTimeout(this.timeout);
        this.record.worked = true;
        this.record.failures = 0;
        this.startHeartbeat(frame.heartbeat_ms);
        this.host.opened(frame);
        return;
      }
      if (frame.type === "pong") return;
      this.host.frame(frame);
    };
    ws.onerror = () => {}; // onclose follows with the code
    ws.onclose = (ev: { code: number }) => {
      if (this.dead) return;
      this.ws = null;
      void this.closed(ev.code);
    };
  }

  close(): void {
    this.dead = true;
    if (this.heartbeat) clearInterval(this.heartbeat);
    if (this.timeout) clearTimeout(this.timeout);
    const ws = this.ws;
    this.ws = null;
    if (!ws) return;
    ws.onclose = ws.onmessage = ws.onopen = ws.onerror = null;
    try {
      ws.close(1000);
    } catch {
      // already closing
    }
  }

  private async closed(code: number): Promise<void> {
    if (this.heartbeat) clearInterval(this.heartbeat);
    if (!this.hello) {
      const probe = await this.host.probe();
      if (this.dead) return;
      if (probe === "auth") return this.host.authFailed();
      if (probe === "ok" && !this.record.worked && !this.record.only && ++this.record.failures >= FAILURES_BEFORE_FALLBACK) {
        return this.host.fallBack();
      }
      return this.host.lost(probe === "ok" ? "the WebSocket did not open" : "the server is unreachable");
    }
    if (code === 4001) return this.host.authFailed();
    const fatal = FATAL_CLOSE[code];
    if (fatal) return this.host.fatal(new ChorusError(fatal, `the server closed the connection (${code})`));
    // 1012: the node drains and its peers are up, so come back soon whatever the backoff grew to.
    this.host.lost(`connection closed (${code})`, code === 4029 ? 10_000 : 0, code === 1012);
  }

  private send(frame: Record<string, unknown>): boolean {
    if (!this.ws || this.ws.readyState !== 1) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  private startHeartbeat(ms: number): void {
    const period = Math.max(1000, ms || 10_000);
    this.heartbeat = setInterval(() => {
      if (Date.now() - this.lastHeard > period * 2.5) {
        // Nothing heard, not even a pong: the connection is dead even if the socket does not know.
        this.host.lost("heartbeat timeout");
        return;
      }
      this.send({ type: "ping", ref: "hb" });
    }, period);
  }

  join(room: string, since: number | null, epoch: string | undefined, ref: string): void {
    const frame: Record<string, unknown> = { type: "join", room, ref };
    if (since !== null) {
      frame.since = since;
      if (epoch !== undefined) frame.epoch = epoch;
    }
    this.send(frame);
  }

  leave(room: string, ref: string): void {
    this.send({ type: "leave", room, ref });
  }

  post(e: PostEntry): boolean {
    const frame: Record<string, unknown> = { type: e.kind, room: e.room, client_msg_id: e.clientMsgId, ref: e.clientMsgId };
    if (e.body !== undefined) frame.body = e.body;
    if (e.target !== undefined) frame.target = e.target;
    if (e.key !== undefined) frame.key = e.key;
    if (e.op !== undefined) frame.op = e.op;
    return this.send(frame);
  }

  markRead(room: string, seq: number, ref: string): boolean {
    return this.send({ type: "read", room, seq, ref });
  }

  typing(room: string): void {
    this.send({ type: "typing", room });
  }
}
