// Fakes for the client's unit tests: a WebSocket whose "server" side the test drives frame by frame,
// a fetch that answers the client's HTTP probe, unsigned JWTs, and waiting on events with deadlines.

/** A JWT the client can read (it never verifies: the server does). */
export function jwt(sub, expInSeconds = 3600) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ sub, exp: Math.floor(Date.now() / 1000) + expInSeconds })}.sig`;
}

/** Resolves when `check()` returns a truthy value after one of `emitter`'s events (or at once). */
export function until(check, what, ms = 3000) {
  return new Promise((resolve, reject) => {
    const first = check();
    if (first) return resolve(first);
    const timer = setTimeout(() => {
      clearInterval(tick);
      reject(new Error(`timed out waiting for ${what}`));
    }, ms);
    // Fakes change state synchronously inside the client's callbacks; look after each macrotask.
    const tick = setInterval(() => {
      const v = check();
      if (v) {
        clearTimeout(timer);
        clearInterval(tick);
        resolve(v);
      }
    }, 1);
  });
}

/** The next `type` event from the client that satisfies `pred`. */
export function next(chat, type, pred = () => true, ms = 3000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out waiting for a ${type} event`));
    }, ms);
    const off = chat.on(type, (e) => {
      if (!pred(e)) return;
      clearTimeout(timer);
      off();
      resolve(e);
    });
  });
}

/** A scripted server: each `new WebSocket(url)` the client makes shows up in `sockets`. */
export class FakeServer {
  constructor() {
    this.sockets = [];
    this.probeStatus = 200; // what GET /api/me/rooms answers (the client's "is it my token?" probe)
    this.probes = 0;
    const server = this;
    this.WebSocket = class extends FakeSocket {
      constructor(url) {
        super(url);
        server.sockets.push(this);
      }
    };
    this.fetch = async (url) => {
      if (String(url).includes("/api/me/rooms")) {
        server.probes++;
        if (server.probeStatus === 0) throw new TypeError("fetch failed");
        return new Response("[]", { status: server.probeStatus });
      }
      throw new Error(`unexpected fetch ${url}`);
    };
  }

  get last() {
    return this.sockets[this.sockets.length - 1];
  }

  /** The n-th socket (0-based), once the client has made it. */
  socket(n) {
    return until(() => this.sockets[n], `socket #${n}`);
  }

  /** Opens socket n and says hello, as a node does. */
  async accept(n, user = "ann") {
    const ws = await this.socket(n);
    ws.readyState = 1;
    ws.onopen?.({});
    ws.push({ type: "hello", protocol: 2, node: "n1", session: `s${n}`, user, heartbeat_ms: 10000 });
    return ws;
  }
}

class FakeSocket {
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    this.closedByClient = null;
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
  }
  get token() {
    return new URL(this.url).searchParams.get("access_token");
  }
  send(data) {
    if (this.readyState !== 1) throw new Error("send on a socket that is not open");
    this.sent.push(JSON.parse(data));
  }
  close(code = 1000) {
    this.closedByClient = code;
    this.readyState = 3;
  }
  /** A frame from the server. */
  push(frame) {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }
  /** The server closes the connection (or it breaks: 1006). */
  drop(code) {
    this.readyState = 3;
    this.onclose?.({ code });
  }
  /** The n-th (0-based) frame the client sent that matches, once it has been sent. */
  frame(pred, n = 0, what = "a frame") {
    return until(() => this.sent.filter(pred)[n], `${what} on ${this.url}`);
  }
  sentOf(type) {
    return this.sent.filter((f) => f.type === type);
  }
}
