// The SDK against a real 2-node cluster (Postgres, Redis, the real binary), in Node: the scripted
// chat over Node's own WebSocket and over long-polling (what Node without WebSocket gets), through
// a node restart and token renewals; and a refused join naming its room.
// Node gets its WebSocket from the `ws` package (a dev dependency), as the README shows for Node < 22,
// or with SDK_WEBSOCKET=platform from Node itself.
// Run: npm run test:integration (needs target/debug/chorus: cargo build --bin chorus). The file runs
// under plain `node` (not `node --test`), so an interrupted run reaches the cluster's signal handler
// and drops its database.
import { after, before, test as nodeTest } from "node:test";
import assert from "node:assert/strict";
import WsPackage from "ws";
import { Chorus } from "../../dist/chorus.js";
import { Cluster, token } from "../cluster.mjs";
import { scriptedChat } from "../scenario.mjs";

// Node's own WebSocket (SDK_WEBSOCKET=platform, on Node >= 22), or the `ws` package's.
const WebSocket = process.env.SDK_WEBSOCKET === "platform" ? globalThis.WebSocket : WsPackage;
if (!WebSocket) throw new Error("SDK_WEBSOCKET=platform needs a Node with a global WebSocket (>= 22)");
// A hung await fails the test with a message instead of stalling the run.
const test = (name, fn) => nodeTest(name, { timeout: 90_000 }, fn);
let cluster;
before(async () => {
  cluster = await Cluster.start({ n: 2 });
});
after(async () => {
  await cluster?.stop();
});

function env(run, options) {
  return {
    Chorus,
    urls: cluster.urls,
    // Tokens live 6 s: the scenario waits for each client to renew its token mid-chat.
    token: async (user) => token(user, { ttlS: 6 }),
    stopNode: (i) => cluster.stopNode(i),
    startNode: (i) => cluster.startNode(i),
    run,
    options,
    log: (line) => process.env.SDK_TEST_VERBOSE && console.log(`[${run}] ${line}`),
  };
}

test("the scripted chat over WebSocket through a node restart: nothing lost, nothing repeated, order kept", async () => {
  // By default the test passes the `ws` package's constructor, as an app on Node 18-21 would (Node
  // 20's experimental WebSocket was seen to hang every request to a restarted node); CI also runs
  // it on Node 22 with the platform's WebSocket.
  const result = await scriptedChat(env(`ws${Date.now() % 100000}`, { WebSocket }));
  assert.deepEqual(result.problems, []);
  assert.equal(result.transport, "websocket");
  assert.equal(result.messages, 120);
  assert.ok(result.rateLimitedRetries > 0, "the burst ran into the rate limit, so order across rate_limited was exercised");
  assert.ok(result.annStates.includes("reconnecting"), JSON.stringify(result.annStates));
  console.log(`websocket: ${JSON.stringify(result)}`);
});

test("the scripted chat over long-polling + REST (Node without WebSocket): the same guarantees", async () => {
  const result = await scriptedChat(env(`poll${Date.now() % 100000}`, { transport: "poll" }));
  assert.deepEqual(result.problems, []);
  assert.equal(result.transport, "poll");
  assert.ok(result.rateLimitedRetries > 0, "REST 429s were retried in order");
  console.log(`poll: ${JSON.stringify(result)}`);
});

/** Resolves once `check()` holds, at once or after one of the client's `type` events; fails after 10 s. */
function eventually(chat, type, check, what) {
  return new Promise((resolve, reject) => {
    if (check()) return resolve();
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), 10000);
    const off = chat.on(type, () => {
      if (!check()) return;
      clearTimeout(timer);
      off();
      resolve();
    });
  });
}
const presenceShows = (chat, room, user) =>
  eventually(chat, "presence", () => chat.presence(room).some((u) => u.user === user), `${user} in ${room}'s presence`);

test("a join the token does not allow rejects with forbidden and the room's name; presence (and typing over WebSocket), on every transport", async () => {
  // Someone already in the room, on the other node.
  const watcher = new Chorus({ url: cluster.url(0), token: token("watcher"), WebSocket });
  await watcher.connect();
  await watcher.join("public-1");
  for (const transport of ["websocket", "poll"]) {
    const chat = new Chorus({ url: cluster.url(1), token: token("eve", { rooms: ["public-*"] }), transport, WebSocket });
    await chat.connect();
    const ok = await chat.join("public-1");
    assert.equal(ok.room, "public-1");
    await presenceShows(chat, "public-1", "watcher");
    if (transport === "websocket") {
      // Typing is ephemeral and WebSocket-only: the watcher on the other node hears it.
      const heard = [];
      const off = watcher.on("typing", (t) => heard.push(t));
      chat.typing("public-1");
      await eventually(watcher, "typing", () => heard.some((t) => t.user === "eve" && t.room === "public-1"), "eve typing");
      off();
    }
    const err = await chat.join("private-1").catch((e) => e);
    assert.equal(err.code, "forbidden", `${transport}: ${err}`);
    assert.equal(err.room, "private-1");
    const ack = await chat.send("public-1", "still here");
    assert.equal(ack.seq, 1 + (transport === "poll" ? 1 : 0));
    chat.close();
    assert.equal(chat.state, "closed");
  }
  watcher.close();
});

test("the room log through the SDK on every transport: edit, react, delete, read cursors, unread, folded history", async () => {
  for (const transport of ["websocket", "poll"]) {
    const room = `log-${transport}-${Date.now() % 100000}`;
    const ann = new Chorus({ url: cluster.url(0), token: token("ann"), transport, WebSocket });
    const bob = new Chorus({ url: cluster.url(1), token: token("bob"), transport, WebSocket });
    const entries = [];
    bob.on("entry", (e) => entries.push(e.entry));
    await Promise.all([ann.connect(), bob.connect()]);
    const joins = await Promise.all([ann.join(room), bob.join(room)]);
    // One rule for every transport: a first join (no `since`) has nothing to recover.
    assert.deepEqual(joins.map((j) => j.recovered), [false, false], `${transport}: ${JSON.stringify(joins)}`);
    const first = await ann.send(room, "frist");
    const second = await ann.send(room, "second");
    assert.equal((await ann.edit(room, first.seq, "first")).duplicate, false);
    assert.equal((await bob.react(room, first.seq, "👍")).duplicate, false);
    assert.equal((await bob.react(room, first.seq, "👍")).duplicate, true, "a reaction that holds is acked as a duplicate");
    await ann.delete(room, second.seq);
    await assert.rejects(bob.edit(room, first.seq, "not mine"), (e) => e.code === "forbidden" && e.room === room);
    await eventually(bob, "entry", () => entries.length >= 3, `${transport}: bob's 3 entries (got ${entries.length})`);
    assert.deepEqual(entries.map((e) => [e.type, e.target]), [["edit", first.seq], ["react", first.seq], ["delete", second.seq]]);
    assert.equal(bob.unread(room), 1, `${transport}: bob has ann's one remaining message unread`);
    const read = await bob.markRead(room, 5);
    assert.equal(read.unread, 0);
    assert.equal(bob.unread(room), 0);
    const page = await bob.history(room);
    const shown = page.messages.map((m) => [m.seq, m.body, !!m.deleted, m.reactions?.[0]?.count ?? 0]);
    assert.deepEqual(shown, [[first.seq, "first", false, 1], [second.seq, "", true, 0]]);
    const mine = await bob.myRooms();
    assert.equal(mine.find((r) => r.room === room)?.unread, 0);
    ann.close();
    bob.close();
  }
});

test("search through the SDK: the token's rooms, newest first, escaped highlights, pages by next", async () => {
  const room = `find-${Date.now() % 100000}`;
  const ann = new Chorus({ url: cluster.url(0), token: token("ann"), WebSocket });
  await ann.connect();
  await ann.join(room);
  const word = `zeta${Date.now() % 100000}`;
  const first = await ann.send(room, `${word} ships <b>today</b>`);
  const second = await ann.send(room, `${word} again`);
  await ann.send(room, "nothing to see");
  const all = await ann.search(word);
  assert.deepEqual(all.results.map((h) => [h.room, h.seq]), [[room, second.seq], [room, first.seq]]);
  assert.equal(all.results[1].highlight, `<mark>${word}</mark> ships &lt;b&gt;today&lt;/b&gt;`);
  assert.equal(all.next, undefined);
  const page1 = await ann.search(word, { room, limit: 1 });
  const page2 = await ann.search(word, { room, limit: 1, before: page1.next });
  assert.deepEqual([...page1.results, ...page2.results].map((h) => h.seq), [second.seq, first.seq]);
  await assert.rejects(ann.search(""), (e) => e.code === "bad_request" && /`q` is required/.test(e.message));
  ann.close();
});
