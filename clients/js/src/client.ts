// The Chorus client: the connection state machine, tokens, and the rooms the app joined. One
// Transport (transport.ts: WebSocket, or SSE / long-poll plus REST) carries a connection; each
// room is a RoomSubscription (room.ts) with its cursor, unread count and queue of entries. Every
// room is resumed with `since` after any reconnect, to any node.

import { ChorusError, responseError } from "./errors.js";
import {
  type ServerFrame,
  type WireHistoryPage,
  type WireMyRoom,
  isEntry,
  toAck,
  toEntry,
  toHistoryPage,
  toJoined,
  toMyRoom,
  toReadState,
} from "./protocol.js";
import { type Pending, type RoomHost, RoomSubscription } from "./room.js";
import type { PostEntry, Transport, TransportHost } from "./transport.js";
import { HttpTransport } from "./transports/http.js";
import { type WebSocketRecord, WebSocketTransport } from "./transports/websocket.js";
import type {
  Ack,
  ChorusEvents,
  ChorusOptions,
  ConnectionState,
  HistoryPage,
  Joined,
  MyRoom,
  MyRoomsPage,
  PendingEntry,
  PresenceUser,
  ReadState,
  SearchPage,
  TransportKind,
  WebSocketConstructor,
} from "./types.js";
import { Emitter, backoffDelay, newId, refreshDelayMs, tokenClaims, utf8Length } from "./util.js";

/** Room ids the server accepts (PROTOCOL.md §2). */
export const ROOM_PATTERN = /^[A-Za-z0-9_.:-]{1,128}$/;
export const isValidRoom = (room: string): boolean => ROOM_PATTERN.test(room);

/** The server's default `limits.max_body_bytes` (a node that says otherwise in `hello` wins). */
export const DEFAULT_MAX_BODY_BYTES = 4096;

/** The longest wait before reconnecting after a node drained (the others are up). */
const DRAIN_BACKOFF_MAX_MS = 2000;

/** Which state may follow which; anything else is a bug in this file. */
const NEXT: Record<ConnectionState, ConnectionState[]> = {
  closed: ["connecting"],
  connecting: ["open", "reconnecting", "closed"],
  open: ["reconnecting", "closed"],
  reconnecting: ["open", "closed"],
};

interface Waiter<T> {
  resolve: (v: T) => void;
  reject: (e: ChorusError) => void;
}

export class Chorus extends Emitter<ChorusEvents> {
  /** The connection state; listen to `state` for changes. */
  state: ConnectionState = "closed";
  /** The user id the server knows this client as (the token's `sub`). */
  user: string | null;
  /** The name others see on this user's entries: the token's `name` claim, else the user id. */
  displayName: string | null;
  private token?: string;
  private readonly base: string;
  private readonly opts: ChorusOptions;
  private kind: TransportKind;
  private readonly WS?: WebSocketConstructor;
  private readonly fetch: typeof fetch;
  private readonly backoff: { minMs: number; maxMs: number };
  private readonly connectTimeoutMs: number;
  private maxBodyBytes = DEFAULT_MAX_BODY_BYTES;
  private rooms = new Map<string, RoomSubscription>();
  private reads = new Map<string, Waiter<ReadState> & { room: string; seq: number }>();
  private openWaiters: Waiter<void>[] = [];
  /** The current connection's transport; a dropped one is never called back. */
  private current: Transport | null = null;
  /** A connection opening with a renewed token; it replaces `current` once the node says hello. */
  private next: Transport | null = null;
  private ws: WebSocketRecord;
  private attempt = 0;
  /** The last connection ended with a drain: reconnect within DRAIN_BACKOFF_MAX_MS. */
  private draining = false;
  private authFailures = 0;
  private dials = 0;
  private timers = new Set<ReturnType<typeof setTimeout>>();
  private refreshTimer?: ReturnType<typeof setTimeout>;
  private tokenRequest: Promise<string> | null = null;
  private refCounter = 0;
  /** What every room is given of this client. */
  private readonly roomHost: RoomHost;

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
    this.displayName = displayNameOf(options.token) ?? this.user;
    this.WS = options.WebSocket ?? (globalThis as any).WebSocket;
    const f = options.fetch ?? (globalThis as any).fetch;
    this.fetch = (...args: Parameters<typeof fetch>) => f(...args);
    this.backoff = { minMs: options.backoff?.minMs ?? 500, maxMs: options.backoff?.maxMs ?? 30_000 };
    this.connectTimeoutMs = options.connectTimeoutMs ?? 15_000;
    this.roomHost = {
      emit: (type, event) => this.emit(type, event),
      transport: () => (this.state === "open" ? this.current : null),
      rejoin: (r) => this.startRoom(r),
      backoff: this.backoff,
    };
    const wanted = options.transport ?? "auto";
    this.kind = wanted === "auto" ? (this.WS ? "websocket" : fallbackKind()) : wanted;
    this.ws = { worked: false, failures: 0, only: wanted === "websocket" };
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

  /** While `reconnecting`: try now instead of waiting out the backoff (a "retry now" button). */
  reconnectNow(): void {
    if (this.state !== "reconnecting") return;
    this.dropConnection(); // the pending attempt is void; nothing half-open is left behind
    this.attempt = 0;
    void this.dial();
  }

  /** Closes for good (not an error): unsent entries and unanswered joins are rejected with `closed`. */
  close(): void {
    if (this.state === "closed") return;
    this.shutdown(new ChorusError("closed", "the client was closed"), "closed by the app");
  }

  private async dial(): Promise<void> {
    const dial = ++this.dials;
    let token: string;
    try {
      token = this.token ?? (await this.renewToken());
    } catch (e) {
      if (dial === this.dials) this.retry(0, `getToken failed: ${errorText(e)}`);
      return;
    }
    if (dial !== this.dials || this.state === "closed") return;
    const t = this.newTransport();
    this.current = t;
    t.open(token);
  }

  /** A transport of the current kind, with a host that goes quiet once it is not current. */
  private newTransport(): Transport {
    let t: Transport;
    const live = () => this.current === t;
    // A connection opening beside a live one (token renewal): if it fails, the live one carries on
    // (its token is still good until it expires, and then the 4001 path renews again).
    const abandon = () => {
      if (this.next !== t) return false;
      this.next = null;
      t.close();
      return true;
    };
    const host: TransportHost = {
      frame: (f) => live() && this.onFrame(f),
      opened: (hello) => {
        if (this.next === t) this.moveTo(t);
        if (!live()) return;
        if (hello) this.user = hello.user ?? this.user;
        const limit = (hello as { max_body_bytes?: number } | undefined)?.max_body_bytes;
        if (limit) this.maxBodyBytes = limit;
        this.opened();
        for (const r of this.rooms.values()) this.startRoom(r);
      },
      lost: (reason, floorMs, draining) => {
        if (abandon() || !live() || this.state === "closed") return;
        if (draining) this.draining = true;
        this.retry(floorMs ?? 0, reason);
      },
      authFailed: () => abandon() || (live() && this.authFailed()),
      fatal: (err) => abandon() || (live() && this.fatal(err)),
      fallBack: () => {
        if (abandon() || !live()) return;
        // The node answers HTTP but WebSocket never got through (a proxy): HTTP for good.
        this.kind = fallbackKind();
        this.dropConnection();
        void this.dial();
      },
      roomFailed: (room, err) => {
        const r = this.rooms.get(room);
        if (!live() || !r) return;
        this.emit("error", err);
        this.dropRoom(r, err);
      },
      token: () => this.token,
      probe: () => this.probe(),
      later: (ms, fn) => this.later(ms, fn),
    };
    t =
      this.kind === "websocket"
        ? new WebSocketTransport(host, this.base, this.WS!, this.connectTimeoutMs, this.ws)
        : new HttpTransport(this.kind, host, this.base, this.fetch);
    return t;
  }

  private retry(floorMs: number, reason: string): void {
    if (this.state === "closed") return;
    this.dropConnection();
    this.setState("reconnecting", reason);
    const dial = this.dials;
    // After a drain (1012, or SSE's `draining`) the other nodes are up: the backoff is capped until
    // the next open, so a drain that outlasted many attempts does not leave the page waiting 30 s.
    const max = this.draining ? Math.min(this.backoff.maxMs, DRAIN_BACKOFF_MAX_MS) : this.backoff.maxMs;
    const delay = backoffDelay(this.attempt++, Math.min(this.backoff.minMs, max), max, floorMs);
    this.later(delay, () => {
      if (dial === this.dials) void this.dial();
    });
  }

  /** Forget everything tied to the current connection; rooms stay, to be joined again. */
  private dropConnection(): void {
    this.dials++;
    this.next?.close();
    this.next = null;
    this.current?.close();
    this.current = null;
    for (const r of this.rooms.values()) r.unjoin();
    for (const w of this.reads.values()) w.reject(new ChorusError("unavailable", "connection lost before the reply"));
    this.reads.clear();
  }

  private shutdown(err: ChorusError, reason: string): void {
    this.dropConnection();
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    for (const r of this.rooms.values()) r.end(err);
    for (const w of this.openWaiters) w.reject(err);
    this.openWaiters = [];
    this.setState("closed", reason);
  }

  /** A refusal that reconnecting cannot cure: tell the app, then close. */
  private fatal(err: ChorusError): void {
    this.emit("error", err);
    this.shutdown(err, err.message);
  }

  /**
   * Token renewal without a visible reconnect: the connection with the new token said hello, so it
   * becomes the current one (the state stays `open`). Every room is joined on it with `since`, so
   * nothing is missed or repeated across the switch; unacked entries go again with their
   * client_msg_id, and reads waiting for an answer are asked again on it.
   */
  private moveTo(t: Transport): void {
    const reads = [...this.reads];
    this.reads.clear(); // dropConnection must not reject these: they move too
    this.next = null;
    this.dropConnection();
    this.current = t;
    for (const [ref, w] of reads) {
      if (t.markRead(w.room, w.seq, ref)) this.reads.set(ref, w);
      else w.reject(new ChorusError("unavailable", "connection changed before the reply"));
    }
  }

  private opened(): void {
    this.attempt = 0;
    this.draining = false;
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
        this.displayName = displayNameOf(token) ?? this.user;
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
      // The server says only "refused"; the token's own expiry tells the two cases apart.
      const exp = tokenClaims(this.token)?.exp;
      const expired = typeof exp === "number" && exp * 1000 <= Date.now();
      this.fatal(
        expired
          ? new ChorusError("token_expired", "the server refused the token: it has expired")
          : new ChorusError("token_invalid", "the server refused the token, which has not expired: it is malformed, signed with another secret, or meant for another server"),
      );
      return;
    }
    this.token = undefined; // dial() asks getToken for a new one
    // A second refusal in a row (a getToken that hands back a bad token) backs off like any failure.
    if (this.authFailures++ > 0) return this.retry(0, "the token was refused again");
    this.dropConnection();
    this.setState("reconnecting", "renewing the token");
    void this.dial();
  }

  /** Renew a little before expiry, then move to the new token (resuming every room). */
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
      if (this.state !== "open" || !this.current || !this.token) return;
      if (this.current.renewal === "reconnect") {
        // The server holds a socket to its token's expiry, so open another with the new token
        // beside it and move over once that one is open (moveTo): the app sees no reconnect.
        this.next?.close();
        this.next = this.newTransport();
        this.next.open(this.token);
      } else {
        for (const r of this.rooms.values()) r.unjoin();
        for (const r of this.rooms.values()) this.startRoom(r);
        this.scheduleRefresh();
      }
    }, refreshDelayMs(exp));
  }

  // ----- what the server says --------------------------------------------------------------------

  private onFrame(f: ServerFrame): void {
    if (isEntry(f)) {
      this.rooms.get(f.room)?.entry(f.seq, toEntry(f));
      return;
    }
    switch (f.type) {
      case "joined": {
        const r = this.rooms.get(f.room);
        if (!r || (f.ref && f.ref !== r.joinRef)) return; // a reply to an abandoned join
        r.joinedWith(toJoined(f));
        return;
      }
      case "ack": {
        // Matched by `ref` (always ours): an entry that already held is acked with the seq, id and
        // client_msg_id of the entry that made it hold, not with ours.
        const id = f.ref ?? f.client_msg_id;
        if (id) this.rooms.get(f.room)?.acked(id, toAck(f, id));
        return;
      }
      case "read": {
        const state = toReadState(f);
        const w = f.ref ? this.reads.get(f.ref) : undefined;
        if (w && f.ref) {
          this.reads.delete(f.ref);
          w.resolve(state);
        }
        if (f.user === this.user) this.onRead(state);
        return;
      }
      case "presence":
      case "presence_diff": {
        const r = this.rooms.get(f.room);
        if (!r) return;
        if (f.type === "presence") r.presence = new Map(f.users.map((u) => [u.user, u]));
        else {
          for (const u of f.joins) r.presence.set(u.user, u);
          for (const u of f.leaves) r.presence.delete(u.user);
        }
        this.emit("presence", { room: f.room, users: [...r.presence.values()] });
        return;
      }
      case "typing":
        this.emit("typing", { room: f.room, user: f.user });
        return;
      case "reset":
        this.rooms.get(f.room)?.reset(f.epoch, f.last_seq);
        return;
      case "error": {
        const err = new ChorusError(f.code, f.message, { room: f.room, retryAfterMs: f.retry_after_ms, status: f.status });
        if (f.ref && this.onRefused(f.ref, err)) return;
        if (f.ref !== "hb") this.emit("error", err);
        return;
      }
      case "hello":
      case "left":
      case "history":
      case "pong":
        return;
      default: {
        // An entry type this client does not know still advances its room's cursor (PROTOCOL §7).
        const unknown = f as { room?: unknown; seq?: unknown };
        if (typeof unknown.room === "string" && typeof unknown.seq === "number") {
          this.rooms.get(unknown.room)?.entry(unknown.seq, null);
        }
      }
    }
  }

  /** An `error` answering our request `ref`: a join, an entry, or a read. */
  private onRefused(ref: string, err: ChorusError): boolean {
    for (const r of this.rooms.values()) {
      if (r.joinRef === ref) {
        this.joinFailed(r, withRoom(err, r.name));
        return true;
      }
      if (r.failed(ref, withRoom(err, r.name))) return true;
    }
    const w = this.reads.get(ref);
    if (!w) return false;
    this.reads.delete(ref);
    w.reject(err);
    return true;
  }

  private onRead(s: ReadState): void {
    this.rooms.get(s.room)?.read(s);
    this.emit("read", s);
  }

  // ----- REST ---------------------------------------------------------------------------------

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
      r = new RoomSubscription(room, options.since ?? null, this.roomHost, () => this.user);
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
    if (r.joined) this.current?.leave(room, this.ref("leave"));
    this.dropRoom(r, new ChorusError("not_joined", "left the room", { room }));
  }

  /** The rooms joined, with their cursor and unread count. */
  joinedRooms(): { room: string; lastSeq: number | null; unread: number }[] {
    return [...this.rooms.values()].map((r) => ({ room: r.name, lastSeq: r.lastSeq, unread: r.unread }));
  }

  /** Unread messages in `room`: exact at each `joined`/`read` from the server, counted from live entries between. */
  unread(room: string): number {
    return this.rooms.get(room)?.unread ?? 0;
  }

  presence(room: string): PresenceUser[] {
    return [...(this.rooms.get(room)?.presence.values() ?? [])];
  }

  private startRoom(r: RoomSubscription): void {
    if (!this.current) return;
    r.joinRef = this.ref("join");
    this.current.join(r.name, r.lastSeq, r.epoch, r.joinRef);
  }

  private joinFailed(r: RoomSubscription, err: ChorusError): void {
    r.joinRef = undefined;
    if (err.retryable) {
      // The server could not join us just now (a dependency down): try again, keep the room.
      this.later(backoffDelay(this.attempt, this.backoff.minMs, this.backoff.maxMs), () => {
        if (this.rooms.get(r.name) === r && this.state === "open" && !r.joined) this.startRoom(r);
      });
      return;
    }
    if (!r.waiters.length) this.emit("error", err); // an automatic re-join: nobody else would hear
    this.dropRoom(r, err);
  }

  private dropRoom(r: RoomSubscription, err: ChorusError): void {
    if (this.rooms.get(r.name) !== r) return;
    this.rooms.delete(r.name);
    r.end(err);
  }

  // ----- sending ------------------------------------------------------------------------------------

  /**
   * Posts `body` to `room` and resolves with the ack once it is committed. Entries to one room are
   * committed in the order of these calls, each exactly once (the client keeps its client_msg_id
   * across retries and reconnects); while offline they wait, listed by `pending()`.
   */
  send(room: string, body: string, options: { clientMsgId?: string } = {}): Promise<Ack> {
    return this.enqueue({ room, kind: "send", body }, options);
  }

  /** Replaces the body of your message `seq`. */
  edit(room: string, seq: number, body: string, options: { clientMsgId?: string } = {}): Promise<Ack> {
    return this.enqueue({ room, kind: "edit", target: seq, body }, options);
  }

  /** Deletes message `seq` (yours, or any as a moderator). */
  delete(room: string, seq: number, options: { clientMsgId?: string } = {}): Promise<Ack> {
    return this.enqueue({ room, kind: "delete", target: seq }, options);
  }

  /** Adds (`add`) or removes (`remove`) your reaction `key` on message `seq`. */
  react(room: string, seq: number, key: string, op: "add" | "remove" = "add", options: { clientMsgId?: string } = {}): Promise<Ack> {
    return this.enqueue({ room, kind: "react", target: seq, key, op }, options);
  }

  /** Entries not yet acked, in the order they will be committed (all rooms, or one). */
  pending(room?: string): PendingEntry[] {
    const rooms = room ? [this.rooms.get(room)].filter((r) => r !== undefined) : [...this.rooms.values()];
    return rooms.flatMap((r) => r.pending());
  }

  private enqueue(what: Omit<PostEntry, "clientMsgId">, options: { clientMsgId?: string }): Promise<Ack> {
    const r = this.rooms.get(what.room);
    const room = what.room;
    if (!r) return Promise.reject(new ChorusError("not_joined", "join the room before sending to it", { room }));
    if (this.state === "closed" && !this.openWaiters.length && this.dials > 0) {
      return Promise.reject(new ChorusError("closed", "the client was closed", { room }));
    }
    // One entry the server would refuse for its size fails alone, before it goes out.
    if (what.body !== undefined && utf8Length(what.body) > this.maxBodyBytes) {
      const limit = this.maxBodyBytes;
      return Promise.reject(new ChorusError("body_too_large", `the body is over ${limit} bytes`, { room }));
    }
    const entry: PostEntry = { ...what, clientMsgId: options.clientMsgId ?? newId() };
    return new Promise<Ack>((resolve, reject) => {
      const p: Pending = {
        clientMsgId: entry.clientMsgId,
        room,
        kind: entry.kind,
        body: entry.body,
        target: entry.target,
        status: "queued",
        attempts: 0,
        entry,
        resolve,
        reject,
      };
      r.enqueue(p);
    });
  }

  // ----- the rest of the API ------------------------------------------------------------------------

  /** Moves your read cursor in `room` to `seq`; every one of your devices hears it. */
  async markRead(room: string, seq: number): Promise<ReadState> {
    const ref = this.ref("read");
    if (this.state === "open" && this.rooms.get(room)?.joined && this.current?.markRead(room, seq, ref)) {
      return new Promise<ReadState>((resolve, reject) => this.reads.set(ref, { resolve, reject, room, seq }));
    }
    const r = await this.api<{ read_seq: number; unread: number; last_seq: number }>(
      `/api/rooms/${encodeURIComponent(room)}/read`,
      { method: "PUT", body: JSON.stringify({ seq }) },
      room,
    );
    const state = toReadState({ room, seq: r.read_seq, unread: r.unread, last_seq: r.last_seq });
    this.onRead(state);
    return state;
  }

  /** Tells the room you are typing (WebSocket only; ephemeral). */
  typing(room: string): void {
    if (this.rooms.get(room)?.joined) this.current?.typing(room);
  }

  /** Messages before `before` (or the latest), ascending, in their current state. */
  async history(room: string, options: { before?: number; limit?: number } = {}): Promise<HistoryPage> {
    const q = new URLSearchParams({ limit: String(options.limit ?? 50) });
    if (options.before) q.set("before", String(options.before));
    const page = await this.api<WireHistoryPage>(`/api/rooms/${encodeURIComponent(room)}/messages?${q}`, {}, room);
    return toHistoryPage(page);
  }

  /** Your rooms, most recent first, with unread counts (the first `limit`, default 100). */
  async myRooms(options: { limit?: number } = {}): Promise<MyRoom[]> {
    const rooms = await this.api<WireMyRoom[]>(`/api/me/rooms?limit=${options.limit ?? 100}`);
    return rooms.map(toMyRoom);
  }

  /** A page of your rooms; pass the page's `next` as `after` for the one after it. */
  async myRoomsPage(options: { after?: string; limit?: number } = {}): Promise<MyRoomsPage> {
    const q = new URLSearchParams({ after: options.after ?? "", limit: String(options.limit ?? 50) });
    const page = await this.api<{ rooms: WireMyRoom[]; next?: string }>(`/api/me/rooms?${q}`);
    const out: MyRoomsPage = { rooms: page.rooms.map(toMyRoom) };
    if (page.next) out.next = page.next;
    return out;
  }

  /**
   * Full-text search in the rooms this token may read (or in `room`), newest first: every word must
   * match; `"a phrase"`, `or` and `-word` work as in a web search box. Pass a page's `next` as `before`.
   */
  async search(q: string, options: { room?: string; before?: string; limit?: number } = {}): Promise<SearchPage> {
    const params = new URLSearchParams({ q, limit: String(options.limit ?? 20) });
    if (options.room) params.set("room", options.room);
    if (options.before) params.set("before", options.before);
    const page = await this.api<SearchPage>(`/api/search?${params}`, {}, options.room);
    const out: SearchPage = { results: page.results };
    if (page.next) out.next = page.next;
    return out;
  }

  private ref(kind: string): string {
    return `${kind}-${++this.refCounter}`;
  }
}

function withRoom(err: ChorusError, room: string): ChorusError {
  return err.room ? err : new ChorusError(err.code, err.message, { room, retryAfterMs: err.retryAfterMs, status: err.status });
}

function displayNameOf(token: string | undefined): string | null {
  const name = (tokenClaims(token) as { name?: unknown } | null)?.name;
  return typeof name === "string" && name ? name : null;
}

function fallbackKind(): TransportKind {
  return typeof (globalThis as any).EventSource === "undefined" ? "poll" : "sse";
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
