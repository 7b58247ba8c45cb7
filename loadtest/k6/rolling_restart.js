// Zero loss across a rolling restart. loadtest/run (scenario k6-rolling) SIGTERMs each node in
// turn and starts it again while this runs:
// - READERS WebSockets in ROOMS rooms. On any close (1012 when their node drains) they reconnect
//   to the next node and join with `since` = the last seq they saw. Every seq must be the previous
//   one + 1, and at the end each reader must have reached the room's head.
// - Writers post over REST at RATE/s with a client_msg_id. A post that fails (connection refused,
//   503 while draining) is retried with the same id on the next node; the id makes it land once.
//   `posts_given_up` counts posts that never got a 2xx in RETRIES tries. At the end the rooms'
//   heads must add up to the acked posts (`stored_equals_acked`): each stored exactly once.
//   k6 run -e NODES=... -e SECRET=... -e READERS=60 -e ROOMS=6 -e RATE=50 -e DURATION=40 rolling_restart.js
import http from "k6/http";
import { WebSocket } from "k6/experimental/websockets";
import { setTimeout } from "k6/timers";
import { Counter } from "k6/metrics";
import { int, node, room, token, wsUrl, join, metric, printSummary } from "./lib.js";

const READERS = int("READERS", 60);
const ROOMS = int("ROOMS", 6);
const RATE = int("RATE", 50);
const DURATION = int("DURATION", 40);
const RETRIES = 20;

const posted = new Counter("posts_acked");
const givenUp = new Counter("posts_given_up");
const retried = new Counter("posts_retried");
const reconnects = new Counter("reconnects");
const outOfOrder = new Counter("out_of_order");
const behind = new Counter("messages_missing_at_end");
const closeCodes = new Counter("closes");
const stored = new Counter("messages_stored");

export const options = {
  scenarios: {
    readers: {
      executor: "per-vu-iterations",
      vus: READERS,
      iterations: 1,
      maxDuration: `${DURATION + 60}s`,
      exec: "reader",
    },
    writers: {
      executor: "constant-arrival-rate",
      rate: RATE,
      timeUnit: "1s",
      duration: `${DURATION}s`,
      preAllocatedVUs: 20,
      maxVUs: 200,
      exec: "writer",
    },
  },
  thresholds: {
    posts_given_up: ["count==0"],
    out_of_order: ["count==0"],
    messages_missing_at_end: ["count==0"],
  },
};

const auth = () => ({
  headers: { Authorization: `Bearer ${token("k6rolling")}`, "Content-Type": "application/json" },
});

export function writer() {
  const id = `roll-${__VU}-${__ITER}`;
  const body = JSON.stringify({ body: `${Date.now()}`, client_msg_id: id });
  const r = __ITER % ROOMS;
  for (let attempt = 0; attempt < RETRIES; attempt++) {
    const res = http.post(`${node(__ITER + attempt)}/api/rooms/${room(r)}/messages`, body, {
      ...auth(),
      timeout: "5s",
    });
    if (res.status === 200 || res.status === 201) {
      posted.add(1);
      return;
    }
    retried.add(1);
  }
  givenUp.add(1);
}

export function reader() {
  const vu = __VU - 1;
  const r = vu % ROOMS;
  const endAt = Date.now() + (DURATION + 5) * 1000;
  let last = null;
  let attempt = 0;
  let current = null;
  let stopping = false;
  const connect = () => {
    const ws = new WebSocket(wsUrl(node(vu + attempt), `k6reader${vu}`));
    current = ws;
    ws.onopen = () => join(ws, room(r), last);
    ws.onmessage = (e) => {
      const f = JSON.parse(e.data);
      if (f.type === "joined" && last === null) last = f.last_seq;
      else if (f.type === "message") {
        if (f.seq !== last + 1) outOfOrder.add(1);
        last = f.seq;
      }
    };
    ws.onclose = (e) => {
      closeCodes.add(1, { code: `${e.code}` });
      if (stopping || Date.now() >= endAt) return;
      attempt += 1;
      reconnects.add(1);
      setTimeout(connect, 100 + Math.random() * 400);
    };
    ws.onerror = () => {};
  };
  connect();
  // At the end: how far behind the room's head is this reader? (Anything it still holds is lost.)
  setTimeout(() => {
    const res = http.get(`${node(vu + attempt)}/api/rooms/${room(r)}/messages?after=0&limit=1`, auth());
    const head = res.status === 200 ? res.json().last_seq : null;
    if (head === null) console.warn(`reader ${vu}: head unknown (${res.status})`);
    else if (last === null || last < head) behind.add(head - (last || 0));
    stopping = true;
    current.close();
  }, (DURATION + 5) * 1000);
}

// Every acked post stored exactly once: the rooms' heads add up to the acked posts.
export function teardown() {
  for (let r = 0; r < ROOMS; r++) {
    const res = http.get(`${node(r)}/api/rooms/${room(r)}/messages?after=0&limit=1`, auth());
    if (res.status === 200) stored.add(res.json().last_seq);
  }
}

export function handleSummary(data) {
  const m = (name, field) => metric(data, name, field);
  const summary = {
    scenario: { name: "rolling_restart", readers: READERS, rooms: ROOMS, rate: RATE, duration_s: DURATION },
    posts_acked: m("posts_acked", "count"),
    posts_retried: m("posts_retried", "count"),
    posts_given_up: m("posts_given_up", "count"),
    messages_stored: m("messages_stored", "count"),
    stored_equals_acked: m("messages_stored", "count") === m("posts_acked", "count"),
    reader_reconnects: m("reconnects", "count"),
    out_of_order: m("out_of_order", "count"),
    messages_missing_at_end: m("messages_missing_at_end", "count"),
  };
  return printSummary(data, summary);
}
