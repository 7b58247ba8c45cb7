// The Chorus client: one connection (WebSocket, or SSE / long-poll plus REST) shared by every room
// the app joins; the connection state machine; per-room ordered, exactly-once sends; token renewal;
// resuming every room with `since` after any reconnect, to any node.

import { ChorusError, responseError } from "./errors";
import type {
  Ack,
  ChorusEvents,
  ChorusOptions,
  ConnectionState,
  Entry,
  HistoryPage,
  Joined,
  MyRoom,
  PendingEntry,
  PresenceUser,
  ReadState,
  TransportKind,
  WebSocketConstructor,
  WebSocketLike,
} from "./types";
import { Emitter, backoffDelay, newId, refreshDelayMs, tokenClaims } from "./util";

/** Room ids the server accepts (PROTOCOL.md §2). */
export const ROOM_PATTERN = /^[A-Za-z0-9_.:-]{1,128}$/;
export const isValidRoom = (room: string): boolean => ROOM_PATTERN.test(room);

/** Which state may follow which; anything else is a bug in this file. */
const NEXT: Record<ConnectionState, ConnectionState[]> = {
  closed: ["connecting"],
  connecting: ["open", "reconnecting", "closed"],
  open: ["reconnecting", "closed"],
  reconnecting: ["open", "closed"],
};

/** Close codes after which reconnecting cannot help (PROTOCOL.md §3, close codes). */
const FATAL_CLOSE: Record<number, string> = {
  1000: "closed",
  1002: "protocol_error",
  1007: "protocol_error",
  1008: "policy_violation",
  1009: "frame_too_large",
  4003: "forbidden",
};

/** How many WebSocket attempts that never opened (on a client whose WebSocket never worked) before falling back to HTTP. */
const WS_FAILURES_BEFORE_FALLBACK = 3;
const POLL_TIMEOUT_S = 25;

interface Waiter<T> {
  resolve: (v: T) => void;
  reject: (e: ChorusError) => void;
}

interface Pending extends PendingEntry, Waiter<Ack> {
  frame: Record<string, unknown>;
  rest: { method: string; path: string; body?: Record<string, unknown> };
}

interface RoomState {
  name: string;
  /** The seq of the last entry delivered to the app: the cursor every resume starts from. */
  lastSeq: number | null;
  epoch?: string | number;
  /** Joined on the current connection (WebSocket) or stream started (HTTP). */
  joined: boolean;
  joinRef?: string;
  last?: Joined;
  waiters: Waiter<Joined>[];
  /** Sends in the user's order; only the head is ever on the wire. */
  queue: Pending[];
  busy: boolean;
  retryTimer?: ReturnType<typeof setTimeout>;
  presence: Map<string, PresenceUser>;
  readSeq?: number;
  unreadBase: number;
  unreadAt: number;
  counted: Set<number>;
  /** Stops this room's SSE stream or poll loop (HTTP transports). */
  stopStream?: () => void;
}

export class Chorus extends Emitter<ChorusEvents> {
  /** The connection state; listen to `state` for changes. */
  state: ConnectionState = "closed";
  /** The user id the server knows this client as (the token's `sub`). */
  user: string | null;
  private token?: string;
  private readonly base: string;
  private readonly opts: ChorusOptions;
  private kind: TransportKind;
  private readonly WS?: WebSocketConstructor;
  private readonly fetch: typeof fetch;
  private readonly minMs: number;
  private readonly maxMs: number;
  private readonly connectTimeoutMs: number;
  private rooms = new Map<string, RoomState>();
  private reads = new Map<string, Waiter<ReadState>>();
  private openWaiters: Waiter<void>[] = [];
  private ws: WebSocketLike | null = null;
  /** Bumped whenever a connection is abandoned, so its late callbacks change nothing. */
  private connId = 0;
  private attempt = 0;
  private authFailures = 0;
  private wsFailures = 0;
  private wsWorked = false;
  private timers = new Set<ReturnType<typeof setTimeout>>();
  private refreshTimer?: ReturnType<typeof setTimeout>;
  private heartbeat?: ReturnType<typeof setInterval>;
  private lastHeard = 0;
  private tokenRequest: Promise<string> | null = null;
  private refCounter = 0;

  constructor(options: ChorusOptions = {}) {
    super();
    this.opts = options;
    const origin = (globalThis as any).location?.origin;
    const url = options.url ?? origin;
    if (!url) throw new ChorusError("bad_request", "options.url is required outside a browser page");
    if (!options.token && !options.getToken) throw new ChorusError("bad_request", "give options.token or options.getToken");
    this.base = String(url).replace(/\/$/, "");
    this.token = options.token;
    this.user = tokenClaims(options.token)?.sub ?? null;
    this.WS = options.WebSocket ?? (globalThis as any).WebSocket;
    const f = options.fetch ?? (globalThis as any).fetch;
    this.fetch = (...args: Parameters<typeof fetch>) => f(...args);
    this.minMs = options.backoff?.minMs ?? 500;
    this.maxMs = options.backoff?.maxMs ?? 30_000;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 15_000;
    const wanted = options.transport ?? "auto";
    this.kind = wanted === "auto" ? (this.WS ? "websocket" : fallbackKind()) : wanted;
    if (this.kind === "websocket" && !this.WS) throw new ChorusError("bad_request", "no WebSocket here: pass options.WebSocket");
    if (this.kind === "sse" && typeof (globalThis as any).EventSource === "undefined") {
      throw new ChorusError("bad_request", "no EventSource here: use transport 'poll'");
    }
  }

  /** The transport in use: `websocket`, or `sse` / `poll` (reads) with REST (writes). */
  get transport(): TransportKind {
    return this.kind;
  }

  // ----- connection ---------------------------------------------------------------------------

  /** Connects (if not already) and resolves once open; rejects if the client closes for good first. */
  connect(): Promise<void> {
    if (this.state === "open") return Promise.resolve();
    const opened = new Promise<void>((resolve, reject) => this.openWaiters.push({ resolve, reject }));
    if (this.state === "closed") {
      this.attempt = 0;
      this.setState("connecting");
      void this.dial();
    }
    return opened;
  }

  /** Closes for good (not an error): unsent entries and unanswered joins are rejected with `closed`. */
  close(): void {
    if (this.state === "closed") return;
    this.shutdown(new ChorusError("closed", "the client was closed"), "closed by the app");
  }

  private async dial(): Promise<void> {
    const id = ++this.connId;
    let token: string;
    try {
      token = this.token ?? (await this.renewToken());
    } catch (e) {
      if (id === this.connId) this.retry(0, `getToken failed: ${errorText(e)}`);
      return;
    }
    if (id !== this.connId || this.state === "closed") return;
    if (this.kind === "websocket") this.dialWebSocket(id, token);
    else void this.dialHttp(id);
  }

  private retry(floorMs: number, reason: string): void {
    if (this.state === "closed") return;
    const id = ++this.connId;
    this.dropConnection();
    this.setState("reconnecting", reason);
    const delay = backoffDelay(this.attempt++, this.minMs, this.maxMs, floorMs);
    this.later(delay, () => {
      if (id === this.connId) void this.dial();
    });
  }

  /** Forget everything tied to the current connection; rooms stay, to be joined again. */
  private dropConnection(): void {
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onclose = ws.onmessage = ws.onopen = ws.onerror = null;
      try {
        ws.close(1000);
      } catch {
        // already closing
      }
    }
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = undefined;
    for (const r of this.rooms.values()) this.unjoin(r);
    for (const w of this.reads.values()) w.reject(new ChorusError("unavailable", "connection lost before the reply"));
    this.reads.clear();
  }

  private unjoin(r: RoomState): void {
    r.joined = false;
    r.joinRef = undefined;
    r.stopStream?.();
    r.stopStream = undefined;
    if (r.retryTimer) clearTimeout(r.retryTimer);
    r.retryTimer = undefined;
    r.busy = false;
    for (const p of r.queue) if (p.status !== "queued") p.status = "queued";
  }

  private shutdown(err: ChorusError, reason: string): void {
    this.connId++;
    this.dropConnection();
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    for (const r of this.rooms.values()) {
      for (const w of r.waiters) w.reject(err);
      r.waiters = [];
      for (const p of r.queue) p.reject(err);
      r.queue = [];
      this.emitPending(r);
    }
    for (const w of this.openWaiters) w.reject(err);
    this.openWaiters = [];
    this.setState("closed", reason);
  }

  /** A refusal that reconnecting cannot cure: tell the app, then close. */
  private fatal(err: ChorusError): void {
    this.emit("error", err);
    this.shutdown(err, err.message);
  }

  private opened(): void {
    this.attempt = 0;
    this.authFailures = 0;
    this.setState("open");
    for (const w of this.openWaiters) w.resolve();
    this.openWaiters = [];
    this.scheduleRefresh();
  }

  private setState(state: ConnectionState, reason?: string): void {
    const previous = this.state;
    if (previous === state) return;
    if (!NEXT[previous].includes(state)) throw new Error(`chorus: bug: state ${previous} -> ${state}`);
    this.state = state;
    this.emit("state", reason ? { state, previous, reason } : { state, previous });
  }

  private later(ms: number, fn: () => void): ReturnType<typeof setTimeout> {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
    return t;
  }

  // ----- tokens -------------------------------------------------------------------------------

  /** Asks the app for a fresh token (one request at a time). */
  private renewToken(): Promise<string> {
    const get = this.opts.getToken;
    if (!get) return Promise.reject(new ChorusError("token_expired", "the token was refused and there is no getToken"));
    if (!this.tokenRequest) {
      this.tokenRequest = (async () => {
        const token = await get();
        if (typeof token !== "string" || !token) throw new ChorusError("token_expired", "getToken returned no token");
        this.token = token;
        this.user = tokenClaims(token)?.sub ?? this.user;
        const exp = tokenClaims(token)?.exp;
        this.emit("token", exp ? { expiresAt: exp * 1000 } : {});
        return token;
      })().finally(() => {
        this.tokenRequest = null;
      });
    }
    return this.tokenRequest;
  }

  /** The server refused the token (4001, 401): renew it and reconnect, or close if we cannot. */
  private authFailed(): void {
    if (!this.opts.getToken) {
      this.fatal(new ChorusError("token_expired", "the server refused the token"));
      return;
    }
    this.token = undefined; // dial() asks getToken for a new one
    // A second refusal in a row (a getToken that hands back a bad token) backs off like any failure.
    if (this.authFailures++ > 0) return this.retry(0, "the token was refused again");
    this.connId++;
    this.dropConnection();
    this.setState("reconnecting", "renewing the token");
    void this.dial();
  }

  /** Renew a little before expiry, then reconnect with the new token (resuming every room). */
  private scheduleRefresh(): void {
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    const exp = tokenClaims(this.token)?.exp;
    if (!this.opts.getToken || !exp) return;
    this.refreshTimer = setTimeout(async () => {
      try {
        await this.renewToken();
      } catch (e) {
        this.emit("error", new ChorusError("token_expired", `getToken failed: ${errorText(e)}`));
        return; // the server's 4001 / 401 will bring us back here
      }
      if (this.state !== "open") return;
      if (this.kind === "websocket") {
        // The server holds a socket to its token's expiry, so move to a new one now.
        this.connId++;
        this.dropConnection();
        this.setState("reconnecting", "renewing the token");
        void this.dial();
      } else {
        for (const r of this.rooms.values()) this.unjoin(r);
        for (const r of this.rooms.values()) this.startRoom(r);
        this.scheduleRefresh();
      }
    }, refreshDelayMs(exp));
  }

  // ----- WebSocket ------------------------------------------------------------------------------

  private dialWebSocket(id: number, token: string): void {
    const url = `${this.base.replace(/^http/, "ws")}/ws?access_token=${encodeURIComponent(token)}`;
    let ws: WebSocketLike;
    try {
      ws = new this.WS!(url);
    } catch (e) {
      this.retry(0, `cannot open a WebSocket: ${errorText(e)}`);
      return;
    }
    this.ws = ws;
    let hello = false;
    // A socket that neither opens nor fails (a wedged network path) must not hold the client forever.
    const timeout = this.later(this.connectTimeoutMs, () => {
      if (id === this.connId && !hello) this.retry(0, "the server did not answer in time");
    });
    ws.onmessage = (ev) => {
      if (id !== this.connId) return;
      this.lastHeard = Date.now();
      let frame: any;
      try {
        frame = JSON.parse(String(ev.data));
      } catch {
        return; // the server sends JSON only
      }
      if (frame.type === "hello") {
        hello = true;
        clearTimeout(timeout);
        this.timers.delete(timeout);
      }
      this.onFrame(frame);
    };
    ws.onerror = () => {}; // onclose follows with the code
    ws.onclose = (ev) => {
      if (id !== this.connId) return;
      this.ws = null;
      void this.onWebSocketClosed(ev.code, hello);
    };
  }

  private async onWebSocketClosed(code: number, hadHello: boolean): Promise<void> {
    const id = this.connId;
    if (!hadHello) {
      // A refused upgrade (401) looks like any failure to the WebSocket API: ask over HTTP.
      const probe = await this.probe();
      if (id !== this.connId || this.state === "closed") return;
      if (probe === "auth") return this.authFailed();
      if (probe === "ok" && !this.wsWorked && ++this.wsFailures >= WS_FAILURES_BEFORE_FALLBACK && this.opts.transport !== "websocket") {
        // The node answers HTTP but WebSocket never got through (a proxy): fall back for good.
        this.kind = fallbackKind();
        this.connId++;
        this.dropConnection();
        void this.dial();
        return;
      }
      return this.retry(0, probe === "ok" ? "the WebSocket did not open" : "the server is unreachable");
    }
    if (code === 4001) return this.authFailed();
    const fatal = FATAL_CLOSE[code];
    if (fatal) return this.fatal(new ChorusError(fatal, `the server closed the connection (${code})`));
    this.retry(code === 4029 ? 10_000 : 0, `connection closed (${code})`);
  }

  private wsSend(frame: Record<string, unknown>): boolean {
    if (!this.ws || this.ws.readyState !== 1) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  private startHeartbeat(ms: number): void {
    if (this.heartbeat) clearInterval(this.heartbeat);
    const period = Math.max(1000, ms || 10_000);
    this.heartbeat = setInterval(() => {
      if (Date.now() - this.lastHeard > period * 2.5) {
        // Nothing heard, not even a pong: the connection is dead even if the socket does not know.
        this.retry(0, "heartbeat timeout");
        return;
      }
      this.wsSend({ type: "ping", ref: "hb" });
    }, period);
  }

  private onFrame(f: any): void {
    switch (f.type) {
      case "hello":
        this.user = f.user ?? this.user;
        this.wsWorked = true;
        this.wsFailures = 0;
        this.startHeartbeat(f.heartbeat_ms);
        this.opened();
        for (const r of this.rooms.values()) this.startRoom(r);
        break;
      case "joined": {
        const r = this.rooms.get(f.room);
        if (!r || (f.ref && f.ref !== r.joinRef)) return; // a reply to an abandoned join
        this.onJoined(r, {
          room: f.room,
          epoch: f.epoch,
          lastSeq: f.last_seq,
          recovered: !!f.recovered,
          readSeq: f.read_seq,
          unread: f.unread,
        });
        break;
      }
      case "message":
      case "edit":
      case "delete":
      case "react":
        this.onEntry(f);
        break;
      case "ack":
        // Matched by `ref` (always ours): an entry that already held is acked with the seq, id and
        // client_msg_id of the entry that made it hold, not with ours.
        this.onAck(f.room, f.ref ?? f.client_msg_id, {
          room: f.room,
          seq: f.seq,
          id: f.id,
          ts: f.ts,
          clientMsgId: f.ref ?? f.client_msg_id,
          duplicate: !!f.duplicate,
        });
        break;
      case "read": {
        const w = f.ref && this.reads.get(f.ref);
        const state: ReadState = { room: f.room, seq: f.seq, unread: f.unread, lastSeq: f.last_seq };
        if (w) {
          this.reads.delete(f.ref);
          w.resolve(state);
        }
        if (f.user === this.user) this.onRead(state);
        break;
      }
      case "presence": {
        const r = this.rooms.get(f.room);
        if (!r) return;
        r.presence = new Map((f.users as PresenceUser[]).map((u) => [u.user, u]));
        this.emit("presence", { room: f.room, users: [...r.presence.values()] });
        break;
      }
      case "presence_diff": {
        const r = this.rooms.get(f.room);
        if (!r) return;
        for (const u of f.joins as PresenceUser[]) r.presence.set(u.user, u);
        for (const u of f.leaves as PresenceUser[]) r.presence.delete(u.user);
        this.emit("presence", { room: f.room, users: [...r.presence.values()] });
        break;
      }
      case "typing":
        this.emit("typing", { room: f.room, user: f.user });
        break;
      case "reset": {
        const r = this.rooms.get(f.room);
        if (!r) return;
        r.lastSeq = f.last_seq;
        r.epoch = f.epoch;
        this.emit("reset", { room: f.room, lastSeq: f.last_seq });
        break;
      }
      case "error":
        this.onErrorFrame(f);
        break;
    }
  }

  private onErrorFrame(f: any): void {
    const err = new ChorusError(f.code, f.message, { room: f.room, retryAfterMs: f.retry_after_ms });
    if (f.ref) {
      for (const r of this.rooms.values()) {
        if (r.joinRef === f.ref) return this.joinFailed(r, withRoom(err, r.name));
        const head = r.queue[0];
        if (head && head.clientMsgId === f.ref) return this.sendFailed(r, head, withRoom(err, r.name));
      }
      const w = this.reads.get(f.ref);
      if (w) {
        this.reads.delete(f.ref);
        return w.reject(err);
      }
      if (f.ref === "hb") return;
    }
    this.emit("error", err);
  }

  // ----- HTTP transports (SSE or long-poll for reads, REST for writes) -------------------------

  /** Whether the server answers and takes the token: `ok`, `auth` (401) or `down`. */
  private async probe(): Promise<"ok" | "auth" | "down"> {
    try {
      const res = await this.fetch(`${this.base}/api/me/rooms?limit=1`, { headers: this.authHeaders() });
      if (res.status === 401) return "auth";
      return res.status < 500 ? "ok" : "down";
    } catch {
      return "down";
    }
  }

  private async dialHttp(id: number): Promise<void> {
    const probe = await this.probe();
    if (id !== this.connId || this.state === "closed") return;
    if (probe === "auth") return this.authFailed();
    if (probe === "down") return this.retry(0, "the server is unreachable");
    this.opened();
    for (const r of this.rooms.values()) this.startRoom(r);
  }

  /** A read or write over HTTP failed for want of a server: reconnect everything. */
  private httpLost(id: number, reason: string): void {
    if (id === this.connId && this.state === "open") this.retry(0, reason);
  }

  private async joinHttp(r: RoomState, id: number): Promise<void> {
    let page: HistoryPage;
    try {
      const res = await this.fetch(`${this.roomUrl(r.name)}/messages?limit=1`, { headers: this.authHeaders() });
      if (id !== this.connId || this.rooms.get(r.name) !== r) return;
      if (res.status === 401) return this.authFailed();
      if (!res.ok) {
        const err = await responseError(res, r.name);
        if (res.status >= 500) return this.httpLost(id, `joining ${r.name}: ${err.message}`);
        return this.joinFailed(r, err);
      }
      page = await res.json();
    } catch (e) {
      return this.httpLost(id, `joining ${r.name}: ${errorText(e)}`);
    }
    if (id !== this.connId || this.rooms.get(r.name) !== r) return;
    const resume = r.lastSeq !== null;
    const recovered = !resume || ((r.epoch === undefined || r.epoch === page.epoch) && r.lastSeq! <= page.last_seq);
    this.onJoined(r, { room: r.name, epoch: page.epoch, lastSeq: page.last_seq, recovered });
    if (this.kind === "sse") this.streamSse(r, id);
    else void this.streamPoll(r, id);
    // Presence is live over WebSocket only; the HTTP transports read it once per join.
    this.api<{ users: PresenceUser[] }>(`/api/rooms/${encodeURIComponent(r.name)}/presence`, {}, r.name).then(
      (p) => {
        if (id !== this.connId || this.rooms.get(r.name) !== r) return;
        r.presence = new Map(p.users.map((u) => [u.user, u]));
        this.emit("presence", { room: r.name, users: p.users });
      },
      () => {}, // presence is a nicety; the room works without it
    );
  }

  private streamSse(r: RoomState, id: number): void {
    const ES = (globalThis as any).EventSource;
    const q = new URLSearchParams({ access_token: this.token ?? "", after: String(r.lastSeq ?? 0) });
    const src = new ES(`${this.roomUrl(r.name)}/events?${q}`);
    r.stopStream = () => src.close();
    const entry = (ev: any) => {
      if (id === this.connId) this.onEntry(JSON.parse(ev.data));
    };
    for (const type of ["message", "edit", "delete", "react"]) src.addEventListener(type, entry);
    src.addEventListener("reset", (ev: any) => {
      if (id === this.connId) this.onFrame(JSON.parse(ev.data));
    });
    src.onerror = () => {
      // EventSource resumes by itself (Last-Event-ID) after a dropped stream; if it gave up (an
      // HTTP error such as 401), find out why and start over.
      if (id !== this.connId) return;
      if (src.readyState === 2) {
        src.close();
        void this.probe().then((p) => {
          if (id !== this.connId) return;
          if (p === "auth") this.authFailed();
          else this.retry(0, "the event stream was refused");
        });
      } else if (this.state === "open") {
        this.retry(0, "the event stream dropped");
      }
    };
  }

  private async streamPoll(r: RoomState, id: number): Promise<void> {
    let stopped = false;
    const abort = typeof AbortController === "function" ? new AbortController() : null;
    r.stopStream = () => {
      stopped = true;
      abort?.abort();
    };
    while (!stopped && id === this.connId) {
      let body: { messages: Entry[]; last_seq: number };
      try {
        const q = new URLSearchParams({ after: String(r.lastSeq ?? 0), timeout: String(POLL_TIMEOUT_S) });
        const res = await this.fetch(`${this.roomUrl(r.name)}/poll?${q}`, { headers: this.authHeaders(), signal: abort?.signal });
        if (stopped || id !== this.connId) return;
        if (res.status === 401) return this.authFailed();
        if (!res.ok) {
          const err = await responseError(res, r.name);
          if (res.status >= 500 || res.status === 429) return this.httpLost(id, err.message);
          this.emit("error", err);
          return this.dropRoom(r, err);
        }
        body = await res.json();
      } catch (e) {
        if (!stopped) this.httpLost(id, `polling ${r.name}: ${errorText(e)}`);
        return;
      }
      if (stopped || id !== this.connId) return;
      for (const e of body.messages) this.onEntry({ ...e, room: r.name });
    }
  }

  /** A send, edit, delete or react over REST, with its client_msg_id as the Idempotency-Key. */
  private async restSend(r: RoomState, p: Pending, id: number): Promise<void> {
    let res: Response;
    try {
      const init: RequestInit = {
        method: p.rest.method,
        headers: { ...this.authHeaders(), "content-type": "application/json", "idempotency-key": p.clientMsgId },
      };
      if (p.rest.body) init.body = JSON.stringify({ ...p.rest.body, client_msg_id: p.clientMsgId });
      res = await this.fetch(`${this.roomUrl(r.name)}${p.rest.path}`, init);
    } catch (e) {
      if (r.queue[0] === p) this.sendFailed(r, p, new ChorusError("unavailable", errorText(e), { room: r.name }));
      this.httpLost(id, `sending to ${r.name}: ${errorText(e)}`);
      return;
    }
    if (r.queue[0] !== p) return;
    if (res.ok) {
      const m = await res.json().catch(() => ({}));
      const duplicate = m.duplicate ?? res.status === 200;
      return this.onAck(r.name, p.clientMsgId, { room: r.name, seq: m.seq, id: m.id, ts: m.ts, clientMsgId: p.clientMsgId, duplicate });
    }
    if (res.status === 401) {
      r.busy = false;
      p.status = "queued";
      return this.authFailed();
    }
    this.sendFailed(r, p, await responseError(res, r.name));
  }

  private roomUrl(room: string): string {
    return `${this.base}/api/rooms/${encodeURIComponent(room)}`;
  }

  private authHeaders(): Record<string, string> {
    return this.token ? { authorization: `Bearer ${this.token}` } : {};
  }

  /** An authenticated REST call; a refused token is renewed once. */
  private async api<T>(path: string, init: RequestInit = {}, room?: string): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      if (!this.token) await this.renewToken();
      const headers = { ...this.authHeaders(), ...(init.body ? { "content-type": "application/json" } : {}) };
      const res = await this.fetch(`${this.base}${path}`, { ...init, headers });
      if (res.status === 401 && attempt === 0 && this.opts.getToken) {
        await this.renewToken();
        continue;
      }
      if (!res.ok) throw await responseError(res, room);
      return (await res.json()) as T;
    }
  }

  // ----- rooms ------------------------------------------------------------------------------------

  /**
   * Joins `room` (now, or as soon as the connection opens) and resolves with its state. With `since`,
   * every entry after that seq is delivered first. Rejects with a ChorusError naming the room.
   * After any reconnect the client joins again by itself, resuming after the last entry it delivered.
   */
  join(room: string, options: { since?: number } = {}): Promise<Joined> {
    if (!isValidRoom(room)) {
      return Promise.reject(new ChorusError("invalid_room", "a room name is 1-128 letters, digits or _ . : -", { room }));
    }
    let r = this.rooms.get(room);
    if (r && r.last && !r.waiters.length && r.joined) return Promise.resolve(r.last);
    if (!r) {
      r = newRoom(room, options.since ?? null);
      this.rooms.set(room, r);
      if (this.state === "open") this.startRoom(r);
    }
    const target = r;
    return new Promise((resolve, reject) => target.waiters.push({ resolve, reject }));
  }

  /** Leaves `room`: no more events from it; its unsent entries are rejected. */
  leave(room: string): void {
    const r = this.rooms.get(room);
    if (!r) return;
    this.wsSend({ type: "leave", room, ref: this.ref("leave") });
    this.dropRoom(r, new ChorusError("not_joined", "left the room", { room }));
  }

  /** The rooms joined, with their cursor and unread count. */
  joinedRooms(): { room: string; lastSeq: number | null; unread: number }[] {
    return [...this.rooms.values()].map((r) => ({ room: r.name, lastSeq: r.lastSeq, unread: unreadOf(r) }));
  }

  /** Unread messages in `room`: exact at each `joined`/`read` from the server, counted from live entries between. */
  unread(room: string): number {
    const r = this.rooms.get(room);
    return r ? unreadOf(r) : 0;
  }

  presence(room: string): PresenceUser[] {
    return [...(this.rooms.get(room)?.presence.values() ?? [])];
  }

  private startRoom(r: RoomState): void {
    if (this.kind === "websocket") {
      r.joinRef = this.ref("join");
      const frame: Record<string, unknown> = { type: "join", room: r.name, ref: r.joinRef };
      if (r.lastSeq !== null) {
        frame.since = r.lastSeq;
        if (r.epoch !== undefined) frame.epoch = r.epoch;
      }
      this.wsSend(frame);
    } else {
      r.joinRef = this.ref("join");
      void this.joinHttp(r, this.connId);
    }
  }

  private onJoined(r: RoomState, j: Joined): void {
    const resume = r.lastSeq !== null;
    if (resume && !j.recovered) {
      r.lastSeq = j.lastSeq;
      r.counted.clear();
      this.emit("reset", { room: r.name, lastSeq: j.lastSeq });
    } else if (!resume) {
      r.lastSeq = j.lastSeq;
    }
    r.epoch = j.epoch;
    r.joined = true;
    r.last = j;
    if (j.unread !== undefined && j.readSeq !== undefined) {
      r.readSeq = j.readSeq;
      r.unreadBase = j.unread;
      r.unreadAt = j.lastSeq;
      r.counted = new Set([...r.counted].filter((s) => s > j.lastSeq));
    }
    for (const w of r.waiters) w.resolve(j);
    r.waiters = [];
    this.emit("joined", j);
    this.emit("unread", { room: r.name, unread: unreadOf(r) });
    this.pump(r);
  }

  private joinFailed(r: RoomState, err: ChorusError): void {
    r.joinRef = undefined;
    if (err.retryable) {
      // The server could not join us just now (a dependency down): try again, keep the room.
      this.later(backoffDelay(this.attempt, this.minMs, this.maxMs), () => {
        if (this.rooms.get(r.name) === r && this.state === "open" && !r.joined) this.startRoom(r);
      });
      return;
    }
    if (!r.waiters.length) this.emit("error", err); // an automatic re-join: nobody else would hear
    this.dropRoom(r, err);
  }

  private dropRoom(r: RoomState, err: ChorusError): void {
    if (this.rooms.get(r.name) !== r) return;
    this.unjoin(r);
    this.rooms.delete(r.name);
    for (const w of r.waiters) w.reject(err);
    r.waiters = [];
    for (const p of r.queue) p.reject(err);
    r.queue = [];
    this.emitPending(r);
  }

  private onEntry(e: Entry): void {
    const r = this.rooms.get(e.room);
    if (!r) return;
    if (r.lastSeq !== null && e.seq <= r.lastSeq) return; // seen already (a resume's overlap)
    r.lastSeq = e.seq;
    const before = unreadOf(r);
    if (e.type === "message") {
      if (e.user !== this.user && !e.deleted && e.seq > Math.max(r.readSeq ?? 0, r.unreadAt)) r.counted.add(e.seq);
      this.emit("message", { room: e.room, message: e });
    } else {
      if (e.type === "delete") r.counted.delete(e.target);
      this.emit("entry", { room: e.room, entry: e });
    }
    if (unreadOf(r) !== before) this.emit("unread", { room: r.name, unread: unreadOf(r) });
  }

  private onRead(s: ReadState): void {
    const r = this.rooms.get(s.room);
    if (r && (r.readSeq === undefined || s.seq >= r.readSeq)) {
      r.readSeq = s.seq;
      r.unreadBase = s.unread;
      r.unreadAt = s.lastSeq ?? s.seq;
      r.counted = new Set([...r.counted].filter((q) => q > r.unreadAt && q > s.seq));
      this.emit("unread", { room: r.name, unread: unreadOf(r) });
    }
    this.emit("read", s);
  }

  // ----- sending ------------------------------------------------------------------------------------

  /**
   * Posts `body` to `room` and resolves with the ack once it is committed. Entries to one room are
   * committed in the order of these calls, each exactly once (the client keeps its client_msg_id
   * across retries and reconnects); while offline they wait, listed by `pending()`.
   */
  send(room: string, body: string, options: { clientMsgId?: string } = {}): Promise<Ack> {
    return this.enqueue(room, "send", { type: "send", room, body }, { method: "POST", path: "/messages", body: { body } }, options, { body });
  }

  /** Replaces the body of your message `seq`. */
  edit(room: string, seq: number, body: string, options: { clientMsgId?: string } = {}): Promise<Ack> {
    return this.enqueue(room, "edit", { type: "edit", room, target: seq, body }, { method: "PATCH", path: `/messages/${seq}`, body: { body } }, options, { body, target: seq });
  }

  /** Deletes message `seq` (yours, or any as a moderator). */
  delete(room: string, seq: number, options: { clientMsgId?: string } = {}): Promise<Ack> {
    return this.enqueue(room, "delete", { type: "delete", room, target: seq }, { method: "DELETE", path: `/messages/${seq}` }, options, { target: seq });
  }

  /** Adds (`add`) or removes (`remove`) your reaction `key` on message `seq`. */
  react(room: string, seq: number, key: string, op: "add" | "remove" = "add", options: { clientMsgId?: string } = {}): Promise<Ack> {
    const path = `/messages/${seq}/reactions/${encodeURIComponent(key)}`;
    return this.enqueue(room, "react", { type: "react", room, target: seq, key, op }, { method: op === "add" ? "PUT" : "DELETE", path }, options, { target: seq });
  }

  /** Entries not yet acked, in the order they will be committed (all rooms, or one). */
  pending(room?: string): PendingEntry[] {
    const rooms = room ? [this.rooms.get(room)].filter(Boolean) : [...this.rooms.values()];
    return rooms.flatMap((r) => r!.queue.map(publicPending));
  }

  private enqueue(
    room: string,
    kind: PendingEntry["kind"],
    frame: Record<string, unknown>,
    rest: Pending["rest"],
    options: { clientMsgId?: string },
    shown: { body?: string; target?: number },
  ): Promise<Ack> {
    const r = this.rooms.get(room);
    if (!r) return Promise.reject(new ChorusError("not_joined", "join the room before sending to it", { room }));
    if (this.state === "closed" && !this.openWaiters.length && this.connId > 0) {
      return Promise.reject(new ChorusError("closed", "the client was closed", { room }));
    }
    return new Promise<Ack>((resolve, reject) => {
      const p: Pending = {
        clientMsgId: options.clientMsgId ?? newId(),
        room,
        kind,
        ...shown,
        status: "queued",
        attempts: 0,
        frame,
        rest,
        resolve,
        reject,
      };
      r.queue.push(p);
      this.emitPending(r);
      this.pump(r);
    });
  }

  /** Puts the room's head entry on the wire if it may go now. Only the head is ever in flight. */
  private pump(r: RoomState): void {
    if (r.busy || !r.queue.length || this.state !== "open") return;
    const p = r.queue[0];
    if (this.kind === "websocket") {
      if (!r.joined) return;
      if (!this.wsSend({ ...p.frame, client_msg_id: p.clientMsgId, ref: p.clientMsgId })) return;
    } else {
      void this.restSend(r, p, this.connId);
    }
    r.busy = true;
    p.status = "sending";
    p.attempts++;
    this.emitPending(r);
  }

  private onAck(room: string, clientMsgId: string, ack: Ack): void {
    const r = this.rooms.get(room);
    const p = r?.queue[0];
    if (!r || !p || p.clientMsgId !== clientMsgId) return; // a late answer to an entry already settled
    r.queue.shift();
    r.busy = false;
    p.resolve(ack);
    this.emitPending(r);
    this.pump(r);
  }

  private sendFailed(r: RoomState, p: Pending, err: ChorusError): void {
    if (r.queue[0] !== p) return;
    if (err.retryable) {
      // Retry this entry, with the same id, before anything behind it.
      p.status = "retrying";
      p.retryReason = err.code;
      const delay = err.code === "rate_limited" ? (err.retryAfterMs ?? 1000) : backoffDelay(p.attempts, this.minMs, this.maxMs);
      r.retryTimer = setTimeout(() => {
        r.retryTimer = undefined;
        r.busy = false;
        this.pump(r);
      }, delay);
      this.emitPending(r);
      return;
    }
    if (err.code === "not_joined" && this.kind === "websocket") {
      // The server lost our join (e.g. its room actor restarted): join again; the head goes after.
      r.busy = false;
      p.status = "queued";
      r.joined = false;
      this.startRoom(r);
      return;
    }
    r.queue.shift();
    r.busy = false;
    p.reject(err);
    this.emitPending(r);
    this.pump(r);
  }

  private emitPending(r: RoomState): void {
    this.emit("pending", { room: r.name, pending: r.queue.map(publicPending) });
  }

  // ----- the rest of the API ------------------------------------------------------------------------

  /** Moves your read cursor in `room` to `seq`; every one of your devices hears it. */
  async markRead(room: string, seq: number): Promise<ReadState> {
    if (this.kind === "websocket" && this.ws && this.ws.readyState === 1 && this.rooms.get(room)?.joined) {
      const ref = this.ref("read");
      const done = new Promise<ReadState>((resolve, reject) => this.reads.set(ref, { resolve, reject }));
      this.wsSend({ type: "read", room, seq, ref });
      return done;
    }
    const r = await this.api<any>(`/api/rooms/${encodeURIComponent(room)}/read`, { method: "PUT", body: JSON.stringify({ seq }) }, room);
    const state: ReadState = { room, seq: r.read_seq, unread: r.unread, lastSeq: r.last_seq };
    this.onRead(state);
    return state;
  }

  /** Tells the room you are typing (WebSocket only; ephemeral). */
  typing(room: string): void {
    if (this.rooms.get(room)?.joined) this.wsSend({ type: "typing", room });
  }

  /** Messages before `before` (or the latest), ascending, in their current state. */
  history(room: string, options: { before?: number; limit?: number } = {}): Promise<HistoryPage> {
    const q = new URLSearchParams({ limit: String(options.limit ?? 50) });
    if (options.before) q.set("before", String(options.before));
    return this.api<HistoryPage>(`/api/rooms/${encodeURIComponent(room)}/messages?${q}`, {}, room);
  }

  /** Your rooms, most recent first, with unread counts (rooms you posted in or read). */
  myRooms(options: { limit?: number } = {}): Promise<MyRoom[]> {
    return this.api<MyRoom[]>(`/api/me/rooms?limit=${options.limit ?? 100}`);
  }

  private ref(kind: string): string {
    return `${kind}-${++this.refCounter}`;
  }
}

function newRoom(name: string, since: number | null): RoomState {
  return {
    name,
    lastSeq: since,
    joined: false,
    waiters: [],
    queue: [],
    busy: false,
    presence: new Map(),
    unreadBase: 0,
    unreadAt: 0,
    counted: new Set(),
  };
}

function unreadOf(r: RoomState): number {
  return r.unreadBase + r.counted.size;
}

function publicPending(p: Pending): PendingEntry {
  const { clientMsgId, room, kind, body, target, status, attempts } = p;
  return status === "retrying"
    ? { clientMsgId, room, kind, body, target, status, attempts, retryReason: p.retryReason }
    : { clientMsgId, room, kind, body, target, status, attempts };
}

function withRoom(err: ChorusError, room: string): ChorusError {
  return err.room ? err : new ChorusError(err.code, err.message, { room, retryAfterMs: err.retryAfterMs });
}

function fallbackKind(): TransportKind {
  return typeof (globalThis as any).EventSource === "undefined" ? "poll" : "sse";
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

