// The REST send path at a fixed arrival rate: POST /api/rooms/{room}/messages (PROTOCOL.md §4)
// round-robin over the nodes and ROOMS rooms, RATE requests/s for DURATION s, each with its own
// client_msg_id. Counts 2xx, 4xx and 5xx answers and dropped iterations (the generator could not
// keep up); http_req_duration is the latency of a persisted, acknowledged post.
//   k6 run -e NODES=... -e SECRET=... -e RATE=500 -e ROOMS=100 -e DURATION=20 rest_post.js
import http from "k6/http";
import { Counter } from "k6/metrics";
import { int, node, room, token, metric, printSummary } from "./lib.js";

const RATE = int("RATE", 500);
const ROOMS = int("ROOMS", 100);
const DURATION = int("DURATION", 20);

const ok2xx = new Counter("status_2xx");
const client4xx = new Counter("status_4xx");
const server5xx = new Counter("status_5xx");

export const options = {
  summaryTrendStats: ["med", "p(90)", "p(95)", "p(99)", "max"],
  discardResponseBodies: true,
  scenarios: {
    rest: {
      executor: "constant-arrival-rate",
      rate: RATE,
      timeUnit: "1s",
      duration: `${DURATION}s`,
      preAllocatedVUs: Math.max(20, Math.ceil(RATE / 20)),
      maxVUs: Math.max(100, RATE),
    },
  },
  thresholds: {
    status_5xx: ["count==0"],
    status_4xx: ["count==0"],
    http_req_duration: [`p(99)<${int("P99_MS", 250)}`],
  },
};

export function setup() {
  // One token per VU would be realistic but costs the generator; one user per run is enough
  // here (rate limits are raised by loadtest/run).
  return { auth: `Bearer ${token("k6rest")}` };
}

export default function (data) {
  const res = http.post(
    `${node(__ITER)}/api/rooms/${room(__ITER % ROOMS)}/messages`,
    JSON.stringify({ body: `${Date.now()}`, client_msg_id: `k6-${__VU}-${__ITER}` }),
    { headers: { Authorization: data.auth, "Content-Type": "application/json" } },
  );
  if (res.status >= 200 && res.status < 300) ok2xx.add(1);
  else if (res.status >= 400 && res.status < 500) client4xx.add(1);
  else server5xx.add(1);
}

export function handleSummary(data) {
  const m = (name, field) => metric(data, name, field);
  const summary = {
    scenario: { name: "rest_post", rate: RATE, rooms: ROOMS, duration_s: DURATION },
    status_2xx: m("status_2xx", "count"),
    status_4xx: m("status_4xx", "count"),
    status_5xx: m("status_5xx", "count"),
    dropped_iterations: m("dropped_iterations", "count"),
    persisted_per_s: m("status_2xx", "count") / DURATION,
    latency_ms: {
      p50: m("http_req_duration", "med"),
      p90: m("http_req_duration", "p(90)"),
      p99: m("http_req_duration", "p(99)"),
      max: m("http_req_duration", "max"),
    },
  };
  return printSummary(data, summary);
}
