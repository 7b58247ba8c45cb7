// Unit tests of the client against a scripted fake server: the connection state machine, joins,
// ordered exactly-once sends across rate limits and reconnects, token renewal, the HTTP probe that
// tells a refused token from an outage, pending entries while offline, unread counts.
import { afterEach, test as nodeTest } from "node:test";
import assert from "node:assert/strict";
import { Chorus, ChorusError } from "../../dist/chorus.js";
import { FakeServer, jwt, next, until } from "./fakes.mjs";

const FAST = { minMs: 1, maxMs: 5 };
// Every client a test makes is closed after it, passed or failed (an open client keeps its heartbeat timer).
const made = [];
afterEach(() => made.splice(0).forEach((c) => c.close()));
const test = (name, fn) => nodeTest(name, { timeout: 10000 }, fn);
function client(server, extra = {}) {
  const chat = new Chorus({ url: "http://chorus.test", token: jwt("ann"), WebSocket: server.WebSocket, fetch: server.fetch, backoff: FAST, ...extra });
  made.push(chat);
  return chat;
}
const joinedFrame = (f, last_seq, extra = {}) => ({ type: "joined", ref: f.ref, room: f.room, epoch: "e1", last_seq, recovered: true, ...extra });
const sends = (ws) => ws.sentOf("send");
/** Connects `chat` through socket `n` and answers its join of lobby with `last_seq` (and `extra`). */
async function inLobby(server, chat, lastSeq, extra = {}, n = 0) {
  chat.connect();
  const ws = await server.accept(n);
  const joined = chat.join("lobby");
  ws.push(joinedFrame(await ws.frame((f) => f.type === "join"), lastSeq, extra));
  await joined;
  return ws;
}

test("the connection states: connecting, open, reconnecting, open, closed; close() is not an error", async () => {
  const server = new FakeServer();
  const chat = client(server);
  const states = [];
  const errors = [];
  chat.on("state", (e) => states.push(e.state));
  chat.on("error", (e) => errors.push(e));
  assert.equal(chat.state, "closed");
  const connected = chat.connect();
  assert.equal(chat.state, "connecting");
  await server.accept(0);
  await connected;
  assert.equal(chat.state, "open");
  server.sockets[0].drop(1012); // the node drains
  assert.equal(chat.state, "reconnecting");
  await server.accept(1);
  await until(() => chat.state === "open", "open again");
  chat.close();
  assert.deepEqual(states, ["connecting", "open", "reconnecting", "open", "closed"]);
  assert.equal(server.sockets[1].closedByClient, 1000);
  assert.deepEqual(errors, [], "close() emits no error");
  assert.equal(server.sockets.length, 2, "no reconnect after close()");
});

test("join resolves with the room's state; a refused join rejects with an error naming the room", async () => {
  const server = new FakeServer();
  const chat = client(server);
  const lobby = chat.join("lobby"); // before connect(): goes out once open
  chat.connect();
  const ws = await server.accept(0);
  const j = await ws.frame((f) => f.type === "join" && f.room === "lobby");
  assert.equal(j.since, undefined);
  ws.push(joinedFrame(j, 7, { read_seq: 5, unread: 2 }));
  assert.deepEqual(await lobby, { room: "lobby", epoch: "e1", lastSeq: 7, recovered: true, readSeq: 5, unread: 2 });
  assert.equal(chat.unread("lobby"), 2);

  const ops = chat.join("ops");
  const jo = await ws.frame((f) => f.type === "join" && f.room === "ops");
  ws.push({ type: "error", ref: jo.ref, code: "forbidden", message: "not allowed in this room" });
  const err = await ops.catch((e) => e);
  assert.ok(err instanceof ChorusError);
  assert.equal(err.code, "forbidden");
  assert.equal(err.room, "ops");
  await assert.rejects(chat.send("ops", "hi"), (e) => e.code === "not_joined" && e.room === "ops");
  await assert.rejects(chat.join("no spaces"), (e) => e.code === "invalid_room");
  chat.close();
});

test("sends to a room go one at a time in the user's order, also across rate_limited, each with one id", async () => {
  const server = new FakeServer();
  const chat = client(server);
  const ws = await inLobby(server, chat, 0);
  const acks = ["a", "b", "c"].map((b) => chat.send("lobby", b));
  const first = await ws.frame((f) => f.type === "send");
  assert.equal(sends(ws).length, 1, "only the head is on the wire");
  assert.equal(first.body, "a");
  assert.equal(first.ref, first.client_msg_id);
  ws.push({ type: "error", ref: first.ref, code: "rate_limited", message: "slow down", retry_after_ms: 30 });
  assert.equal(chat.pending("lobby")[0].status, "retrying");
  assert.equal(chat.pending("lobby")[0].retryReason, "rate_limited");
  const again = await ws.frame((f) => f.type === "send", 1, "the retry");
  assert.deepEqual(sends(ws).map((f) => f.body), ["a", "a"], "b waited behind the retried a");
  assert.equal(again.client_msg_id, first.client_msg_id, "a retry keeps the id: exactly once");
  let seq = 0;
  for (let i = 1; i <= 3; i++) {
    const f = sends(ws)[i];
    ws.push({ type: "ack", ref: f.ref, room: "lobby", seq: ++seq, id: `m${seq}`, ts: "t", client_msg_id: f.client_msg_id, duplicate: false });
    if (i < 3) await ws.frame((f) => f.type === "send", i + 1);
  }
  const got = await Promise.all(acks);
  assert.deepEqual(got.map((a) => a.seq), [1, 2, 3]);
  assert.deepEqual(sends(ws).map((f) => f.body), ["a", "a", "b", "c"]);
  assert.deepEqual(chat.pending(), []);

  // An entry that already held is acked with the original entry's ids: matched by our ref.
  const react = chat.react("lobby", 1, "👍");
  const fr = await ws.frame((f) => f.type === "react");
  ws.push({ type: "ack", ref: fr.ref, room: "lobby", seq: 1, id: "m1", ts: "t", client_msg_id: "someone-elses", duplicate: true });
  const dup = await react;
  assert.deepEqual([dup.seq, dup.duplicate, dup.clientMsgId], [1, true, fr.client_msg_id]);

  // A send the server refuses for good fails alone; the one behind it still goes.
  const bad = chat.send("lobby", "x".repeat(10));
  const ok = chat.send("lobby", "fine");
  const fb = await ws.frame((f) => f.type === "send", 4);
  ws.push({ type: "error", ref: fb.ref, code: "body_too_large", message: "too large" });
  await assert.rejects(bad, (e) => e.code === "body_too_large" && e.room === "lobby");
  const fo = await ws.frame((f) => f.type === "send", 5);
  assert.equal(fo.body, "fine");
  ws.push({ type: "ack", ref: fo.ref, room: "lobby", seq: 4, id: "m4", ts: "t", client_msg_id: fo.client_msg_id, duplicate: false });
  assert.equal((await ok).seq, 4);
  chat.close();
});

test("after a reconnect every room resumes after its last entry; the unacked head goes again with its id", async () => {
  const server = new FakeServer();
  const chat = client(server);
  const seen = [];
  chat.on("message", (e) => seen.push(e.message.seq));
  chat.connect();
  let ws = await server.accept(0);
  chat.join("lobby");
  const j = await ws.frame((f) => f.type === "join");
  ws.push(joinedFrame(j, 10));
  for (const seq of [11, 12]) ws.push({ type: "message", room: "lobby", seq, id: `m${seq}`, user: "bob", body: "hi", ts: "t" });
  const sent = chat.send("lobby", "mine");
  const first = await ws.frame((f) => f.type === "send");
  ws.drop(1006); // lost before the ack
  assert.equal(chat.pending("lobby")[0].status, "queued");
  ws = await server.accept(1);
  const rejoin = await ws.frame((f) => f.type === "join");
  assert.equal(rejoin.since, 12);
  assert.equal(rejoin.epoch, "e1");
  assert.equal(sends(ws).length, 0, "nothing is sent before the room is joined again");
  ws.push(joinedFrame(rejoin, 13));
  const resent = await ws.frame((f) => f.type === "send");
  assert.equal(resent.client_msg_id, first.client_msg_id);
  // The backfill overlaps what was seen: nothing repeats.
  for (const seq of [12, 13]) ws.push({ type: "message", room: "lobby", seq, id: `m${seq}`, user: "ann", body: "x", ts: "t" });
  ws.push({ type: "ack", ref: resent.ref, room: "lobby", seq: 13, id: "m13", ts: "t", client_msg_id: resent.client_msg_id, duplicate: true });
  assert.equal((await sent).duplicate, true);
  assert.deepEqual(seen, [11, 12, 13]);
  chat.close();
});

test("a refused token (4001) is renewed through getToken and the rooms resume", async () => {
  const server = new FakeServer();
  let n = 0;
  const chat = client(server, { token: jwt("ann"), getToken: async () => jwt("ann") + `#${++n}` });
  chat.connect();
  const ws = await server.accept(0);
  chat.join("lobby");
  const j = await ws.frame((f) => f.type === "join");
  ws.push(joinedFrame(j, 3));
  ws.drop(4001);
  const ws2 = await server.accept(1);
  assert.equal(n, 1);
  assert.ok(ws2.token.endsWith("#1"), "the new socket carries the new token");
  assert.equal((await ws2.frame((f) => f.type === "join")).since, 3);
  chat.close();

  // Without getToken a refused token closes the client, with an error saying why: expired, or not
  // expired and refused all the same (malformed, another secret).
  for (const [token, code] of [[jwt("ann", -60), "token_expired"], [jwt("ann"), "token_invalid"], ["not-a-jwt", "token_invalid"]]) {
    const server2 = new FakeServer();
    const plain = client(server2, { token });
    const failed = next(plain, "error");
    const opened = plain.connect();
    (await server2.accept(0)).drop(4001);
    assert.equal((await failed).code, code, token);
    await opened;
    assert.equal(plain.state, "closed");
    assert.equal(server2.sockets.length, 1, "no reconnect with a refused token");
  }
});

test("a token is renewed before it expires, and the connection moves to it without a visible reconnect", async () => {
  const server = new FakeServer();
  let n = 0;
  const chat = client(server, { token: jwt("ann", 2), getToken: () => jwt("ann", 3600) + `#${++n}` });
  const states = [];
  chat.on("state", (e) => states.push(e.state));
  const renewed = next(chat, "token");
  chat.connect();
  const ws = await server.accept(0);
  chat.join("lobby");
  ws.push(joinedFrame(await ws.frame((f) => f.type === "join"), 3));
  const seen = [];
  chat.on("message", ({ message }) => seen.push(message.seq));
  ws.push({ type: "message", room: "lobby", seq: 4, id: "m4", ts: "t", user: "bob", body: "hi" });
  const sent = chat.send("lobby", "in flight");
  const post = await ws.frame((f) => f.type === "send");
  await renewed; // 2 s before expiry minus the 1 s margin
  // The new socket opens beside the old one; until it says hello the old one carries everything.
  const ws2 = await server.socket(1);
  assert.ok(ws2.token.endsWith("#1"));
  assert.equal(ws.closedByClient, null, "the old socket stays until the new one is open");
  ws.push({ type: "message", room: "lobby", seq: 5, id: "m5", ts: "t", user: "bob", body: "still here" });
  await server.accept(1);
  assert.equal(ws.closedByClient, 1000);
  // The room resumes after the last entry it delivered, and the unacked send goes again, same id.
  const join = await ws2.frame((f) => f.type === "join");
  assert.equal(join.since, 5);
  ws2.push(joinedFrame(join, 6));
  const again = await ws2.frame((f) => f.type === "send");
  assert.equal(again.client_msg_id, post.client_msg_id);
  ws2.push({ type: "message", room: "lobby", seq: 6, id: "m6", ts: "t", user: "bob", body: "after" });
  ws2.push({ type: "ack", ref: again.ref, room: "lobby", seq: 7, id: "m7", ts: "t", client_msg_id: again.client_msg_id });
  assert.equal((await sent).seq, 7);
  assert.deepEqual(seen, [4, 5, 6]);
  assert.deepEqual(states, ["connecting", "open"], "no reconnecting state for a renewal");
  chat.close();

  // A renewed connection that fails to open is dropped; the old one carries on.
  const server2 = new FakeServer();
  const chat2 = client(server2, { token: jwt("ann", 2), getToken: () => jwt("ann", 3600) });
  chat2.connect();
  const old = await server2.accept(0);
  (await server2.socket(1)).drop(1006);
  assert.equal(chat2.state, "open");
  assert.equal(old.closedByClient, null);
  chat2.close();
});

test("the display name comes from the token's name claim, else the user id", () => {
  const server = new FakeServer();
  const named = `${jwt("ann").split(".")[0]}.${Buffer.from(JSON.stringify({ sub: "u-17", name: "Ann", exp: 9e9 })).toString("base64url")}.sig`;
  assert.equal(client(server, { token: named }).displayName, "Ann");
  assert.equal(client(server, { token: jwt("ann") }).displayName, "ann");
});

test("a WebSocket that does not open is told apart: a refused token is renewed, an outage backs off", async () => {
  const server = new FakeServer();
  let n = 0;
  const chat = client(server, { token: undefined, getToken: () => jwt("ann") + `#${++n}` });
  chat.connect();
  // A node restarted with a new secret refuses the upgrade (401), which a WebSocket cannot see.
  server.probeStatus = 401;
  (await server.socket(0)).drop(1006);
  await until(() => server.probes === 1, "the probe");
  server.probeStatus = 200;
  await server.accept(1);
  assert.equal(n, 2, "getToken at connect and after the refusal");
  // An outage: the probe cannot reach the node either, so the client keeps trying (backoff).
  server.probeStatus = 0;
  server.sockets[1].drop(1006);
  (await server.socket(2)).drop(1006);
  assert.equal(chat.state, "reconnecting");
  server.probeStatus = 200;
  await server.accept(3);
  assert.equal(n, 2, "an outage does not ask for a token");
  assert.equal(chat.transport, "websocket");
  chat.close();
});

test("entries sent while offline are listed as pending in order and go once connected", async () => {
  const server = new FakeServer();
  const chat = client(server);
  chat.join("lobby");
  const updates = [];
  chat.on("pending", (e) => updates.push(e.pending.length));
  const a = chat.send("lobby", "one", { clientMsgId: "c1" });
  const b = chat.send("lobby", "two", { clientMsgId: "c2" });
  assert.deepEqual(chat.pending("lobby").map((p) => [p.clientMsgId, p.body, p.status]), [["c1", "one", "queued"], ["c2", "two", "queued"]]);
  chat.connect();
  const ws = await server.accept(0);
  const j = await ws.frame((f) => f.type === "join");
  ws.push(joinedFrame(j, 0));
  for (const [i, id] of ["c1", "c2"].entries()) {
    await ws.frame((f) => f.type === "send" && f.client_msg_id === id);
    ws.push({ type: "ack", ref: id, room: "lobby", seq: i + 1, id: `m${i}`, ts: "t", client_msg_id: id, duplicate: false });
  }
  assert.deepEqual([(await a).seq, (await b).seq], [1, 2]);
  assert.equal(updates.at(-1), 0);
  chat.close();
});

test("unread counts follow joined, others' messages, deletes and read frames", async () => {
  const server = new FakeServer();
  const chat = client(server);
  const ws = await inLobby(server, chat, 4, { read_seq: 2, unread: 1 });
  const msg = (seq, user) => ws.push({ type: "message", room: "lobby", seq, id: `m${seq}`, user, body: "b", ts: "t" });
  msg(5, "bob");
  msg(6, "ann"); // one's own messages are never unread
  msg(7, "bob");
  assert.equal(chat.unread("lobby"), 3);
  ws.push({ type: "delete", room: "lobby", seq: 8, id: "d", target: 7, user: "bob", ts: "t" });
  assert.equal(chat.unread("lobby"), 2);
  ws.push({ type: "read", room: "lobby", user: "ann", seq: 8, unread: 0, last_seq: 8 });
  assert.equal(chat.unread("lobby"), 0);
  msg(9, "bob");
  assert.equal(chat.unread("lobby"), 1);
  chat.close();
});

test("a forbidden close (4003) closes the client with an error and fails what was pending", async () => {
  const server = new FakeServer();
  const chat = client(server);
  const ws = await inLobby(server, chat, 0);
  const sent = chat.send("lobby", "hi");
  await ws.frame((f) => f.type === "send");
  const err = next(chat, "error");
  ws.drop(4003);
  assert.equal((await err).code, "forbidden");
  await assert.rejects(sent, (e) => e.code === "forbidden");
  assert.equal(chat.state, "closed");
  assert.equal(server.sockets.length, 1);
});

test("without a WebSocket (Node 18-21) the client picks long-polling, not EventSource", () => {
  const saved = globalThis.WebSocket;
  delete globalThis.WebSocket;
  try {
    const chat = new Chorus({ url: "http://chorus.test", token: jwt("ann") });
    assert.equal(chat.transport, typeof EventSource === "undefined" ? "poll" : "sse");
  } finally {
    if (saved) globalThis.WebSocket = saved;
  }
  assert.throws(() => new Chorus({ url: "http://chorus.test" }), (e) => e.code === "bad_request");
});

test("a body over the server's limit fails alone before it goes out, and a 1009 close reconnects", async () => {
  const server = new FakeServer();
  const chat = client(server);
  const ws = await inLobby(server, chat, 0);
  const big = chat.send("lobby", "é".repeat(2049)); // 4098 bytes of UTF-8
  const fine = chat.send("lobby", "fine");
  await assert.rejects(big, (e) => e.code === "body_too_large" && e.room === "lobby");
  const f = await ws.frame((f) => f.type === "send");
  assert.equal(f.body, "fine", "only the entry that fits went out");
  ws.push({ type: "ack", ref: f.ref, room: "lobby", seq: 1, id: "m1", ts: "t", client_msg_id: f.client_msg_id, duplicate: false });
  await fine;
  ws.drop(1009);
  assert.equal(chat.state, "reconnecting", "1009 is not fatal: the rest of the queue lives on");
  await server.accept(1);
  await until(() => chat.state === "open", "open again");
  chat.close();
});

test("the public API is camelCase and an entry type the client does not know still moves the cursor", async () => {
  const server = new FakeServer();
  const chat = client(server);
  const ws = await inLobby(server, chat, 0);
  const got = next(chat, "message");
  ws.push({ type: "message", room: "lobby", seq: 1, id: "m1", user: "bob", body: "hi", ts: "t", client_msg_id: "c1", edited_ts: "t2" });
  const { message } = await got;
  assert.deepEqual(message, { type: "message", room: "lobby", seq: 1, id: "m1", user: "bob", body: "hi", ts: "t", clientMsgId: "c1", editedTs: "t2" });
  ws.push({ type: "member", room: "lobby", seq: 2, id: "e2", user: "bob", target: "cy", op: "add", ts: "t" }); // v3, unknown here
  await until(() => chat.joinedRooms()[0].lastSeq === 2, "the cursor past the unknown entry");
  ws.drop(1012);
  const ws2 = await server.accept(1);
  assert.equal((await ws2.frame((f) => f.type === "join")).since, 2, "resumed after it");
  chat.close();
});

test("after a drain (1012) the client comes back within 2 s however long its backoff grew; reconnectNow() skips the wait", async () => {
  const server = new FakeServer();
  // A backoff so long that only the drain cap or reconnectNow() can bring the client back in time.
  const chat = client(server, { backoff: { minMs: 60_000, maxMs: 120_000 } });
  chat.connect();
  await server.accept(0);
  await until(() => chat.state === "open", "open");
  server.sockets[0].drop(1012);
  assert.equal(chat.state, "reconnecting");
  await server.accept(1); // well inside the test's 10 s, never a minute
  await until(() => chat.state === "open", "open after the drain");
  // Another outage (1011) waits out the backoff, unless the user asks to retry now.
  server.sockets[1].drop(1011);
  assert.equal(chat.state, "reconnecting");
  chat.reconnectNow();
  await server.accept(2);
  await until(() => chat.state === "open", "open after retry now");
  assert.equal(server.sockets.length, 3, "one attempt each, nothing half-open left behind");
});
