// The README's "typed Node script" done as a new user would, so the README cannot drift from the
// SDK: the shell steps before the `readme-script` marker run as written (the SDK installed from
// this checkout instead of `../chorus`), the `ts` block after it is saved as bot.ts, compiled with
// the README's own tsc command and started against a standalone node; then another user posts
// `!time` over REST and the bot's answer must land in the room. Run: npm run test:readme
// (env CHORUS_BIN, default ../../target/debug/chorus; needs the npm registry).
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { waitReady, within } from "../cluster.mjs";

const pkg = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const repo = resolve(pkg, "../..");
const bin = resolve(pkg, process.env.CHORUS_BIN ?? "../../target/debug/chorus");
const readme = readFileSync(join(repo, "README.md"), "utf8");

// The README's pieces: the sh block before the marker, the ts block after it, the sh block after that.
const marker = readme.indexOf("<!-- readme-script: bot.ts");
if (marker < 0) throw new Error("README.md has no readme-script marker");
const blocks = (text, lang) => [...text.matchAll(new RegExp("```" + lang + "\\n([\\s\\S]*?)```", "g"))].map((m) => m[1]);
const setup = blocks(readme.slice(0, marker), "sh").pop();
const [script] = blocks(readme.slice(marker), "ts");
const [runBlock] = blocks(readme.slice(marker), "sh");
const compile = runBlock.split("\n")[0].replace(/ && node bot\.js$/, "");
if (!setup.includes("../chorus/clients/js") || !compile.startsWith("npx tsc")) throw new Error("the README's steps changed shape: update this test");

const dir = mkdtempSync(join(tmpdir(), "chorus-readme-"));
const port = 20000 + Math.floor(Math.random() * 20000);
const url = `http://127.0.0.1:${port}`;
let node;
let bot;
try {
  execFileSync("bash", ["-euo", "pipefail", "-c", setup.replaceAll("../chorus", repo)], { cwd: dir, stdio: ["ignore", "ignore", "inherit"] });
  const project = join(dir, "chat-script");
  writeFileSync(join(project, "bot.ts"), script);
  execFileSync("bash", ["-euo", "pipefail", "-c", compile], { cwd: project, stdio: "inherit" });
  console.log("readme: the script type-checks and compiles with the README's command");

  node = spawn(bin, ["serve", "--bind", `127.0.0.1:${port}`], { env: { PATH: process.env.PATH, NO_COLOR: "1" }, stdio: "ignore" });
  await waitReady(url, node, "standalone node");
  let out = "";
  bot = spawn(process.execPath, ["bot.js"], { cwd: project, env: { ...process.env, CHORUS_URL: url } });
  bot.stderr.on("data", (d) => process.stderr.write(`bot: ${d}`));
  const printed = (re, what) => within(new Promise((ok) => {
    const look = () => re.test(out) && ok();
    bot.stdout.on("data", (d) => { out += d; look(); });
    look();
  }), 20000, `the bot printing ${what} (so far: ${JSON.stringify(out)})`);
  await printed(/connection: open\n/, "connection: open");
  await printed(/joined #lobby at seq \d+, \d+ unread\n/, "joined");
  await printed(/sent as seq 1\n/, "sent as seq 1");
  await printed(/#lobby bot: hello from a typed script\n/, "its own message");

  // Ann asks the time over REST; the bot's answer is committed to the room after it.
  const login = await fetch(`${url}/api/demo/login`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name: "ann" }) });
  const { token } = await login.json();
  const headers = { authorization: `Bearer ${token}`, "content-type": "application/json" };
  const posted = await fetch(`${url}/api/rooms/lobby/messages`, { method: "POST", headers, body: JSON.stringify({ body: "!time" }) });
  if (posted.status !== 200 && posted.status !== 201) throw new Error(`posting !time: ${posted.status} ${await posted.text()}`);
  await printed(/#lobby ann: !time\n/, "ann's !time");
  const poll = await fetch(`${url}/api/rooms/lobby/poll?after=2&timeout=10`, { headers });
  const page = await poll.json();
  const answer = (page.messages ?? []).find((m) => m.user === "bot");
  if (!answer || !answer.body.startsWith("It is ")) throw new Error(`no answer from the bot: ${JSON.stringify(page)}`);
  console.log(`readme: the bot ran as the README shows and answered !time (${JSON.stringify(answer.body)})`);
} finally {
  bot?.kill();
  node?.kill();
  rmSync(dir, { recursive: true, force: true });
}
