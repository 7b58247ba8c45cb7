// Fan-out: SOCKETS WebSockets in ROOMS rooms, spread over the nodes so every room has members on
// every node; from a common start each posts RATE messages/s for DURATION s. Every body is the
// send time (ms), so each receiver adds send -> receipt to the `delivery_ms` Trend. The summary
// compares delivered with expected = acked x members per room (every member, the sender too,
// must get every message) and counts order violations.
//   k6 run -e NODES=... -e SECRET=... -e SOCKETS=200 -e ROOMS=10 -e RATE=1 -e DURATION=20 fanout.js
import { WebSocket } from "k6/experimental/websockets";
import { setInterval, clearInterval, setTimeout } from "k6/timers";
import { Counter, Trend } from "k6/metrics";
import { int, float, node, room, wsUrl, join, send, metric, printSummary } from "./lib.js";

const SOCKETS = int("SOCKETS", 200);
const ROOMS = int("ROOMS", 10);
const RATE = float("RATE", 1);
const DURATION = int("DURATION", 20);
const JOIN_S = int("JOIN_S", 10);
const GRACE_MS = 5000;
if (SOCKETS % ROOMS !== 0) throw new Error("SOCKETS must be a multiple of ROOMS");

const delivery = new Trend("delivery_ms", true);
const sent = new Counter("sent");
const acked = new Counter("acked");
const delivered = new Counter("delivered");
const outOfOrder = new Counter("out_of_order");
const errors = new Counter("errors");

export const options = {
  summaryTrendStats: ["med", "p(90)", "p(95)", "p(99)", "max"],
  scenarios: {
    fanout: {
      executor: "per-vu-iterations",
      vus: SOCKETS,
      iterations: 1,
      maxDuration: `${JOIN_S + DURATION + 30}s`,
    },
  },
  thresholds: {
    delivery_ms: [`p(99)<${int("P99_MS", 250)}`],
    errors: ["count==0"],
    out_of_order: ["count==0"],
  },
};

// Everyone starts sending at the same instant, once all sockets had time to join.
export function setup() {
  return { startAt: Date.now() + JOIN_S * 1000 };
}

export default function (data) {
  const vu = __VU - 1;
  const roomName = room(vu % ROOMS);
  const ws = new WebSocket(wsUrl(node(Math.floor(vu / ROOMS)), `k6u${vu}`));
  const until = data.startAt + DURATION * 1000;
  let lastSeq = null;
  let done = false;
  ws.onopen = () => join(ws, roomName);
  ws.onmessage = (e) => {
    const f = JSON.parse(e.data);
    if (f.type === "joined") {
      // Spread the sockets' send times over one period.
      const offset = ((vu * 0.618034) % 1) * (1000 / RATE);
      setTimeout(() => {
        const tick = setInterval(() => {
          if (Date.now() >= until) {
            clearInterval(tick);
            setTimeout(() => {
              done = true;
              ws.close();
            }, GRACE_MS);
            return;
          }
          send(ws, roomName, `${Date.now()}`);
          sent.add(1);
        }, 1000 / RATE);
      }, Math.max(0, data.startAt - Date.now()) + offset);
    } else if (f.type === "message") {
      delivery.add(Date.now() - parseInt(f.body, 10));
      delivered.add(1);
      if (lastSeq !== null && f.seq !== lastSeq + 1) outOfOrder.add(1);
      lastSeq = f.seq;
    } else if (f.type === "ack") {
      acked.add(1);
    } else if (f.type === "error") {
      errors.add(1);
      console.warn(`error frame: ${e.data}`);
    }
  };
  ws.onclose = () => {
    if (!done) {
      errors.add(1);
      console.warn(`socket ${vu} closed early`);
    }
  };
}

export function handleSummary(data) {
  const m = (name, field) => metric(data, name, field);
  const expected = m("acked", "count") * (SOCKETS / ROOMS);
  const summary = {
    scenario: { name: "fanout", sockets: SOCKETS, rooms: ROOMS, rate_per_socket: RATE, duration_s: DURATION },
    sent: m("sent", "count"),
    acked: m("acked", "count"),
    delivered: m("delivered", "count"),
    expected,
    delivered_ratio: expected ? m("delivered", "count") / expected : 0,
    deliveries_per_s: m("delivered", "count") / DURATION,
    out_of_order: m("out_of_order", "count"),
    errors: m("errors", "count"),
    delivery_ms: {
      p50: m("delivery_ms", "med"),
      p90: m("delivery_ms", "p(90)"),
      p99: m("delivery_ms", "p(99)"),
      max: m("delivery_ms", "max"),
    },
  };
  return printSummary(data, summary);
}
