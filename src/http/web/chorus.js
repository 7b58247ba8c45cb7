// Chorus browser client (ES module, no dependencies). Served by every node at /chorus.js.
//
//   import { Chorus } from "/chorus.js";
//   const chat = new Chorus({ token });
//   chat.addEventListener("message", (e) => render(e.detail.message));
//   chat.join("lobby");
//   await chat.send("lobby", "hello");
//
// Delivery: messages arrive per room in seq order, each once. After any reconnect (to any node)
// every room is re-joined with `since` = the last seq seen; if the server says the gap cannot be
// filled (`recovered:false`) a "reset" event tells the page to reload history. Sends carry a
// client_msg_id and are retried with the same id until acked, so a retry never duplicates.
// Transports: WebSocket, else Server-Sent Events + REST (same cursor).
// Events: "state" {state}, "message" {room, message}, "entry" {room, entry} (an edit, delete or
// react log entry, protocol 2), "joined" {room, read_seq, unread, last_seq}, "read" {room, seq,
// unread, last_seq} (this user's read cursor moved, on any device), "presence" {room, users},
// "typing" {room, user}, "reset" {room, last_seq}, "error" {code, message, room?}.
// Every entry type advances the room's cursor, so a resume never repeats or skips one.

const GIVE_UP = new Set([1000, 1002, 1007, 1008, 1009, 4001, 4003]);

export class Chorus extends EventTarget {
  constructor({ token, url = location.origin, transport = "auto" } = {}) {
    super();
    this.token = token;
    this.user = tokenUser(token);
    this.base = url.replace(/\/$/, "");
    this.transport = transport === "sse" || typeof WebSocket === "undefined" ? "sse" : "ws";
    this.state = "connecting";
    this.rooms = new Map(); // room -> { lastSeq, epoch, presence: Map, source? }
    this.pending = new Map(); // client_msg_id -> { room, frame, rest, resolve, reject }
    this.reads = new Map(); // ref -> { resolve, reject } of markRead over WebSocket
    this.attempt = 0;
    this.wsFailures = 0;
    this.closed = false;
    // Connect after the caller's synchronous setup, so listeners added right after `new Chorus()`
    // see every event (in SSE mode "open" would otherwise fire inside the constructor).
    queueMicrotask(() => this.connect());
  }

  // ----- public API -------------------------------------------------------------------------

  /** Subscribe; with `since`, every message after that seq is delivered first (gap-free). */
  join(room, { since = null } = {}) {
    if (!this.rooms.has(room)) {
      this.rooms.set(room, { lastSeq: since, epoch: null, presence: new Map() });
      this.subscribe(room);
    }
  }

  leave(room) {
    const r = this.rooms.get(room);
    if (!r) return;
    this.rooms.delete(room);
    if (r.source) r.source.close();
    this.wsSend({ type: "leave", room });
  }

  /** Resolves with the ack ({seq, id, ts, duplicate}) once the message is committed. */
  send(room, body) {
    const path = `/messages`;
    return this.request(room, { type: "send", room, body }, { method: "POST", path, body: { body } });
  }

  /** Replaces the body of your message `seq`; resolves with the ack of the edit entry. */
  edit(room, seq, body) {
    const path = `/messages/${seq}`;
    return this.request(room, { type: "edit", room, target: seq, body }, { method: "PATCH", path, body: { body } });
  }

  /** Deletes message `seq` (yours, or any as a moderator); resolves with the ack. */
  delete(room, seq) {
    return this.request(room, { type: "delete", room, target: seq }, { method: "DELETE", path: `/messages/${seq}` });
  }

  /** Adds (op "add") or removes ("remove") your reaction `key` on message `seq`. */
  react(room, seq, key, op = "add") {
    const path = `/messages/${seq}/reactions/${encodeURIComponent(key)}`;
    return this.request(room, { type: "react", room, target: seq, key, op }, { method: op === "add" ? "PUT" : "DELETE", path });
  }

  /** Moves your read cursor to `seq`; resolves with {seq, unread, last_seq}; every device hears it. */
  async markRead(room, seq) {
    if (this.transport === "ws" && this.ws && this.ws.readyState === WebSocket.OPEN) {
      const ref = "read-" + newId();
      return new Promise((resolve, reject) => {
        this.reads.set(ref, { resolve, reject });
        this.wsSend({ type: "read", room, seq, ref });
      });
    }
    const res = await fetch(`${this.base}/api/rooms/${encodeURIComponent(room)}/read`, {
      method: "PUT",
      headers: { authorization: `Bearer ${this.token}`, "content-type": "application/json" },
      body: JSON.stringify({ seq }),
    });
    if (!res.ok) throw await apiError(res);
    const r = await res.json();
    return { seq: r.read_seq, unread: r.unread, last_seq: r.last_seq };
  }

  /** Your rooms, most recent first: [{room, last_seq, read_seq, unread, last_message?}]. */
  async myRooms() {
    const res = await fetch(`${this.base}/api/me/rooms`, { headers: { authorization: `Bearer ${this.token}` } });
    if (!res.ok) throw await apiError(res);
    return res.json();
  }

  /** A log entry, retried with the same client_msg_id until the server answers (exactly once). */
  request(room, frame, rest) {
    const id = newId();
    return new Promise((resolve, reject) => {
      this.pending.set(id, { room, frame, rest, resolve, reject });
      this.flushSend(id);
    });
  }

  typing(room) {
    this.wsSend({ type: "typing", room });
  }

  /** Older messages, ascending (REST; works on any transport). */
  async history(room, { before, limit = 50 } = {}) {
    const q = new URLSearchParams({ limit: String(limit) });
    if (before) q.set("before", String(before));
    const res = await fetch(`${this.base}/api/rooms/${encodeURIComponent(room)}/messages?${q}`, {
      headers: { authorization: `Bearer ${this.token}` },
    });
    if (!res.ok) throw await apiError(res);
    return res.json();
  }

  close() {
    this.closed = true;
    if (this.ws) this.ws.close(1000);
    for (const r of this.rooms.values()) if (r.source) r.source.close();
    this.setState("closed");
  }

  // ----- connection -------------------------------------------------------------------------

  connect() {
    if (this.closed) return;
    this.setState(this.attempt ? "reconnecting" : "connecting");
    if (this.transport === "sse") {
      for (const room of this.rooms.keys()) this.subscribe(room);
      this.setState("open");
      for (const id of this.pending.keys()) this.flushSend(id);
      return;
    }
    const wsUrl = this.base.replace(/^http/, "ws") + "/ws?access_token=" + encodeURIComponent(this.token);
    let opened = false;
    const ws = new WebSocket(wsUrl);
    this.ws = ws;
    ws.onopen = () => {
      opened = true;
      this.wsWorked = true;
      this.attempt = 0;
      this.wsFailures = 0;
    };
    ws.onmessage = (ev) => this.onFrame(JSON.parse(ev.data));
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      // WebSocket blocked (a proxy, a network) rather than a node restarting: fall back for good.
      if (!opened && !this.wsWorked && ++this.wsFailures >= 3) this.transport = "sse";
      if (GIVE_UP.has(ev.code) && opened) {
        this.emit("error", { code: ev.code === 4001 ? "token_expired" : "closed", message: `closed (${ev.code})` });
        this.setState("closed");
        return;
      }
      this.retry(ev.code === 4029 ? 10000 : 0);
    };
  }

  retry(minDelay) {
    if (this.closed) return;
    this.setState("reconnecting");
    const cap = Math.min(30000, 500 * 2 ** this.attempt++);
    const delay = Math.max(minDelay, Math.random() * cap); // full jitter
    setTimeout(() => this.connect(), delay);
  }

  subscribe(room) {
    const r = this.rooms.get(room);
    if (!r) return;
    if (this.transport === "ws") {
      const join = { type: "join", room };
      if (r.lastSeq !== null) Object.assign(join, { since: r.lastSeq, epoch: r.epoch });
      this.wsSend(join);
      return;
    }
    if (r.source) r.source.close();
    const q = new URLSearchParams({ access_token: this.token });
    if (r.lastSeq !== null) q.set("after", String(r.lastSeq));
    const src = new EventSource(`${this.base}/api/rooms/${encodeURIComponent(room)}/events?${q}`);
    r.source = src;
    src.addEventListener("joined", (ev) => this.onJoined({ room, ...JSON.parse(ev.data) }));
    for (const type of ["message", "edit", "delete", "react"]) {
      src.addEventListener(type, (ev) => this.onMessage(JSON.parse(ev.data)));
    }
    src.addEventListener("reset", (ev) => this.onFrame(JSON.parse(ev.data)));
    src.onerror = () => {
      // EventSource reconnects by itself with Last-Event-ID; nothing is lost.
      this.setState(src.readyState === EventSource.OPEN ? "open" : "reconnecting");
    };
  }

  wsSend(frame) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(frame));
  }

  async flushSend(id) {
    const p = this.pending.get(id);
    if (!p) return;
    if (this.transport === "ws") {
      // Sent now if connected; otherwise resent after the room is re-joined.
      this.wsSend({ ...p.frame, client_msg_id: id, ref: id });
      return;
    }
    try {
      const init = {
        method: p.rest.method,
        headers: { authorization: `Bearer ${this.token}`, "content-type": "application/json", "idempotency-key": id },
      };
      if (p.rest.body) init.body = JSON.stringify(p.rest.body);
      const res = await fetch(`${this.base}/api/rooms/${encodeURIComponent(p.room)}${p.rest.path}`, init);
      if (res.ok) {
        const m = await res.json();
        this.pending.delete(id);
        p.resolve({ seq: m.seq, id: m.id, ts: m.ts, duplicate: m.duplicate ?? res.status === 200 });
      } else if (res.status >= 500 || res.status === 429) {
        setTimeout(() => this.flushSend(id), 1000 + Math.random() * 1000);
      } else {
        this.pending.delete(id);
        p.reject(await apiError(res));
      }
    } catch {
      setTimeout(() => this.flushSend(id), 1000 + Math.random() * 1000);
    }
  }

  // ----- frames -----------------------------------------------------------------------------

  onFrame(f) {
    switch (f.type) {
      case "hello":
        this.setState("open");
        for (const room of this.rooms.keys()) this.subscribe(room);
        break;
      case "joined":
        this.onJoined(f);
        for (const [id, p] of this.pending) if (p.room === f.room) this.flushSend(id);
        break;
      case "message":
      case "edit":
      case "delete":
      case "react":
        this.onMessage(f);
        break;
      case "read": {
        const waiting = f.ref && this.reads.get(f.ref);
        if (waiting) {
          this.reads.delete(f.ref);
          waiting.resolve({ seq: f.seq, unread: f.unread, last_seq: f.last_seq });
        }
        if (f.user === this.user) this.emit("read", { room: f.room, seq: f.seq, unread: f.unread, last_seq: f.last_seq });
        break;
      }
      case "ack": {
        const p = this.pending.get(f.client_msg_id);
        if (p) {
          this.pending.delete(f.client_msg_id);
          p.resolve({ seq: f.seq, id: f.id, ts: f.ts, duplicate: f.duplicate });
        }
        break;
      }
      case "presence": {
        const r = this.rooms.get(f.room);
        if (!r) break;
        r.presence = new Map(f.users.map((u) => [u.user, u]));
        this.emitPresence(f.room);
        break;
      }
      case "presence_diff": {
        const r = this.rooms.get(f.room);
        if (!r) break;
        for (const u of f.joins) r.presence.set(u.user, u);
        for (const u of f.leaves) r.presence.delete(u.user);
        this.emitPresence(f.room);
        break;
      }
      case "typing":
        this.emit("typing", { room: f.room, user: f.user });
        break;
      case "reset": {
        // The room's history was reset (a restore): what we hold is stale; live goes on after last_seq.
        const r = this.rooms.get(f.room);
        if (!r) break;
        r.lastSeq = f.last_seq;
        r.epoch = f.epoch;
        this.emit("reset", { room: f.room, last_seq: f.last_seq });
        break;
      }
      case "error": {
        const read = f.ref && this.reads.get(f.ref);
        if (read) {
          this.reads.delete(f.ref);
          read.reject(Object.assign(new Error(f.message), { code: f.code }));
          break;
        }
        const p = f.ref && this.pending.get(f.ref);
        if (p && (f.code === "unavailable" || f.code === "internal")) {
          setTimeout(() => this.flushSend(f.ref), 1000 + Math.random() * 1000); // same id: no duplicate
        } else if (p && f.code === "rate_limited") {
          setTimeout(() => this.flushSend(f.ref), f.retry_after_ms || 1000);
        } else if (p) {
          this.pending.delete(f.ref);
          p.reject(Object.assign(new Error(f.message), { code: f.code }));
        } else {
          this.emit("error", { code: f.code, message: f.message, room: f.room });
        }
        break;
      }
    }
  }

  onJoined(f) {
    const r = this.rooms.get(f.room);
    if (!r) return;
    const resume = r.lastSeq !== null;
    if (resume && !f.recovered) this.emit("reset", { room: f.room, last_seq: f.last_seq });
    if (!resume || !f.recovered) r.lastSeq = f.last_seq;
    r.epoch = f.epoch;
    this.emit("joined", { room: f.room, read_seq: f.read_seq, unread: f.unread, last_seq: f.last_seq });
  }

  onMessage(m) {
    const r = this.rooms.get(m.room);
    if (!r) return;
    if (r.lastSeq !== null && m.seq <= r.lastSeq) return; // already seen
    r.lastSeq = m.seq;
    if (m.type === "message") this.emit("message", { room: m.room, message: m });
    else this.emit("entry", { room: m.room, entry: m });
  }

  emitPresence(room) {
    this.emit("presence", { room, users: [...this.rooms.get(room).presence.values()] });
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.emit("state", { state });
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

function newId() {
  return crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2);
}

/** The token's `sub` (the user id), read without verifying: the server does that. */
function tokenUser(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part)).sub;
  } catch {
    return null;
  }
}

async function apiError(res) {
  let body = {};
  try {
    body = await res.json();
  } catch {}
  const e = body.error || { code: "http_" + res.status, message: res.statusText };
  return Object.assign(new Error(e.message), { code: e.code, status: res.status });
}
