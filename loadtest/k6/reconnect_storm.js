// Reconnect storm: while CLIENTS clients in ROOMS rooms are away, MISSED messages are posted to
// each room (setup, over REST); then all of them reconnect at the same instant, spread over the
// nodes, and join with `since` = the seq they last saw. Each must get exactly the missed messages:
// `recovered:true`, then seqs since+1 .. since+MISSED in order, no duplicates, within TIMEOUT_S.
//   k6 run -e NODES=... -e SECRET=... -e CLIENTS=500 -e ROOMS=50 -e MISSED=50 reconnect_storm.js
import http from "k6/http";
import { WebSocket } from "k6/experimental/websockets";
import { setTimeout } from "k6/timers";
import { Counter, Trend } from "k6/metrics";
import { int, node, room, token, wsUrl, join, metric, printSummary } from "./lib.js";

const CLIENTS = int("CLIENTS", 500);
const ROOMS = int("ROOMS", 50);
const MISSED = int("MISSED", 50);
const TIMEOUT_S = int("TIMEOUT_S", 60);

const complete = new Trend("time_to_complete_ms", true);
const exact = new Counter("clients_exact");
const incomplete = new Counter("clients_incomplete");
const lost = new Counter("messages_lost");
const outOfOrder = new Counter("out_of_order");

export const options = {
  summaryTrendStats: ["med", "p(90)", "p(99)", "max"],
  setupTimeout: "120s",
  scenarios: {
    storm: { executor: "per-vu-iterations", vus: CLIENTS, iterations: 1, maxDuration: `${TIMEOUT_S + 30}s` },
  },
  thresholds: {
    clients_incomplete: ["count==0"],
    messages_lost: ["count==0"],
    out_of_order: ["count==0"],
    time_to_complete_ms: [`max<${int("WITHIN_MS", 10000)}`],
  },
};

// Where each room stood when the clients left, then what they miss.
export function setup() {
  const auth = { headers: { Authorization: `Bearer ${token("k6writer")}`, "Content-Type": "application/json" } };
  const since = [];
  for (let r = 0; r < ROOMS; r++) {
    const res = http.get(`${node(r)}/api/rooms/${room(r)}/messages?after=0&limit=1`, auth);
    since.push(res.status === 200 ? res.json().last_seq : 0);
  }
  for (let n = 0; n < MISSED; n++) {
    const posts = [];
    for (let r = 0; r < ROOMS; r++) {
      posts.push(["POST", `${node(r + n)}/api/rooms/${room(r)}/messages`, JSON.stringify({ body: `missed ${n}` }), auth]);
    }
    for (const res of http.batch(posts)) {
      if (res.status !== 201) throw new Error(`posting the missed messages: ${res.status} ${res.body}`);
    }
  }
  return { since };
}

export default function (data) {
  const vu = __VU - 1;
  const r = vu % ROOMS;
  const since = data.since[r];
  const began = Date.now();
  const ws = new WebSocket(wsUrl(node(vu), `k6storm${vu}`));
  let got = 0;
  let prev = since;
  let finished = false;
  const finish = (ok) => {
    if (finished) return;
    finished = true;
    if (ok) complete.add(Date.now() - began);
    else {
      incomplete.add(1);
      lost.add(MISSED - got);
    }
    ws.close();
  };
  ws.onopen = () => join(ws, room(r), since);
  ws.onmessage = (e) => {
    const f = JSON.parse(e.data);
    if (f.type === "joined" && f.recovered !== true) {
      console.warn(`client ${vu}: recovered=${f.recovered}`);
      finish(false);
    } else if (f.type === "message") {
      if (f.seq !== prev + 1) outOfOrder.add(1);
      prev = f.seq;
      got += 1;
      if (got === MISSED) {
        exact.add(1);
        finish(true);
      }
    }
  };
  ws.onclose = () => finish(got === MISSED);
  setTimeout(() => finish(false), TIMEOUT_S * 1000);
}

export function handleSummary(data) {
  const m = (name, field) => metric(data, name, field);
  const summary = {
    scenario: { name: "reconnect_storm", clients: CLIENTS, rooms: ROOMS, missed_per_client: MISSED },
    clients_exact: m("clients_exact", "count"),
    clients_incomplete: m("clients_incomplete", "count"),
    messages_lost: m("messages_lost", "count"),
    out_of_order: m("out_of_order", "count"),
    time_to_complete_ms: {
      p50: m("time_to_complete_ms", "med"),
      p99: m("time_to_complete_ms", "p(99)"),
      max: m("time_to_complete_ms", "max"),
    },
  };
  return printSummary(data, summary);
}
