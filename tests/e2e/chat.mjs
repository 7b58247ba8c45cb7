// Browser end-to-end test, in headless Debian Chromium:
//  A. The SDK's scripted chat (clients/js/test/scenario.mjs, the same script the Node integration
//     test runs) in a page, against a 2-node cluster (Postgres + Redis) through a node restart and
//     token renewals: nothing lost, nothing repeated, each user's order kept, no renewal seen as a
//     reconnect; then the demo page with a pasted token whose display name differs from its user id.
//  B. The demo app on a standalone node: Ann on a desktop page (WebSocket), Bob on a phone-sized
//     page (SSE + REST). Sign in, chat, HTML shown as text, several rooms with unread badges, a
//     friendly error for a bad room name, reactions / inline edit / delete, a reload that keeps
//     the sign-in and the draft, then the node restarts with a new secret: "Retry now" and stale
//     presence while it is down, a reload that keeps the unsent message, both pages ask to sign in
//     again, and the message typed meanwhile is delivered once after signing in. Accessibility basics are checked (every
//     control has a name, new messages are announced) and screenshots are saved.
// Usage: node chat.mjs (env: CHORUS_BIN, TEST_DATABASE_URL, E2E_ARTIFACTS). Exits non-zero on failure.
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { chromium } from "playwright-core";
import { Cluster, token, waitReady, within } from "../../clients/js/test/cluster.mjs";

const BIN = process.env.CHORUS_BIN || "target/debug/chorus";
const ARTIFACTS = process.env.E2E_ARTIFACTS || "tests/e2e/artifacts";
mkdirSync(ARTIFACTS, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
const problems = [];
const results = [];
async function part(name, fn) {
  try {
    await fn();
    results.push([name, true]);
    console.log(`e2e: ${name}: ok`);
  } catch (e) {
    results.push([name, false]);
    console.error(`e2e: ${name}: FAILED: ${e.stack || e.message}`);
  }
}

const waitFor = (page, what, fn, arg) => within(page.waitForFunction(fn, arg, { timeout: 0, polling: 50 }), 20000, what);
const rowText = (page, seq, sel = ".body") => page.textContent(`#log .msg[data-seq='${seq}'] ${sel}`);
async function signIn(page, name) {
  await waitFor(page, `${name}: the sign-in form`, () => !document.getElementById("login").hidden);
  await page.fill("#name", name);
  await page.press("#name", "Enter");
  await waitFor(page, `${name}: connected`, () => document.getElementById("conn").dataset.state === "open");
}
async function say(page, text) {
  await page.fill("#body", text);
  await page.press("#body", "Enter");
}
const bodies = (page) => page.$$eval("#log .msg:not(.pending) .body", (b) => b.map((x) => x.textContent));
const seesBody = (page, who, text) => waitFor(page, `${who} sees ${JSON.stringify(text)}`,
  (t) => [...document.querySelectorAll("#log .msg:not(.pending) .body")].some((b) => b.textContent === t), text);

// ----- A. the SDK's scripted chat in Chromium ---------------------------------------------------
await part("sdk scripted chat in Chromium on a 2-node cluster", async () => {
  const cluster = await Cluster.start({ n: 2, bin: BIN });
  try {
    const page = await browser.newPage();
    page.on("pageerror", (e) => problems.push(`sdk page: ${e}`));
    if (process.env.E2E_DEBUG) page.on("console", (m) => console.log(`sdk console: ${m.text()}`));
    // A page on node 0's origin without the demo's CSP (its /healthz), so the SDK loads from there
    // and may reach node 1.
    await page.route(`${cluster.url(0)}/scenario.mjs`, (r) =>
      r.fulfill({ contentType: "text/javascript", body: readFileSync("clients/js/test/scenario.mjs") }));
    await page.exposeFunction("harnessToken", (user) => token(user, { ttlS: 6 }));
    await page.exposeFunction("harnessStop", (i) => cluster.stopNode(i));
    await page.exposeFunction("harnessStart", (i) => cluster.startNode(i));
    await page.goto(`${cluster.url(0)}/healthz`);
    const result = await within(page.evaluate(async ({ urls, run }) => {
      const { Chorus } = await import("/chorus.js");
      const { scriptedChat } = await import("/scenario.mjs");
      return scriptedChat({ Chorus, urls, run, options: {}, token: window.harnessToken, stopNode: window.harnessStop, startNode: window.harnessStart });
    }, { urls: cluster.urls, run: `br${Date.now() % 100000}` }), 90000, "the scripted chat");
    console.log(`e2e: chromium: ${JSON.stringify(result)}`);
    if (result.problems.length) throw new Error(result.problems.join("\n"));
    if (result.transport !== "websocket" || result.messages !== 120) throw new Error(`unexpected run: ${JSON.stringify(result)}`);
    if (!result.rateLimitedRetries) throw new Error("the burst never hit the rate limit");
    await page.close();

    // The demo signed in with a token whose user id and display name differ: the page shows the
    // name (in the header, on a pending message and on the message once sent), never the id.
    const demo = await browser.newPage();
    demo.on("pageerror", (e) => problems.push(`demo page: ${e}`));
    await demo.goto(`${cluster.url(0)}/`);
    await waitFor(demo, "the sign-in form", () => !document.getElementById("login").hidden);
    await demo.fill("#token", token("u-4711", { name: "Ann Lee" }));
    await demo.press("#token", "Enter");
    await waitFor(demo, "connected with a pasted token", () => document.getElementById("conn").dataset.state === "open");
    if ((await demo.textContent("#me")) !== "Signed in as Ann Lee") throw new Error(`header: ${await demo.textContent("#me")}`);
    await waitFor(demo, "in the lobby", () => window.chorus.joinedRooms().some((r) => r.room === "lobby"));
    await demo.evaluate(() => window.chorus.close()); // offline, so the message stays pending
    await say(demo, "named");
    await waitFor(demo, "the pending message names Ann Lee", () => document.querySelector("#log .pending .who")?.textContent === "Ann Lee");
    await demo.close();
  } finally {
    await cluster.stop();
  }
});

// ----- B. the demo app ----------------------------------------------------------------------------
const PORT = process.env.E2E_PORT || "18765";
const BASE = `http://127.0.0.1:${PORT}`;
// Standalone: no database, no Redis, no secret (the node makes its own, new at every start).
const standaloneEnv = { PATH: process.env.PATH, NO_COLOR: "1", CHORUS__SHUTDOWN__DRAIN_MS: "200", CHORUS__LOG__LEVEL: "warn" };
async function startStandalone() {
  const child = spawn(BIN, ["serve", "--bind", `127.0.0.1:${PORT}`], { env: standaloneEnv, stdio: ["ignore", "ignore", "inherit"] });
  await waitReady(BASE, child, "standalone node");
  return child;
}
async function stopStandalone(child) {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  await within(exited, 15000, "standalone node exit");
}

await part("demo app: rooms, unread, log entries, restart and sign-in again, pending, phone layout", async () => {
  let node = await startStandalone();
  const desktop = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
  try {
    const open = async (ctx, who, query = "") => {
      const page = await ctx.newPage();
      page.on("pageerror", (e) => problems.push(`${who}: ${e}`));
      if (process.env.E2E_DEBUG) page.on("console", (m) => console.log(`${who} console: ${m.text()}`));
      page.on("dialog", (d) => { problems.push(`${who}: a dialog opened: ${d.message()}`); d.dismiss(); });
      await page.goto(`${BASE}/${query}`);
      return page;
    };
    const ann = await open(desktop, "ann");
    const bob = await open(phone, "bob", "?transport=sse");
    await signIn(ann, "ann");
    await signIn(bob, "bob");

    // Chat both ways; a body that looks like HTML stays text.
    await say(ann, "hello bob");
    await seesBody(bob, "bob", "hello bob");
    await say(bob, "<img src=x onerror=alert(1)>");
    await seesBody(ann, "ann", "<img src=x onerror=alert(1)>");
    if ((await ann.locator("#log img").count()) !== 0) throw new Error("a message body became an <img>");
    const times = await ann.$$eval("#log .msg time", (t) => t.map((x) => [x.dateTime, x.textContent]));
    if (!times.length || times.some(([iso, shown]) => !iso || !/\d/.test(shown) || shown === iso)) throw new Error(`timestamps: ${JSON.stringify(times)}`);
    await waitFor(ann, "ann's screen reader hears bob's message", () => document.getElementById("announce").textContent.includes("<img"));

    // A bad room name gets words, not a regex; then a second room, with an unread badge on the phone.
    await ann.fill("#newroom", "no spaces please");
    await ann.press("#newroom", "Enter");
    const err = await ann.textContent("#roomerr");
    if (!/no spaces/.test(err) || /[\^$\\[]/.test(err)) throw new Error(`room error: ${err}`);
    await ann.fill("#newroom", "random");
    await ann.press("#newroom", "Enter");
    await bob.click("#menu");
    if ((await bob.getAttribute("#menu", "aria-expanded")) !== "true") throw new Error("the phone menu did not open");
    await bob.fill("#newroom", "random");
    await bob.press("#newroom", "Enter");
    await waitFor(bob, "bob in #random", () => document.getElementById("title").textContent === "#random");
    await bob.click("#menu");
    await bob.click("#rooms button:has-text('#lobby')");
    await say(ann, "in random 1");
    await say(ann, "in random 2");
    await waitFor(bob, "bob's badge for #random says 2", () =>
      [...document.querySelectorAll("#rooms button")].some((b) => b.getAttribute("aria-label") === "random, 2 unread"));
    await bob.click("#menu");
    await bob.click("#rooms button:has-text('#random')");
    await seesBody(bob, "bob", "in random 2");
    await waitFor(bob, "the badge clears", () => !document.querySelector("#rooms .badge"));

    // Reactions, an inline edit and a delete reach the other page as log entries.
    await ann.click("#rooms button:has-text('#lobby')");
    const imgSeq = await ann.getAttribute("#log .msg:has-text('onerror') ", "data-seq");
    await ann.click(`#log .msg[data-seq='${imgSeq}'] .acts button[aria-label^='React']`);
    await say(ann, "typo here");
    await seesBody(ann, "ann", "typo here");
    const typoSeq = await ann.getAttribute("#log .msg:has-text('typo here')", "data-seq");
    await ann.click(`#log .msg[data-seq='${typoSeq}'] .acts button:has-text('Edit')`);
    await ann.fill(`#log .msg[data-seq='${typoSeq}'] .editbox input`, "fixed typo");
    await ann.press(`#log .msg[data-seq='${typoSeq}'] .editbox input`, "Enter");
    const helloSeq = await ann.getAttribute("#log .msg:has-text('hello bob')", "data-seq");
    await ann.click(`#log .msg[data-seq='${helloSeq}'] .acts button:has-text('Delete')`);
    await bob.click("#menu");
    await bob.click("#rooms button:has-text('#lobby')");
    await waitFor(bob, "bob sees 👍 1", (s) => document.querySelector(`#log .msg[data-seq='${s}'] .reacts button`)?.textContent === "👍 1", imgSeq);
    await waitFor(bob, "bob sees the edit", (s) => document.querySelector(`#log .msg[data-seq='${s}'] .body`)?.textContent === "fixed typo"
      && document.querySelector(`#log .msg[data-seq='${s}'] .edited`), typoSeq);
    await waitFor(bob, "bob sees the delete", (s) => document.querySelector(`#log .msg[data-seq='${s}'] .body`)?.textContent === "message deleted", helloSeq);

    // A message the server refuses for good (too large) shows as failed, with Resend and Discard.
    await say(ann, "😀".repeat(1500)); // 6000 bytes > limits.max_body_bytes (4096)
    await waitFor(ann, "ann's oversized message shows as failed", () => document.querySelector("#log .pending.failed .state")?.textContent === "Not sent: too long");
    // Resend tries it again (the same id); still too large, it fails again (the SDK refuses a body
    // over the server's limit itself, before it goes out, so it fails alone).
    await ann.evaluate(() => {
      window.resent = 0;
      const send = window.chorus.send.bind(window.chorus);
      window.chorus.send = (...args) => {
        window.resent++;
        return send(...args);
      };
    });
    await ann.click("#log .pending.failed button:has-text('Resend')");
    await waitFor(ann, "the resend was tried and failed again", () => window.resent > 0
      && document.querySelector("#log .pending.failed .state")?.textContent === "Not sent: too long");
    await ann.click("#log .pending.failed button:has-text('Discard')");
    await waitFor(ann, "the failed message is discarded", () => !document.querySelector("#log .pending"));

    // Keyboard only: Tab reaches the room list, Enter switches rooms, and the composer sends.
    await ann.evaluate(() => document.activeElement?.blur());
    let reached = false;
    for (let i = 0; i < 40 && !reached; i++) {
      await ann.keyboard.press("Tab");
      reached = await ann.evaluate(() => document.activeElement?.textContent?.startsWith("#random"));
    }
    if (!reached) throw new Error("Tab never reached the #random room button");
    await ann.keyboard.press("Enter");
    await waitFor(ann, "Enter opened #random", () => document.getElementById("title").textContent === "#random");
    await ann.keyboard.type("sent from the keyboard");
    await ann.keyboard.press("Enter");
    await seesBody(ann, "ann", "sent from the keyboard"); // delivered: shown with its seq, not pending
    await ann.click("#rooms button:has-text('#lobby')");

    // Text contrast: every visible text against its background meets WCAG AA (4.5:1).
    for (const [who, page] of [["ann", ann], ["bob", bob]]) {
      const low = await page.evaluate(() => {
        const rgb = (c) => (c.match(/[\d.]+/g) || []).map(Number);
        const lum = ([r, g, b]) => [r, g, b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
          .reduce((a, v, i) => a + v * [0.2126, 0.7152, 0.0722][i], 0);
        const bg = (e) => { for (; e; e = e.parentElement) { const c = rgb(getComputedStyle(e).backgroundColor); if (c.length === 3 || c[3] > 0) return c; } return [255, 255, 255]; };
        const out = [];
        for (const e of document.querySelectorAll("body *")) {
          if (!e.offsetParent || ![...e.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
          const [a, b] = [lum(rgb(getComputedStyle(e).color)), lum(bg(e))];
          const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
          if (ratio < 4.5) out.push(`${e.tagName}.${e.className} "${e.textContent.slice(0, 20)}" ${ratio.toFixed(2)}`);
        }
        return out;
      });
      if (low.length) throw new Error(`${who}: low contrast: ${low.join("; ")}`);
    }

    // Every control has an accessible name (a label, text or aria-label).
    for (const [who, page] of [["ann", ann], ["bob", bob]]) {
      const unnamed = await page.$$eval("button, input", (els) => els.filter((e) => e.offsetParent !== null || e.closest("#side"))
        .filter((e) => !(e.labels?.length || e.getAttribute("aria-label") || e.textContent.trim())).map((e) => e.outerHTML));
      if (unnamed.length) throw new Error(`${who}: controls without a name: ${unnamed.join(" ")}`);
    }
    await ann.screenshot({ path: `${ARTIFACTS}/demo-desktop.png` });
    await bob.screenshot({ path: `${ARTIFACTS}/demo-phone.png` });
    await bob.click("#menu");
    await bob.screenshot({ path: `${ARTIFACTS}/demo-phone-rooms.png` });
    await bob.keyboard.press("Escape");

    // A reload keeps the sign-in and the typed draft.
    await ann.fill("#body", "half a thought");
    await ann.reload();
    await waitFor(ann, "ann is back in after a reload, without signing in", () =>
      document.getElementById("login").hidden && document.getElementById("conn").dataset.state === "open");
    if ((await ann.inputValue("#body")) !== "half a thought") throw new Error("the draft did not survive the reload");
    await ann.fill("#body", "");
    await ann.dispatchEvent("#body", "input");

    // The node restarts: a new secret (standalone), an empty in-memory store.
    await stopStandalone(node);
    await waitFor(ann, "ann's indicator leaves open", () => document.getElementById("conn").dataset.state !== "open");
    await waitFor(ann, "ann is offered a retry and told that presence is stale", () =>
      !document.getElementById("retry").hidden && document.getElementById("here-h").textContent === "Here when last connected");
    await say(ann, "typed while the node was down");
    await waitFor(ann, "ann's message shows as waiting", () => document.querySelector("#log .pending .state")?.textContent.startsWith("Waiting"));
    await ann.screenshot({ path: `${ARTIFACTS}/demo-desktop-offline.png` });
    node = await startStandalone();
    // The user does not wait out the backoff: "Retry now" (still shown while reconnecting).
    await ann.evaluate(() => { const b = document.getElementById("retry"); if (!b.hidden) b.click(); });
    // And reloads while the message is unsent: it is kept (and the old token is refused).
    await ann.reload();
    await waitFor(ann, "after the reload, ann's unsent message is still there", () =>
      [...document.querySelectorAll("#log .pending .body")].some((b) => b.textContent === "typed while the node was down"));
    for (const [who, page] of [["ann", ann], ["bob", bob]]) {
      await waitFor(page, `${who} is asked to sign in again`, () => !document.getElementById("login").hidden
        && document.getElementById("conn").dataset.state === "signin");
    }
    await bob.screenshot({ path: `${ARTIFACTS}/demo-phone-signin.png` });
    if ((await ann.$$("#log .pending")).length !== 1) throw new Error("ann's waiting message is gone from the page");
    await signIn(ann, "ann");
    await signIn(bob, "bob");
    await seesBody(bob, "bob", "typed while the node was down");
    await waitFor(ann, "ann's message is delivered, no longer pending", () => !document.querySelector("#log .pending")
      && [...document.querySelectorAll("#log .msg .body")].filter((b) => b.textContent === "typed while the node was down").length === 1);
    for (const [who, page] of [["ann", ann], ["bob", bob]]) {
      const got = (await bodies(page)).filter((b) => b === "typed while the node was down");
      if (got.length !== 1) throw new Error(`${who} shows the message ${got.length} times`);
    }
    await waitFor(ann, "connected again: no retry button, presence is live", () =>
      document.getElementById("retry").hidden && document.getElementById("here-h").textContent === "Here now");
    await say(bob, "back from the phone");
    await seesBody(ann, "ann", "back from the phone");
    if (problems.length) throw new Error(problems.join("\n"));
  } finally {
    await desktop.close();
    await phone.close();
    await stopStandalone(node).catch(() => node.kill("SIGKILL"));
  }
});

await browser.close();
const failed = results.filter(([, ok]) => !ok).length;
console.log(`e2e: ${results.length - failed} passed, ${failed} failed (screenshots in ${ARTIFACTS})`);
process.exit(failed ? 1 : 0);
