// The scripted chat: the same script runs in Node (test/integration) and in Chromium (tests/e2e),
// so it imports nothing; the harness passes the Chorus class and the cluster's controls.
//
// Ann (on node 0) and Bob (on node 1) join two rooms; Ann posts a burst of 60 that runs into the
// rate limit; node 0 restarts and Ann posts while it is down (her entries wait, pending); both
// tokens are short-lived and are renewed mid-chat. At the end each client must have seen, in each
// room, exactly the seqs 1..N once each, and every sender's messages in the order they were sent.
//
// env: { Chorus, urls: [node0, node1], token(user) -> Promise<jwt>, stopNode(i), startNode(i),
//        run: a unique suffix, options: extra Chorus options, log?(line) }
export async function scriptedChat(env) {
  const { Chorus } = env;
  const log = env.log || (() => {});
  const rooms = [`chat-a-${env.run}`, `chat-b-${env.run}`];
  const problems = [];
  const deadline = (ms, what, check, subscribe) =>
    new Promise((resolve, reject) => {
      if (check()) return resolve();
      const timer = setTimeout(() => {
        off();
        reject(new Error(`timed out after ${ms} ms: ${what}`));
      }, ms);
      const off = subscribe(() => {
        if (!check()) return;
        clearTimeout(timer);
        off();
        resolve();
      });
    });

  const people = ["ann", "bob"].map((user, i) => {
    const chat = new Chorus({
      url: env.urls[i],
      getToken: () => env.token(user),
      backoff: { minMs: 50, maxMs: 1000 },
      ...env.options,
    });
    const p = { user, chat, seen: new Map(rooms.map((r) => [r, []])), renewals: 0, retried: 0, states: [] };
    chat.on("message", (e) => p.seen.get(e.room).push(e.message));
    chat.on("token", () => p.renewals++);
    chat.on("state", (e) => p.states.push(e.state));
    // Each pending event that shows an entry waiting out `rate_limited` (its head, retried first).
    chat.on("pending", (e) => (p.retried += e.pending.some((x) => x.retryReason === "rate_limited") ? 1 : 0));
    chat.on("error", (e) => problems.push(`${user}: error event ${e.code}: ${e.message}`));
    chat.on("reset", (e) => problems.push(`${user}: unexpected reset of ${e.room}`));
    // Resolves when something happens on this client (for waits with deadlines).
    p.subscribe = (fn) => {
      const offs = ["message", "token", "state", "pending"].map((t) => chat.on(t, fn));
      return () => offs.forEach((off) => off());
    };
    return p;
  });
  const [ann, bob] = people;
  const sent = []; // { user, room, body, ack }
  const send = (p, room, body) => {
    const entry = { user: p.user, room, body, ack: null };
    sent.push(entry);
    return p.chat.send(room, body).then((ack) => (entry.ack = ack));
  };

  try {
    await Promise.all(people.map((p) => p.chat.connect()));
    await Promise.all(people.flatMap((p) => rooms.map((r) => p.chat.join(r))));
    log("joined");

    // 1. A burst past the rate limit (burst 40), in both rooms, from both users at once.
    const burst = [];
    for (let i = 0; i < 60; i++) burst.push(send(ann, rooms[0], `ann ${rooms[0]} ${i}`));
    for (let i = 0; i < 10; i++) burst.push(send(ann, rooms[1], `ann ${rooms[1]} ${i}`));
    for (let i = 0; i < 30; i++) burst.push(send(bob, rooms[0], `bob ${rooms[0]} ${i}`));
    await Promise.all(burst);
    log("burst acked");

    // 2. Node 0 goes away: Ann's entries wait as pending, Bob's go on.
    await env.stopNode(0);
    const offline = [];
    for (let i = 60; i < 65; i++) offline.push(send(ann, rooms[0], `ann ${rooms[0]} ${i}`));
    for (let i = 30; i < 35; i++) offline.push(send(bob, rooms[0], `bob ${rooms[0]} ${i}`));
    if (ann.chat.state === "open") problems.push("ann's client says open while her node is down");
    const waiting = ann.chat.pending(rooms[0]).map((p) => p.body);
    if (waiting.length !== 5) problems.push(`ann's pending while down: ${JSON.stringify(waiting)}`);
    await env.startNode(0);
    await Promise.all(offline);
    log("restart done");

    // 3. Both tokens are renewed before they expire (short-lived tokens), and the chat goes on.
    await Promise.all(people.map((p) => deadline(20000, `${p.user}'s token renewed`, () => p.renewals >= 2, p.subscribe)));
    const after = [];
    for (const p of people) for (let i = 0; i < 5; i++) after.push(send(p, rooms[0], `${p.user} ${rooms[0]} ${100 + i}`));
    await Promise.all(after);
    log("after renewal acked");
    // Bob's node never stopped: his renewals moved connections without the app seeing a reconnect.
    if (bob.states.includes("reconnecting")) problems.push(`bob's renewals showed as reconnects: ${JSON.stringify(bob.states)}`);

    // 4. Everyone sees everything.
    const total = (room) => sent.filter((s) => s.room === room).length;
    for (const p of people) {
      for (const room of rooms) {
        await deadline(20000, `${p.user} sees ${total(room)} messages in ${room}`, () => p.seen.get(room).length >= total(room), p.subscribe);
      }
    }
  } finally {
    for (const p of people) p.chat.close();
  }

  // Checks: exactly 1..N once in each room for each client; each sender's order kept; acks match.
  for (const room of rooms) {
    const n = sent.filter((s) => s.room === room).length;
    for (const p of people) {
      const seqs = p.seen.get(room).map((m) => m.seq);
      const want = Array.from({ length: n }, (_, i) => i + 1);
      if (JSON.stringify(seqs) !== JSON.stringify(want)) problems.push(`${p.user} saw in ${room} seqs ${JSON.stringify(seqs)}; want 1..${n}`);
    }
    const log = ann.seen.get(room);
    const bodies = log.map((m) => m.body);
    if (new Set(bodies).size !== bodies.length) problems.push(`a body repeats in ${room}`);
    for (const user of ["ann", "bob"]) {
      const order = sent.filter((s) => s.room === room && s.user === user).map((s) => s.body);
      const stored = log.filter((m) => m.user === user).map((m) => m.body);
      if (JSON.stringify(order) !== JSON.stringify(stored)) {
        problems.push(`${user}'s order in ${room}: stored ${JSON.stringify(stored.slice(0, 70))}…`);
      }
    }
    for (const s of sent.filter((x) => x.room === room)) {
      const m = log.find((x) => x.seq === s.ack?.seq);
      if (!m || m.body !== s.body) problems.push(`ack of ${JSON.stringify(s.body)} names seq ${s.ack?.seq} holding ${JSON.stringify(m?.body)}`);
    }
  }
  return {
    problems,
    messages: sent.length,
    rooms: Object.fromEntries(rooms.map((r) => [r, sent.filter((s) => s.room === r).length])),
    renewals: people.map((p) => p.renewals),
    rateLimitedRetries: ann.retried + bob.retried,
    annStates: ann.states,
    transport: ann.chat.transport,
  };
}
