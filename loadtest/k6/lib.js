// Shared by the k6 scenarios: where the nodes are, HS256 tokens signed with the nodes' secret,
// and the Chorus frames. Environment (loadtest/run sets all of it):
//   NODES   comma list of node base URLs, e.g. http://127.0.0.1:18181,http://127.0.0.1:18182
//   SECRET  the nodes' auth.jwt_secret
//   PREFIX  room name prefix, fresh per run
import crypto from "k6/crypto";
import encoding from "k6/encoding";

export const NODES = (__ENV.NODES || "http://127.0.0.1:8080").split(",");
// Every VU evaluates this on its own, so the fallback must not depend on time.
export const PREFIX = __ENV.PREFIX || "k6";
const SECRET = __ENV.SECRET || "";

export function int(name, fallback) {
  return __ENV[name] ? parseInt(__ENV[name], 10) : fallback;
}

export function float(name, fallback) {
  return __ENV[name] ? parseFloat(__ENV[name]) : fallback;
}

function b64url(s) {
  return encoding.b64encode(s, "rawurl");
}

/// A token for `user`, valid for an hour (PROTOCOL.md §2: HS256, sub and exp).
export function token(user) {
  const header = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const now = Math.floor(Date.now() / 1000);
  const claims = b64url(JSON.stringify({ sub: user, iat: now, exp: now + 3600 }));
  const sig = crypto.hmac("sha256", SECRET, `${header}.${claims}`, "base64rawurl");
  return `${header}.${claims}.${sig}`;
}

export function node(i) {
  return NODES[i % NODES.length];
}

export function wsUrl(base, user) {
  return `${base.replace(/^http/, "ws")}/ws?access_token=${token(user)}`;
}

export function room(i) {
  return `${PREFIX}-${i}`;
}

export function join(ws, roomName, since) {
  const frame = { type: "join", room: roomName };
  if (since !== undefined && since !== null) frame.since = since;
  ws.send(JSON.stringify(frame));
}

export function send(ws, roomName, body, clientMsgId) {
  const frame = { type: "send", room: roomName, body };
  if (clientMsgId) frame.client_msg_id = clientMsgId;
  ws.send(JSON.stringify(frame));
}

/// A value from k6's end-of-test data (0 when the metric never got a sample).
export function metric(data, name, field) {
  return data.metrics[name] ? data.metrics[name].values[field] : 0;
}

/// The handleSummary result: `summary` as JSON on stdout, with whether every threshold held.
export function printSummary(data, summary) {
  summary.thresholds_ok = Object.values(data.metrics).every(
    (x) => !x.thresholds || Object.values(x.thresholds).every((t) => t.ok),
  );
  return { stdout: JSON.stringify(summary, null, 2) + "\n" };
}
