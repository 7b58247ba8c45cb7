// src/errors.ts
var RETRYABLE = /* @__PURE__ */ new Set(["unavailable", "rate_limited", "internal"]);
var ChorusError = class extends Error {
  constructor(code, message, extra = {}) {
    super(extra.room ? `${message} (room ${extra.room})` : message);
    this.name = "ChorusError";
    this.code = code;
    this.room = extra.room;
    this.status = extra.status;
    this.retryAfterMs = extra.retryAfterMs;
  }
  get retryable() {
    return RETRYABLE.has(this.code);
  }
};
async function responseError(res, room) {
  let body = {};
  try {
    body = await res.json();
  } catch {
  }
  const e = body && body.error ? body.error : { code: `http_${res.status}`, message: res.statusText || `HTTP ${res.status}` };
  const after = Number(res.headers.get("retry-after"));
  return new ChorusError(String(e.code), String(e.message), {
    room,
    status: res.status,
    retryAfterMs: after > 0 ? after * 1e3 : void 0
  });
}

// src/protocol.ts
var SERVER_FRAME_FIELDS = {
  hello: ["protocol", "node", "session", "user", "heartbeat_ms"],
  joined: ["ref", "room", "epoch", "last_seq", "recovered", "read_seq", "unread"],
  message: ["room", "seq", "id", "user", "name", "body", "ts", "client_msg_id", "edited_ts", "deleted", "reactions"],
  edit: ["room", "seq", "id", "target", "user", "name", "body", "ts", "client_msg_id", "deleted"],
  delete: ["room", "seq", "id", "target", "user", "name", "ts", "client_msg_id"],
  react: ["room", "seq", "id", "target", "user", "name", "key", "op", "ts", "client_msg_id"],
  ack: ["ref", "room", "seq", "id", "ts", "client_msg_id", "duplicate"],
  left: ["ref", "room"],
  history: ["ref", "room", "messages"],
  presence: ["room", "users"],
  presence_diff: ["room", "joins", "leaves"],
  typing: ["room", "user"],
  read: ["ref", "room", "user", "seq", "unread", "last_seq"],
  reset: ["room", "epoch", "last_seq"],
  pong: ["ref"],
  error: ["ref", "code", "message", "retry_after_ms"]
};
var ENTRY_TYPES = /* @__PURE__ */ new Set(["message", "edit", "delete", "react"]);
function parseFrame(text2) {
  let value;
  try {
    value = JSON.parse(text2);
  } catch {
    return null;
  }
  if (!value || typeof value !== "object") return null;
  const type = value.type;
  return typeof type === "string" ? value : null;
}
function isEntry(f) {
  return ENTRY_TYPES.has(f.type);
}
function put(out, key, value) {
  if (value !== void 0) out[key] = value;
  return out;
}
function toMessage(w) {
  const m = { type: "message", room: w.room, seq: w.seq, id: w.id, user: w.user, body: w.body, ts: w.ts };
  put(m, "name", w.name);
  put(m, "clientMsgId", w.client_msg_id);
  put(m, "editedTs", w.edited_ts);
  put(m, "deleted", w.deleted);
  return put(m, "reactions", w.reactions);
}
function toEntry(w) {
  if (w.type === "message") return toMessage(w);
  const base = { room: w.room, seq: w.seq, id: w.id, user: w.user, ts: w.ts };
  put(base, "name", w.name);
  put(base, "clientMsgId", w.client_msg_id);
  switch (w.type) {
    case "edit":
      return put({ ...base, type: "edit", target: w.target, body: w.body }, "deleted", w.deleted);
    case "delete":
      return { ...base, type: "delete", target: w.target };
    case "react":
      return { ...base, type: "react", target: w.target, key: w.key, op: w.op };
  }
}
function toJoined(f) {
  const j = { room: f.room, lastSeq: f.last_seq, recovered: !!f.recovered };
  put(j, "epoch", f.epoch);
  put(j, "readSeq", f.read_seq);
  return put(j, "unread", f.unread);
}
function toAck(f, clientMsgId) {
  return { room: f.room, seq: f.seq, id: f.id, ts: f.ts, clientMsgId, duplicate: !!f.duplicate };
}
function toReadState(f) {
  return { room: f.room, seq: f.seq, unread: f.unread, lastSeq: f.last_seq ?? f.seq };
}
function toHistoryPage(w) {
  return put({ room: w.room, lastSeq: w.last_seq, messages: w.messages.map(toMessage) }, "epoch", w.epoch);
}
function toMyRoom(w) {
  const r = { room: w.room, lastSeq: w.last_seq, readSeq: w.read_seq, unread: w.unread };
  return put(r, "lastMessage", w.last_message && toMessage(w.last_message));
}

// src/util.ts
var Emitter = class {
  constructor() {
    this.listeners = /* @__PURE__ */ new Map();
  }
  /** Adds a listener; returns the function that removes it. */
  on(type, fn) {
    let set = this.listeners.get(type);
    if (!set) this.listeners.set(type, set = /* @__PURE__ */ new Set());
    set.add(fn);
    return () => this.off(type, fn);
  }
  off(type, fn) {
    this.listeners.get(type)?.delete(fn);
  }
  emit(type, event) {
    for (const fn of [...this.listeners.get(type) ?? []]) {
      try {
        fn(event);
      } catch (e) {
        setTimeout(() => {
          throw e;
        });
      }
    }
  }
};
function backoffDelay(attempt, minMs, maxMs, floor = 0) {
  const cap = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 30));
  return Math.max(floor, Math.random() * cap);
}
function newId() {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === "function") return c.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`;
}
function tokenClaims(token) {
  if (!token) return null;
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const padded = part + "=".repeat((4 - part.length % 4) % 4);
    return JSON.parse(decodeUtf8(atob(padded)));
  } catch {
    return null;
  }
}
function decodeUtf8(binary) {
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}
function refreshDelayMs(exp, now = Date.now()) {
  const left = exp * 1e3 - now;
  const early = Math.min(6e4, Math.max(1e3, left / 10));
  return Math.max(0, left - early);
}
function utf8Length(s) {
  return new TextEncoder().encode(s).length;
}

// src/room.ts
var RoomSubscription = class {
  constructor(name, since, host, me) {
    this.name = name;
    this.host = host;
    this.me = me;
    /** Joined on the current connection. */
    this.joined = false;
    this.waiters = [];
    this.queue = [];
    this.busy = false;
    this.presence = /* @__PURE__ */ new Map();
    this.unreadBase = 0;
    this.unreadAt = 0;
    /** Others' messages after the last exact count: counted live. */
    this.counted = /* @__PURE__ */ new Set();
    this.lastSeq = since;
  }
  get unread() {
    return this.unreadBase + this.counted.size;
  }
  /** The connection went away: joined no more, the head goes again on the next one. */
  unjoin() {
    this.joined = false;
    this.joinRef = void 0;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = void 0;
    this.busy = false;
    for (const p of this.queue) if (p.status !== "queued") p.status = "queued";
  }
  /** Ends the room for the app: every waiter and every pending entry rejects with `err`. */
  end(err) {
    this.unjoin();
    for (const w of this.waiters) w.reject(err);
    this.waiters = [];
    for (const p of this.queue) p.reject(err);
    this.queue = [];
    this.emitPending();
  }
  joinedWith(j) {
    const resume = this.lastSeq !== null;
    if (resume && !j.recovered) {
      this.lastSeq = j.lastSeq;
      this.counted.clear();
      this.host.emit("reset", { room: this.name, lastSeq: j.lastSeq });
    } else if (!resume) {
      this.lastSeq = j.lastSeq;
    }
    this.epoch = j.epoch;
    this.joined = true;
    this.last = j;
    if (j.unread !== void 0 && j.readSeq !== void 0) {
      this.readSeq = j.readSeq;
      this.unreadBase = j.unread;
      this.unreadAt = j.lastSeq;
      this.counted = new Set([...this.counted].filter((s) => s > j.lastSeq));
    }
    for (const w of this.waiters) w.resolve(j);
    this.waiters = [];
    this.host.emit("joined", j);
    this.host.emit("unread", { room: this.name, unread: this.unread });
    this.pump();
  }
  /** An entry of the room's log (`known` false: a type this client does not know, which still
   * advances the cursor). False if it was seen already (a resume's overlap). */
  entry(seq, e) {
    if (this.lastSeq !== null && seq <= this.lastSeq) return false;
    this.lastSeq = seq;
    if (!e) return true;
    const before = this.unread;
    if (e.type === "message") {
      if (e.user !== this.me() && !e.deleted && e.seq > Math.max(this.readSeq ?? 0, this.unreadAt)) this.counted.add(e.seq);
      this.host.emit("message", { room: this.name, message: e });
    } else {
      if (e.type === "delete") this.counted.delete(e.target);
      this.host.emit("entry", { room: this.name, entry: e });
    }
    if (this.unread !== before) this.host.emit("unread", { room: this.name, unread: this.unread });
    return true;
  }
  /** This user's cursor moved (on any device): the count is exact again. */
  read(s) {
    if (this.readSeq !== void 0 && s.seq < this.readSeq) return;
    this.readSeq = s.seq;
    this.unreadBase = s.unread;
    this.unreadAt = s.lastSeq ?? s.seq;
    this.counted = new Set([...this.counted].filter((q) => q > this.unreadAt && q > s.seq));
    this.host.emit("unread", { room: this.name, unread: this.unread });
  }
  /** The history was reset (PROTOCOL §6): live entries go on after `lastSeq` of `epoch`. */
  reset(epoch, lastSeq) {
    this.lastSeq = lastSeq;
    this.epoch = epoch;
    this.host.emit("reset", { room: this.name, lastSeq });
  }
  // ----- entries, in the user's order ---------------------------------------------------------
  enqueue(p) {
    this.queue.push(p);
    this.emitPending();
    this.pump();
  }
  /** Puts the head on the wire if it may go now. */
  pump() {
    const transport = this.host.transport();
    if (this.busy || !this.queue.length || !transport || !this.joined) return;
    const p = this.queue[0];
    if (!transport.post(p.entry)) return;
    this.busy = true;
    p.status = "sending";
    p.attempts++;
    this.emitPending();
  }
  /** The head's ack (matched by its client_msg_id; a late answer to a settled entry changes nothing). */
  acked(clientMsgId, ack) {
    const p = this.queue[0];
    if (!p || p.clientMsgId !== clientMsgId) return;
    this.queue.shift();
    this.busy = false;
    p.resolve(ack);
    this.emitPending();
    this.pump();
  }
  /** The head was refused: retried (same id, before anything behind it), or failed alone. */
  failed(clientMsgId, err) {
    const p = this.queue[0];
    if (!p || p.clientMsgId !== clientMsgId) return false;
    if (err.retryable) {
      p.status = "retrying";
      p.retryReason = err.code;
      const { minMs, maxMs } = this.host.backoff;
      const delay = err.code === "rate_limited" ? err.retryAfterMs ?? 1e3 : backoffDelay(p.attempts, minMs, maxMs);
      this.retryTimer = setTimeout(() => {
        this.retryTimer = void 0;
        this.busy = false;
        this.pump();
      }, delay);
      this.emitPending();
      return true;
    }
    if (err.code === "not_joined") {
      this.busy = false;
      p.status = "queued";
      this.joined = false;
      this.host.rejoin(this);
      return true;
    }
    this.queue.shift();
    this.busy = false;
    p.reject(err);
    this.emitPending();
    this.pump();
    return true;
  }
  /** Fails one entry that never went out (refused by the client itself). */
  refuse(p, err) {
    p.reject(err);
  }
  pending() {
    return this.queue.map(publicPending);
  }
  emitPending() {
    this.host.emit("pending", { room: this.name, pending: this.pending() });
  }
};
function publicPending(p) {
  const { clientMsgId, room, kind, body, target, status, attempts } = p;
  return status === "retrying" ? { clientMsgId, room, kind, body, target, status, attempts, retryReason: p.retryReason } : { clientMsgId, room, kind, body, target, status, attempts };
}

// src/transports/http.ts
var POLL_TIMEOUT_S = 25;
var HttpTransport = class {
  constructor(kind, host, base, fetch) {
    this.kind = kind;
    this.host = host;
    this.base = base;
    this.fetch = fetch;
    this.renewal = "rejoin";
    this.dead = false;
    this.streams = /* @__PURE__ */ new Map();
  }
  open() {
    void this.host.probe().then((probe) => {
      if (this.dead) return;
      if (probe === "auth") return this.host.authFailed();
      if (probe === "down") return this.host.lost("the server is unreachable");
      this.host.opened();
    });
  }
  close() {
    this.dead = true;
    for (const s of this.streams.values()) s.stop();
    this.streams.clear();
  }
  roomUrl(room) {
    return `${this.base}/api/rooms/${encodeURIComponent(room)}`;
  }
  headers() {
    const token = this.host.token();
    return token ? { authorization: `Bearer ${token}` } : {};
  }
  /** A request failed for want of a server: reconnect everything. */
  lost(reason) {
    if (!this.dead) this.host.lost(reason);
  }
  /** Reads the head; answers `joined` (recovered when `since` is still good), then streams. */
  join(room, since, epoch, ref) {
    void this.joinRoom(room, since, epoch, ref);
  }
  async joinRoom(room, since, epoch, ref) {
    this.leave(room);
    let page;
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
    const recovered = since !== null && (epoch === void 0 || epoch === page.epoch) && since <= page.last_seq;
    const joined = { type: "joined", ref, room, last_seq: page.last_seq, recovered };
    if (page.epoch !== void 0) joined.epoch = page.epoch;
    this.host.frame(joined);
    const from = recovered ? since : page.last_seq;
    if (this.kind === "sse") this.streamSse(room, from);
    else void this.streamPoll(room, from);
    this.fetch(`${this.roomUrl(room)}/presence`, { headers: this.headers() }).then((res) => res.ok ? res.json() : null).then((p) => {
      if (p && !this.dead && this.streams.has(room)) this.host.frame({ type: "presence", room, users: p.users });
    }).catch(() => {
    });
  }
  leave(room) {
    this.streams.get(room)?.stop();
    this.streams.delete(room);
  }
  streamSse(room, after) {
    const ES = globalThis.EventSource;
    const q = new URLSearchParams({ access_token: this.host.token() ?? "", after: String(after) });
    const src = new ES(`${this.roomUrl(room)}/events?${q}`);
    const stream = { cursor: after, stop: () => src.close() };
    this.streams.set(room, stream);
    const entry = (ev) => {
      if (!this.dead && this.streams.get(room) === stream) this.host.frame(JSON.parse(ev.data));
    };
    for (const type of ["message", "edit", "delete", "react"]) src.addEventListener(type, entry);
    src.addEventListener("reset", (ev) => {
      if (!this.dead && this.streams.get(room) === stream) this.host.frame(JSON.parse(ev.data));
    });
    src.addEventListener("draining", () => {
      if (this.dead || this.streams.get(room) !== stream) return;
      src.close();
      if (!this.dead) this.host.lost("the node is draining", 0, true);
    });
    src.onerror = () => {
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
  async streamPoll(room, after) {
    let stopped = false;
    const abort = typeof AbortController === "function" ? new AbortController() : null;
    const stream = {
      cursor: after,
      stop: () => {
        stopped = true;
        abort?.abort();
      }
    };
    this.streams.set(room, stream);
    while (!stopped && !this.dead) {
      let body;
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
  post(e) {
    void this.rest(e);
    return true;
  }
  async rest(e) {
    const messages = `/messages${e.target !== void 0 ? `/${e.target}` : ""}`;
    const [method, path, body] = e.kind === "send" ? ["POST", messages, { body: e.body }] : e.kind === "edit" ? ["PATCH", messages, { body: e.body }] : e.kind === "delete" ? ["DELETE", messages, void 0] : [e.op === "remove" ? "DELETE" : "PUT", `${messages}/reactions/${encodeURIComponent(e.key ?? "")}`, void 0];
    let res;
    try {
      const init = {
        method,
        headers: { ...this.headers(), "content-type": "application/json", "idempotency-key": e.clientMsgId }
      };
      if (body) init.body = JSON.stringify({ ...body, client_msg_id: e.clientMsgId });
      res = await this.fetch(`${this.roomUrl(e.room)}${path}`, init);
    } catch (err2) {
      if (this.dead) return;
      this.host.frame({ type: "error", ref: e.clientMsgId, room: e.room, code: "unavailable", message: text(err2) });
      return this.lost(`sending to ${e.room}: ${text(err2)}`);
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
      status: res.status
    });
  }
  /** Over HTTP the client moves the cursor with its own REST call. */
  markRead() {
    return false;
  }
  typing() {
  }
};
function text(e) {
  return e instanceof Error ? e.message : String(e);
}

// src/transports/websocket.ts
var FATAL_CLOSE = {
  1e3: "closed",
  1002: "protocol_error",
  1007: "protocol_error",
  1008: "policy_violation",
  4003: "forbidden"
};
var FAILURES_BEFORE_FALLBACK = 3;
var WebSocketTransport = class {
  constructor(host, base, WS, connectTimeoutMs, record) {
    this.host = host;
    this.base = base;
    this.WS = WS;
    this.connectTimeoutMs = connectTimeoutMs;
    this.record = record;
    this.kind = "websocket";
    this.renewal = "reconnect";
    this.ws = null;
    this.dead = false;
    this.hello = false;
    this.lastHeard = 0;
  }
  open(token) {
    const url = `${this.base.replace(/^http/, "ws")}/ws?access_token=${encodeURIComponent(token)}`;
    let ws;
    try {
      ws = new this.WS(url);
    } catch (e) {
      this.host.lost(`cannot open a WebSocket: ${e instanceof Error ? e.message : String(e)}`);
      return;
    }
    this.ws = ws;
    this.timeout = this.host.later(this.connectTimeoutMs, () => {
      if (!this.dead && !this.hello) this.host.lost("the server did not answer in time");
    });
    ws.onmessage = (ev) => {
      if (this.dead) return;
      this.lastHeard = Date.now();
      const frame = parseFrame(String(ev.data));
      if (!frame) return;
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
    ws.onerror = () => {
    };
    ws.onclose = (ev) => {
      if (this.dead) return;
      this.ws = null;
      void this.closed(ev.code);
    };
  }
  close() {
    this.dead = true;
    if (this.heartbeat) clearInterval(this.heartbeat);
    if (this.timeout) clearTimeout(this.timeout);
    const ws = this.ws;
    this.ws = null;
    if (!ws) return;
    ws.onclose = ws.onmessage = ws.onopen = ws.onerror = null;
    try {
      ws.close(1e3);
    } catch {
    }
  }
  async closed(code) {
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
    this.host.lost(`connection closed (${code})`, code === 4029 ? 1e4 : 0, code === 1012);
  }
  send(frame) {
    if (!this.ws || this.ws.readyState !== 1) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }
  startHeartbeat(ms) {
    const period = Math.max(1e3, ms || 1e4);
    this.heartbeat = setInterval(() => {
      if (Date.now() - this.lastHeard > period * 2.5) {
        this.host.lost("heartbeat timeout");
        return;
      }
      this.send({ type: "ping", ref: "hb" });
    }, period);
  }
  join(room, since, epoch, ref) {
    const frame = { type: "join", room, ref };
    if (since !== null) {
      frame.since = since;
      if (epoch !== void 0) frame.epoch = epoch;
    }
    this.send(frame);
  }
  leave(room, ref) {
    this.send({ type: "leave", room, ref });
  }
  post(e) {
    const frame = { type: e.kind, room: e.room, client_msg_id: e.clientMsgId, ref: e.clientMsgId };
    if (e.body !== void 0) frame.body = e.body;
    if (e.target !== void 0) frame.target = e.target;
    if (e.key !== void 0) frame.key = e.key;
    if (e.op !== void 0) frame.op = e.op;
    return this.send(frame);
  }
  markRead(room, seq, ref) {
    return this.send({ type: "read", room, seq, ref });
  }
  typing(room) {
    this.send({ type: "typing", room });
  }
};

// src/client.ts
var ROOM_PATTERN = /^[A-Za-z0-9_.:-]{1,128}$/;
var isValidRoom = (room) => ROOM_PATTERN.test(room);
var DEFAULT_MAX_BODY_BYTES = 4096;
var DRAIN_BACKOFF_MAX_MS = 2e3;
var NEXT = {
  closed: ["connecting"],
  connecting: ["open", "reconnecting", "closed"],
  open: ["reconnecting", "closed"],
  reconnecting: ["open", "closed"]
};
var Chorus = class extends Emitter {
  constructor(options = {}) {
    super();
    /** The connection state; listen to `state` for changes. */
    this.state = "closed";
    this.maxBodyBytes = DEFAULT_MAX_BODY_BYTES;
    this.rooms = /* @__PURE__ */ new Map();
    this.reads = /* @__PURE__ */ new Map();
    this.openWaiters = [];
    /** The current connection's transport; a dropped one is never called back. */
    this.current = null;
    /** A connection opening with a renewed token; it replaces `current` once the node says hello. */
    this.next = null;
    this.attempt = 0;
    /** The last connection ended with a drain: reconnect within DRAIN_BACKOFF_MAX_MS. */
    this.draining = false;
    this.authFailures = 0;
    this.dials = 0;
    this.timers = /* @__PURE__ */ new Set();
    this.tokenRequest = null;
    this.refCounter = 0;
    this.opts = options;
    const origin = globalThis.location?.origin;
    const url = options.url ?? origin;
    if (!url) throw new ChorusError("bad_request", "options.url is required outside a browser page");
    if (!options.token && !options.getToken) throw new ChorusError("bad_request", "give options.token or options.getToken");
    this.base = String(url).replace(/\/$/, "");
    this.token = options.token;
    this.user = tokenClaims(options.token)?.sub ?? null;
    this.displayName = displayNameOf(options.token) ?? this.user;
    this.WS = options.WebSocket ?? globalThis.WebSocket;
    const f = options.fetch ?? globalThis.fetch;
    this.fetch = (...args) => f(...args);
    this.backoff = { minMs: options.backoff?.minMs ?? 500, maxMs: options.backoff?.maxMs ?? 3e4 };
    this.connectTimeoutMs = options.connectTimeoutMs ?? 15e3;
    this.roomHost = {
      emit: (type, event) => this.emit(type, event),
      transport: () => this.state === "open" ? this.current : null,
      rejoin: (r) => this.startRoom(r),
      backoff: this.backoff
    };
    const wanted = options.transport ?? "auto";
    this.kind = wanted === "auto" ? this.WS ? "websocket" : fallbackKind() : wanted;
    this.ws = { worked: false, failures: 0, only: wanted === "websocket" };
    if (this.kind === "websocket" && !this.WS) throw new ChorusError("bad_request", "no WebSocket here: pass options.WebSocket");
    if (this.kind === "sse" && typeof globalThis.EventSource === "undefined") {
      throw new ChorusError("bad_request", "no EventSource here: use transport 'poll'");
    }
  }
  /** The transport in use: `websocket`, or `sse` / `poll` (reads) with REST (writes). */
  get transport() {
    return this.kind;
  }
  // ----- connection ---------------------------------------------------------------------------
  /** Connects (if not already) and resolves once open; rejects if the client closes for good first. */
  connect() {
    if (this.state === "open") return Promise.resolve();
    const opened = new Promise((resolve, reject) => this.openWaiters.push({ resolve, reject }));
    if (this.state === "closed") {
      this.attempt = 0;
      this.setState("connecting");
      void this.dial();
    }
    return opened;
  }
  /** While `reconnecting`: try now instead of waiting out the backoff (a "retry now" button). */
  reconnectNow() {
    if (this.state !== "reconnecting") return;
    this.dropConnection();
    this.attempt = 0;
    void this.dial();
  }
  /** Closes for good (not an error): unsent entries and unanswered joins are rejected with `closed`. */
  close() {
    if (this.state === "closed") return;
    this.shutdown(new ChorusError("closed", "the client was closed"), "closed by the app");
  }
  async dial() {
    const dial = ++this.dials;
    let token;
    try {
      token = this.token ?? await this.renewToken();
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
  newTransport() {
    let t;
    const live = () => this.current === t;
    const abandon = () => {
      if (this.next !== t) return false;
      this.next = null;
      t.close();
      return true;
    };
    const host = {
      frame: (f) => live() && this.onFrame(f),
      opened: (hello) => {
        if (this.next === t) this.moveTo(t);
        if (!live()) return;
        if (hello) this.user = hello.user ?? this.user;
        const limit = hello?.max_body_bytes;
        if (limit) this.maxBodyBytes = limit;
        this.opened();
        for (const r of this.rooms.values()) this.startRoom(r);
      },
      lost: (reason, floorMs, draining) => {
        if (abandon() || !live() || this.state === "closed") return;
        if (draining) this.draining = true;
        this.retry(floorMs ?? 0, reason);
      },
      authFailed: () => abandon() || live() && this.authFailed(),
      fatal: (err) => abandon() || live() && this.fatal(err),
      fallBack: () => {
        if (abandon() || !live()) return;
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
      later: (ms, fn) => this.later(ms, fn)
    };
    t = this.kind === "websocket" ? new WebSocketTransport(host, this.base, this.WS, this.connectTimeoutMs, this.ws) : new HttpTransport(this.kind, host, this.base, this.fetch);
    return t;
  }
  retry(floorMs, reason) {
    if (this.state === "closed") return;
    this.dropConnection();
    this.setState("reconnecting", reason);
    const dial = this.dials;
    const max = this.draining ? Math.min(this.backoff.maxMs, DRAIN_BACKOFF_MAX_MS) : this.backoff.maxMs;
    const delay = backoffDelay(this.attempt++, Math.min(this.backoff.minMs, max), max, floorMs);
    this.later(delay, () => {
      if (dial === this.dials) void this.dial();
    });
  }
  /** Forget everything tied to the current connection; rooms stay, to be joined again. */
  dropConnection() {
    this.dials++;
    this.next?.close();
    this.next = null;
    this.current?.close();
    this.current = null;
    for (const r of this.rooms.values()) r.unjoin();
    for (const w of this.reads.values()) w.reject(new ChorusError("unavailable", "connection lost before the reply"));
    this.reads.clear();
  }
  shutdown(err, reason) {
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
  fatal(err) {
    this.emit("error", err);
    this.shutdown(err, err.message);
  }
  /**
   * Token renewal without a visible reconnect: the connection with the new token said hello, so it
   * becomes the current one (the state stays `open`). Every room is joined on it with `since`, so
   * nothing is missed or repeated across the switch; unacked entries go again with their
   * client_msg_id, and reads waiting for an answer are asked again on it.
   */
  moveTo(t) {
    const reads = [...this.reads];
    this.reads.clear();
    this.next = null;
    this.dropConnection();
    this.current = t;
    for (const [ref, w] of reads) {
      if (t.markRead(w.room, w.seq, ref)) this.reads.set(ref, w);
      else w.reject(new ChorusError("unavailable", "connection changed before the reply"));
    }
  }
  opened() {
    this.attempt = 0;
    this.draining = false;
    this.authFailures = 0;
    this.setState("open");
    for (const w of this.openWaiters) w.resolve();
    this.openWaiters = [];
    this.scheduleRefresh();
  }
  setState(state, reason) {
    const previous = this.state;
    if (previous === state) return;
    if (!NEXT[previous].includes(state)) throw new Error(`chorus: bug: state ${previous} -> ${state}`);
    this.state = state;
    this.emit("state", reason ? { state, previous, reason } : { state, previous });
  }
  later(ms, fn) {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
    return t;
  }
  // ----- tokens -------------------------------------------------------------------------------
  /** Asks the app for a fresh token (one request at a time). */
  renewToken() {
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
        this.emit("token", exp ? { expiresAt: exp * 1e3 } : {});
        return token;
      })().finally(() => {
        this.tokenRequest = null;
      });
    }
    return this.tokenRequest;
  }
  /** The server refused the token (4001, 401): renew it and reconnect, or close if we cannot. */
  authFailed() {
    if (!this.opts.getToken) {
      const exp = tokenClaims(this.token)?.exp;
      const expired = typeof exp === "number" && exp * 1e3 <= Date.now();
      this.fatal(
        expired ? new ChorusError("token_expired", "the server refused the token: it has expired") : new ChorusError("token_invalid", "the server refused the token, which has not expired: it is malformed, signed with another secret, or meant for another server")
      );
      return;
    }
    this.token = void 0;
    if (this.authFailures++ > 0) return this.retry(0, "the token was refused again");
    this.dropConnection();
    this.setState("reconnecting", "renewing the token");
    void this.dial();
  }
  /** Renew a little before expiry, then move to the new token (resuming every room). */
  scheduleRefresh() {
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    const exp = tokenClaims(this.token)?.exp;
    if (!this.opts.getToken || !exp) return;
    this.refreshTimer = setTimeout(async () => {
      try {
        await this.renewToken();
      } catch (e) {
        this.emit("error", new ChorusError("token_expired", `getToken failed: ${errorText(e)}`));
        return;
      }
      if (this.state !== "open" || !this.current || !this.token) return;
      if (this.current.renewal === "reconnect") {
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
  onFrame(f) {
    if (isEntry(f)) {
      this.rooms.get(f.room)?.entry(f.seq, toEntry(f));
      return;
    }
    switch (f.type) {
      case "joined": {
        const r = this.rooms.get(f.room);
        if (!r || f.ref && f.ref !== r.joinRef) return;
        r.joinedWith(toJoined(f));
        return;
      }
      case "ack": {
        const id = f.ref ?? f.client_msg_id;
        if (id) this.rooms.get(f.room)?.acked(id, toAck(f, id));
        return;
      }
      case "read": {
        const state = toReadState(f);
        const w = f.ref ? this.reads.get(f.ref) : void 0;
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
        const unknown = f;
        if (typeof unknown.room === "string" && typeof unknown.seq === "number") {
          this.rooms.get(unknown.room)?.entry(unknown.seq, null);
        }
      }
    }
  }
  /** An `error` answering our request `ref`: a join, an entry, or a read. */
  onRefused(ref, err) {
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
  onRead(s) {
    this.rooms.get(s.room)?.read(s);
    this.emit("read", s);
  }
  // ----- REST ---------------------------------------------------------------------------------
  /** Whether the server answers and takes the token: `ok`, `auth` (401) or `down`. */
  async probe() {
    try {
      const res = await this.fetch(`${this.base}/api/me/rooms?limit=1`, { headers: this.authHeaders() });
      if (res.status === 401) return "auth";
      return res.status < 500 ? "ok" : "down";
    } catch {
      return "down";
    }
  }
  authHeaders() {
    return this.token ? { authorization: `Bearer ${this.token}` } : {};
  }
  /** An authenticated REST call; a refused token is renewed once. */
  async api(path, init = {}, room) {
    for (let attempt = 0; ; attempt++) {
      if (!this.token) await this.renewToken();
      const headers = { ...this.authHeaders(), ...init.body ? { "content-type": "application/json" } : {} };
      const res = await this.fetch(`${this.base}${path}`, { ...init, headers });
      if (res.status === 401 && attempt === 0 && this.opts.getToken) {
        await this.renewToken();
        continue;
      }
      if (!res.ok) throw await responseError(res, room);
      return await res.json();
    }
  }
  // ----- rooms ------------------------------------------------------------------------------------
  /**
   * Joins `room` (now, or as soon as the connection opens) and resolves with its state. With `since`,
   * every entry after that seq is delivered first. Rejects with a ChorusError naming the room.
   * After any reconnect the client joins again by itself, resuming after the last entry it delivered.
   */
  join(room, options = {}) {
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
  leave(room) {
    const r = this.rooms.get(room);
    if (!r) return;
    if (r.joined) this.current?.leave(room, this.ref("leave"));
    this.dropRoom(r, new ChorusError("not_joined", "left the room", { room }));
  }
  /** The rooms joined, with their cursor and unread count. */
  joinedRooms() {
    return [...this.rooms.values()].map((r) => ({ room: r.name, lastSeq: r.lastSeq, unread: r.unread }));
  }
  /** Unread messages in `room`: exact at each `joined`/`read` from the server, counted from live entries between. */
  unread(room) {
    return this.rooms.get(room)?.unread ?? 0;
  }
  presence(room) {
    return [...this.rooms.get(room)?.presence.values() ?? []];
  }
  startRoom(r) {
    if (!this.current) return;
    r.joinRef = this.ref("join");
    this.current.join(r.name, r.lastSeq, r.epoch, r.joinRef);
  }
  joinFailed(r, err) {
    r.joinRef = void 0;
    if (err.retryable) {
      this.later(backoffDelay(this.attempt, this.backoff.minMs, this.backoff.maxMs), () => {
        if (this.rooms.get(r.name) === r && this.state === "open" && !r.joined) this.startRoom(r);
      });
      return;
    }
    if (!r.waiters.length) this.emit("error", err);
    this.dropRoom(r, err);
  }
  dropRoom(r, err) {
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
  send(room, body, options = {}) {
    return this.enqueue({ room, kind: "send", body }, options);
  }
  /** Replaces the body of your message `seq`. */
  edit(room, seq, body, options = {}) {
    return this.enqueue({ room, kind: "edit", target: seq, body }, options);
  }
  /** Deletes message `seq` (yours, or any as a moderator). */
  delete(room, seq, options = {}) {
    return this.enqueue({ room, kind: "delete", target: seq }, options);
  }
  /** Adds (`add`) or removes (`remove`) your reaction `key` on message `seq`. */
  react(room, seq, key, op = "add", options = {}) {
    return this.enqueue({ room, kind: "react", target: seq, key, op }, options);
  }
  /** Entries not yet acked, in the order they will be committed (all rooms, or one). */
  pending(room) {
    const rooms = room ? [this.rooms.get(room)].filter((r) => r !== void 0) : [...this.rooms.values()];
    return rooms.flatMap((r) => r.pending());
  }
  enqueue(what, options) {
    const r = this.rooms.get(what.room);
    const room = what.room;
    if (!r) return Promise.reject(new ChorusError("not_joined", "join the room before sending to it", { room }));
    if (this.state === "closed" && !this.openWaiters.length && this.dials > 0) {
      return Promise.reject(new ChorusError("closed", "the client was closed", { room }));
    }
    if (what.body !== void 0 && utf8Length(what.body) > this.maxBodyBytes) {
      const limit = this.maxBodyBytes;
      return Promise.reject(new ChorusError("body_too_large", `the body is over ${limit} bytes`, { room }));
    }
    const entry = { ...what, clientMsgId: options.clientMsgId ?? newId() };
    return new Promise((resolve, reject) => {
      const p = {
        clientMsgId: entry.clientMsgId,
        room,
        kind: entry.kind,
        body: entry.body,
        target: entry.target,
        status: "queued",
        attempts: 0,
        entry,
        resolve,
        reject
      };
      r.enqueue(p);
    });
  }
  // ----- the rest of the API ------------------------------------------------------------------------
  /** Moves your read cursor in `room` to `seq`; every one of your devices hears it. */
  async markRead(room, seq) {
    const ref = this.ref("read");
    if (this.state === "open" && this.rooms.get(room)?.joined && this.current?.markRead(room, seq, ref)) {
      return new Promise((resolve, reject) => this.reads.set(ref, { resolve, reject, room, seq }));
    }
    const r = await this.api(
      `/api/rooms/${encodeURIComponent(room)}/read`,
      { method: "PUT", body: JSON.stringify({ seq }) },
      room
    );
    const state = toReadState({ room, seq: r.read_seq, unread: r.unread, last_seq: r.last_seq });
    this.onRead(state);
    return state;
  }
  /** Tells the room you are typing (WebSocket only; ephemeral). */
  typing(room) {
    if (this.rooms.get(room)?.joined) this.current?.typing(room);
  }
  /** Messages before `before` (or the latest), ascending, in their current state. */
  async history(room, options = {}) {
    const q = new URLSearchParams({ limit: String(options.limit ?? 50) });
    if (options.before) q.set("before", String(options.before));
    const page = await this.api(`/api/rooms/${encodeURIComponent(room)}/messages?${q}`, {}, room);
    return toHistoryPage(page);
  }
  /** Your rooms, most recent first, with unread counts (the first `limit`, default 100). */
  async myRooms(options = {}) {
    const rooms = await this.api(`/api/me/rooms?limit=${options.limit ?? 100}`);
    return rooms.map(toMyRoom);
  }
  /** A page of your rooms; pass the page's `next` as `after` for the one after it. */
  async myRoomsPage(options = {}) {
    const q = new URLSearchParams({ after: options.after ?? "", limit: String(options.limit ?? 50) });
    const page = await this.api(`/api/me/rooms?${q}`);
    const out = { rooms: page.rooms.map(toMyRoom) };
    if (page.next) out.next = page.next;
    return out;
  }
  /**
   * Full-text search in the rooms this token may read (or in `room`), newest first: every word must
   * match; `"a phrase"`, `or` and `-word` work as in a web search box. Pass a page's `next` as `before`.
   */
  async search(q, options = {}) {
    const params = new URLSearchParams({ q, limit: String(options.limit ?? 20) });
    if (options.room) params.set("room", options.room);
    if (options.before) params.set("before", options.before);
    const page = await this.api(`/api/search?${params}`, {}, options.room);
    const out = { results: page.results };
    if (page.next) out.next = page.next;
    return out;
  }
  ref(kind) {
    return `${kind}-${++this.refCounter}`;
  }
};
function withRoom(err, room) {
  return err.room ? err : new ChorusError(err.code, err.message, { room, retryAfterMs: err.retryAfterMs, status: err.status });
}
function displayNameOf(token) {
  const name = tokenClaims(token)?.name;
  return typeof name === "string" && name ? name : null;
}
function fallbackKind() {
  return typeof globalThis.EventSource === "undefined" ? "poll" : "sse";
}
function errorText(e) {
  return e instanceof Error ? e.message : String(e);
}
export {
  Chorus,
  ChorusError,
  DEFAULT_MAX_BODY_BYTES,
  RETRYABLE,
  ROOM_PATTERN,
  SERVER_FRAME_FIELDS,
  isValidRoom
};
