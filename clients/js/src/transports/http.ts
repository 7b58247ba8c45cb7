// The HTTP transports, for where there is no WebSocket (PROTOCOL.md §4): each room's entries come
// over Server-Sent Events (`sse`) or long-polls (`poll`), and writes go over REST. Everything the
// server answers is turned into the WebSocket protocol's frames (`joined`, entries, `ack`,
// `error`, `presence`), so the client handles all transports alike. Over HTTP, presence is read
// once per join and typing is not carried.

import { responseError } from "../errors.js";
import type { JoinedFrame, ServerFrame, WireEntry, WireHistoryPage } from "../protocol.js";
import type { PostEntry, Transport, TransportHost } from "../transport.js";
import type { PresenceUser } from "../types.js";

const POLL_TIMEOUT_S = 25;

interface Stream {
  /** The last seq this transport handed over (where a poll goes on from). */
  cursor: number;
  stop: () => void;
}

export class HttpTransport implements Transport {
  readonly renewal = "rejoin" as const;
  private dead = false;
  private streams = new Map<string, Stream>();

  constructor(
    readonly kind: "sse" | "poll",
    private readonly host: TransportHost,
    private readonly base: string,
    private readonly fetch: typeof globalThis.fetch,
  ) {}

  open(): void {
    void this.host.probe().then((probe) => {
      if (this.dead) return;
      if (probe === "auth") return this.host.authFailed();
      if (probe === "down") return this.host.lost("the server is unreachable");
      this.host.opened();
    });
  }

  close(): void {
    this.dead = true;
    for (const s of this.streams.values()) s.stop();
    this.streams.clear();
  }

  private roomUrl(room: string): string {
    return `${this.base}/api/rooms/${encodeURIComponent(room)}`;
  }

  private headers(): Record<string, string> {
    const token = this.host.token();
    return token ? { authorization: `Bearer ${token}` } : {};
  }

  /** A request failed for want of a server: reconnect everything. */
  private lost(reason: string): void {
    if (!this.dead) this.host.lost(reason);
  }

  /** Reads the head; answers `joined` (recovered when `since` is still good), then streams. */
  join(room: string, since: number | null, epoch: string | undefined, ref: string): void {
    void this.joinRoom(room, since, epoch, ref);
  }

  private async joinRoom(room: string, since: number | null, epoch: string | undefined, ref: string): Promise<void> {
    this.leave(room);
    let page: WireHistoryPage;
    try {
      const res = await this.fetch(`${this.roomUrl(room)}/messages?limit=1`, { headers: this.headers() });
      if (this.dead) return;
      if (res.status === 401) return this.host.authFailed();
      if (!res.ok) {
        const err = await responseError(res, room);
        if (res.status >= 500) return this.lost(`joining ${room}: ${err.message}`);
        return this.host.frame({ type: "error", ref, room, code: err.code, message: err.message, status: res.status });
      }
      page = await res.json();
    } catch (e) {
      return this.lost(`joining ${room}: ${text(e)}`);
    }
    if (this.dead) return;
    // The same rule as the server's over WebSocket: recovered only for a `since` it can continue.
    const recovered = since !== null && (epoch === undefined || epoch === page.epoch) && since <= page.last_seq;
    const joined: JoinedFrame = { type: "joined", ref, room, last_seq: page.last_seq, recovered };
    if (page.epoch !== undefined) joined.epoch = page.epoch;
    this.host.frame(joined);
    const from = recovered ? since! : page.last_seq;
    if (this.kind === "sse") this.streamSse(room, from);
    else void this.streamPoll(room, from);
    // Presence is live over WebSocket only; the HTTP transports read it once per join.
    this.fetch(`${this.roomUrl(room)}/presence`, { headers: this.headers() })
      .then((res) => (res.ok ? (res.json() as Promise<{ users: PresenceUser[] }>) : null))
      .then((p) => {
        if (p && !this.dead && this.streams.has(room)) this.host.frame({ type: "presence", room, users: p.users });
      })
      .catch(() => {}); // presence is a nicety; the room works without it
  }

  leave(room: string): void {
    this.streams.get(room)?.stop();
    this.streams.delete(room);
  }

  private streamSse(room: string, after: number): void {
    const ES = (globalThis as any).EventSource;
    const q = new URLSearchParams({ access_token: this.host.token() ?? "", after: String(after) });
    const src = new ES(`${this.roomUrl(room)}/events?${q}`);
    const stream: Stream = { cursor: after, stop: () => src.close() };
    this.streams.set(room, stream);
    const entry = (ev: any) => {
      if (!this.dead && this.streams.get(room) === stream) this.host.frame(JSON.parse(ev.data) as WireEntry);
    };
    for (const type of ["message", "edit", "delete", "react"]) src.addEventListener(type, entry);
    src.addEventListener("reset", (ev: any) => {
      if (!this.dead && this.streams.get(room) === stream) this.host.frame(JSON.parse(ev.data) as ServerFrame);
    });
    // The node drains (PROTOCOL §6): the stream ends next. Reconnect as after a 1012, with jitter,
    // through the load balancer to a node that is ready, resuming from the cursor.
    src.addEventListener("draining", () => {
      if (this.dead || this.streams.get(room) !== stream) return;
      src.close();
      if (!this.dead) this.host.lost("the node is draining", 0, true);
    });
    src.onerror = () => {
      // EventSource resumes by itself (Last-Event-ID) after a dropped stream; if it gave up (an
      // HTTP error such as 401), find out why and start over.
      if (this.dead || this.streams.get(room) !== stream) return;
      if (src.readyState === 2) {
        src.close();
        void this.host.probe().then((p) => {
          if (this.dead) return;
          if (p === "auth") this.host.authFailed();
          else this.lost("the event stream was refused");
        });
      } else {
        this.lost("the event stream dropped");
      }
    };
  }

  private async streamPoll(room: string, after: number): Promise<void> {
    let stopped = false;
    const abort = typeof AbortController === "function" ? new AbortController() : null;
    const stream: Stream = {
      cursor: after,
      stop: () => {
        stopped = true;
        abort?.abort();
      },
    };
    this.streams.set(room, stream);
    while (!stopped && !this.dead) {
      let body: { messages: WireEntry[]; last_seq: number };
      try {
        const q = new URLSearchParams({ after: String(stream.cursor), timeout: String(POLL_TIMEOUT_S) });
        const res = await this.fetch(`${this.roomUrl(room)}/poll?${q}`, { headers: this.headers(), signal: abort?.signal });
        if (stopped || this.dead) return;
        if (res.status === 401) return this.host.authFailed();
        if (!res.ok) {
          const err = await responseError(res, room);
          if (res.status >= 500 || res.status === 429) return this.lost(err.message);
          this.streams.delete(room);
          return this.host.roomFailed(room, err);
        }
        body = await res.json();
      } catch (e) {
        if (!stopped) this.lost(`polling ${room}: ${text(e)}`);
        return;
      }
      if (stopped || this.dead) return;
      for (const e of body.messages) {
        stream.cursor = Math.max(stream.cursor, e.seq);
        this.host.frame({ ...e, room });
      }
    }
  }

  /** A send, edit, delete or react over REST, with its client_msg_id as the Idempotency-Key. */
  post(e: PostEntry): boolean {
    void this.rest(e);
    return true;
  }

  private async rest(e: PostEntry): Promise<void> {
    const messages = `/messages${e.target !== undefined ? `/${e.target}` : ""}`;
    const [method, path, body] =
      e.kind === "send"
        ? ["POST", messages, { body: e.body }]
        : e.kind === "edit"
          ? ["PATCH", messages, { body: e.body }]
          : e.kind === "delete"
            ? ["DELETE", messages, undefined]
            : [e.op === "remove" ? "DELETE" : "PUT", `${messages}/reactions/${encodeURIComponent(e.key ?? "")}`, undefined];
    let res: Response;
    try {
      const init: RequestInit = {
        method,
        headers: { ...this.headers(), "content-type": "application/json", "idempotency-key": e.clientMsgId },
      };
      if (body) init.body = JSON.stringify({ ...body, client_msg_id: e.clientMsgId });
      res = await this.fetch(`${this.roomUrl(e.room)}${path}`, init);
    } catch (err) {
      if (this.dead) return;
      this.host.frame({ type: "error", ref: e.clientMsgId, room: e.room, code: "unavailable", message: text(err) });
      return this.lost(`sending to ${e.room}: ${text(err)}`);
    }
    if (this.dead) return;
    if (res.ok) {
      const m = await res.json().catch(() => ({}));
      const duplicate = m.duplicate ?? res.status === 200;
      return this.host.frame({ type: "ack", ref: e.clientMsgId, room: e.room, seq: m.seq, id: m.id, ts: m.ts, duplicate });
    }
    if (res.status === 401) return this.host.authFailed();
    const err = await responseError(res, e.room);
    this.host.frame({
      type: "error",
      ref: e.clientMsgId,
      room: e.room,
      code: err.code,
      message: err.message,
      retry_after_ms: err.retryAfterMs,
      status: res.status,
    });
  }

  /** Over HTTP the client moves the cursor with its own REST call. */
  markRead(): boolean {
    return false;
  }

  typing(): void {}
}

function text(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
