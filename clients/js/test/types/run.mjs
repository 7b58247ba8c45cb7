// The published package's types as a user's project sees them (issue: "types break in a normal
// Node ESM project"): `npm pack` the package, install the tarball into a fresh project with `ws`
// and `@types/ws`, and compile two programs with this package's TypeScript (strict, no skipLibCheck,
// so the shipped .d.ts files are checked too): a Node program passing `ws` as the README shows,
// and a browser program with the DOM's WebSocket, each under moduleResolution nodenext, node16
// and bundler. Run: npm run test:types (needs the npm registry for ws and @types/ws).
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const pkg = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const tsc = join(pkg, "node_modules/typescript/bin/tsc");
const dir = mkdtempSync(join(tmpdir(), "chorus-sdk-types-"));
const run = (cmd, args, cwd) => execFileSync(cmd, args, { cwd, stdio: ["ignore", "pipe", "pipe"] }).toString();

const programs = {
  // The README's Node recipe: ws as the WebSocket, callbacks typed from the event map.
  "node.ts": `
import WebSocket from "ws";
import { Chorus, ChorusError, type Ack, type ErrorCode, type Joined } from "@chorus-chat/client";

const chat = new Chorus({ url: "http://localhost:8080", getToken: async () => "a.b.c", WebSocket });
chat.on("message", ({ room, message }) => console.log(room, message.user, message.body.length));
chat.on("state", ({ state, previous }) => console.log(previous, "->", state));
chat.on("error", (e) => { const code: ErrorCode = e.code; console.log(code); });
export async function main(): Promise<void> {
  await chat.connect();
  const joined: Joined = await chat.join("lobby");
  const ack: Ack = await chat.send("lobby", "hello");
  console.log(joined.lastSeq, ack.seq, ack.clientMsgId, ack.duplicate);
  try {
    await chat.send("lobby", "x".repeat(70_000));
  } catch (e) {
    if (e instanceof ChorusError && e.code === "body_too_large") console.log(e.message);
  }
  chat.close();
}
`,
  // A page: the DOM's WebSocket and fetch, no ws.
  "browser.ts": `
import { Chorus, type Message } from "@chorus-chat/client";

const chat = new Chorus({ getToken: () => fetch("/api/chat-token").then((r) => r.text()), WebSocket: window.WebSocket });
const shown: Message[] = [];
chat.on("message", ({ message }) => { shown.push(message); document.title = message.body; });
export async function start(): Promise<number> {
  await chat.connect();
  const page = await chat.history("lobby");
  return page.messages.length + shown.length;
}
`,
};

const configs = {
  nodenext: { module: "nodenext", moduleResolution: "nodenext" },
  node16: { module: "node16", moduleResolution: "node16" },
  bundler: { module: "esnext", moduleResolution: "bundler" },
};

let failed = 0;
try {
  const tgz = run("npm", ["pack", "--silent", "--pack-destination", dir], pkg).trim().split("\n").pop();
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
  run("npm", ["install", "--silent", "--no-audit", "--no-fund", join(dir, tgz), "ws@8", "@types/ws@8.18", "@types/node@22"], dir);
  for (const [file, text] of Object.entries(programs)) writeFileSync(join(dir, file), text);
  for (const [name, resolution] of Object.entries(configs)) {
    for (const [file, lib, types] of [["node.ts", ["es2022"], ["node"]], ["browser.ts", ["es2022", "dom"], []]]) {
      const tsconfig = `tsconfig.${name}.${file}.json`;
      writeFileSync(join(dir, tsconfig), JSON.stringify({
        compilerOptions: { ...resolution, target: "es2022", lib, types, strict: true, noEmit: true, skipLibCheck: false },
        files: [file],
      }));
      try {
        run(process.execPath, [tsc, "-p", tsconfig], dir);
        console.log(`ok ${name} ${file}`);
      } catch (e) {
        failed++;
        console.log(`FAILED ${name} ${file}:\n${e.stdout}${e.stderr}`);
      }
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
if (failed) {
  console.log(`types: ${failed} of 6 failed`);
  process.exit(1);
}
console.log("types: the published package type-checks under nodenext, node16 and bundler, with ws and with the DOM");
