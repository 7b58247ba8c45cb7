// Browser end-to-end test of the demo page and chorus.js, in headless Debian Chromium:
//  1. two pages as two users chat both ways: Ann over WebSocket, Bob over the SSE + REST fallback;
//  2. a body of `<img src=x onerror=alert(1)>` shows as text and runs nothing;
//  3. the node is restarted (SIGTERM, same port, same Postgres); a message sent while it is down is
//     retried by the client and lands once; others post while the pages reconnect; both pages
//     recover every message: each ends with exactly seqs 1..N, in order, once;
//  4. a reaction, an edit and a delete reach the other page as log entries; a page marks what it
//     shows as read (GET /api/me/rooms says unread 0).
// Usage: node chat.mjs (env: CHORUS_BIN, CHORUS_DATABASE_URL, E2E_PORT). Exits non-zero on failure.
import { spawn, execFileSync } from "node:child_process";
import { chromium } from "playwright-core";

const BIN = process.env.CHORUS_BIN || "target/debug/chorus";
const DB = process.env.CHORUS_DATABASE_URL;
const PORT = process.env.E2E_PORT || "18765";
const BASE = `http://127.0.0.1:${PORT}`;
const SECRET = "e2e-secret-0123456789abcdef";
const env = {
  PATH: process.env.PATH, NO_COLOR: "1",
  CHORUS__DATABASE__URL: DB, CHORUS__AUTH__JWT_SECRET: SECRET,
  CHORUS__SHUTDOWN__DRAIN_MS: "300", CHORUS__LOG__LEVEL: "warn",
};
async function within(p, ms, what) {
  let timer;
  const late = new Promise((_, rej) => { timer = setTimeout(() => rej(new Error(`timed out: ${what}`)), ms); });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

function startNode() {
  const child = spawn(BIN, ["serve", "--bind", `127.0.0.1:${PORT}`], { env, stdio: ["ignore", "inherit", "inherit"] });
  let exited = null;
  child.on("exit", (code) => (exited = code));
  const ready = (async () => {
    for (;;) {
      if (exited !== null) throw new Error(`chorus exited early (${exited})`);
      try {
        if ((await fetch(`${BASE}/readyz`)).ok) return;
      } catch {}
      await new Promise((r) => setTimeout(r, 50)); // polling a readiness endpoint, not a sleep-as-sync
    }
  })();
  return { child, ready: within(ready, 15000, "node start") };
}

async function stopNode(node) {
  const exited = new Promise((resolve) => node.child.on("exit", (code) => resolve(code)));
  node.child.kill("SIGTERM");
  const code = await within(exited, 15000, "node exit");
  if (code !== 0) throw new Error(`chorus exited with ${code} after SIGTERM`);
}

const token = (user) => execFileSync(BIN, ["token", "--user", user, "--name", user], { env }).toString().trim();

async function post(user, body) {
  const res = await fetch(`${BASE}/api/rooms/lobby/messages`, {
    method: "POST",
    headers: { authorization: `Bearer ${token(user)}`, "content-type": "application/json" },
    body: JSON.stringify({ body }),
  });
  if (res.status !== 201) throw new Error(`post failed: ${res.status}`);
}

const seqs = (page) => page.$$eval("#log .msg", (rows) => rows.map((r) => Number(r.dataset.seq)));
async function waitForSeqs(page, n, who) {
  await within(page.waitForFunction((n) => document.querySelectorAll("#log .msg").length >= n, n, { timeout: 0 }), 20000, `${who} sees ${n} messages`);
  const got = await seqs(page);
  const want = Array.from({ length: n }, (_, i) => i + 1);
  if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(`${who} saw ${JSON.stringify(got)}, want 1..${n}`);
}

let node = startNode();
await node.ready;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
const problems = [];
async function open(user, query) {
  const page = await browser.newPage();
  page.on("pageerror", (e) => problems.push(`${user}: ${e}`));
  page.on("dialog", (d) => { problems.push(`${user}: a dialog opened: ${d.message()}`); d.dismiss(); });
  await page.goto(`${BASE}/${query}`);
  await page.fill("#token", token(user));
  await page.click("#enter");
  await page.waitForFunction(() => document.getElementById("state")?.textContent === "open", null, { timeout: 15000 });
  return page;
}

let ok = false;
try {
  const ann = await open("ann", "");
  const bob = await open("bob", "?transport=sse");

  await ann.fill("#body", "hello bob");
  await ann.click("#send"); // the button
  await waitForSeqs(bob, 1, "bob");
  await bob.fill("#body", "<img src=x onerror=alert(1)>");
  await bob.press("#body", "Enter"); // and Enter
  await waitForSeqs(ann, 2, "ann");
  const shown = await ann.textContent("#log .msg[data-seq='2'] .body");
  if (shown !== "<img src=x onerror=alert(1)>") throw new Error(`body rendered as ${JSON.stringify(shown)}`);
  if ((await ann.locator("#log img").count()) !== 0) throw new Error("a message body became an <img>");

  // Restart the node. Ann sends while it is down (the client keeps the message and retries it
  // with the same client_msg_id); others post as soon as it is back, while the pages reconnect.
  await stopNode(node);
  await ann.fill("#body", "sent while the node was down");
  await ann.press("#body", "Enter");
  node = startNode();
  await node.ready;
  for (let i = 1; i <= 3; i++) await post("carol", `while you were away ${i}`);
  await waitForSeqs(ann, 6, "ann after restart");
  await waitForSeqs(bob, 6, "bob after restart");
  const bodies = await bob.$$eval("#log .msg .body", (b) => b.map((x) => x.textContent));
  if (bodies.filter((b) => b === "sent while the node was down").length !== 1) {
    throw new Error(`the message sent while down arrived ${JSON.stringify(bodies)}`);
  }
  // Ann's WebSocket worked before the restart, so she must still be on WebSocket after it.
  if (!(await ann.evaluate(() => window.chorus.transport === "ws"))) throw new Error("ann fell back to SSE");
  // And both still send after the restart.
  await ann.fill("#body", "back");
  await ann.press("#body", "Enter");
  await bob.fill("#body", "me too");
  await bob.click("#send");
  await waitForSeqs(ann, 8, "ann");
  await waitForSeqs(bob, 8, "bob");

  // The room log (protocol 2): a reaction by button, an edit and a delete by Ann reach Bob's page
  // (SSE) as entries folded into their messages; Ann's page marks what it shows as read.
  await ann.click("#log .msg[data-seq='8'] .acts button"); // 👍 on Bob's "me too"
  await ann.evaluate(() => window.chorus.edit("lobby", 7, "back again"));
  await ann.click("#log .msg[data-seq='1'] .acts button:text('delete')");
  const shows = (seq, sel, text) => within(bob.waitForFunction(([seq, sel, text]) =>
    document.querySelector(`#log .msg[data-seq='${seq}'] ${sel}`)?.textContent === text, [seq, sel, text], { timeout: 0 }),
    20000, `bob sees ${sel} of ${seq} as ${text}`);
  await shows(8, ".reacts button", "👍 1");
  await shows(7, ".body", "back again");
  await shows(7, ".edited", "(edited)");
  await shows(1, ".body", "message deleted");
  await within(ann.waitForFunction(async () => {
    const rooms = await window.chorus.myRooms();
    return rooms[0]?.room === "lobby" && rooms[0].unread === 0 && rooms[0].read_seq === rooms[0].last_seq;
  }, null, { timeout: 0, polling: 200 }), 20000, "ann's page marks the room read");
  if (problems.length) throw new Error(problems.join("\n"));
  ok = true;
  console.log("e2e: 1 passed, 0 failed");
} catch (e) {
  console.error("e2e failed:", e.message);
  if (problems.length) console.error(problems.join("\n"));
  console.log("e2e: 0 passed, 1 failed");
} finally {
  await browser.close();
  if (node.child.exitCode === null) await stopNode(node).catch(() => node.child.kill("SIGKILL"));
}
process.exit(ok ? 0 : 1);
