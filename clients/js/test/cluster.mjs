// A real Chorus cluster for the SDK's integration tests and the browser test: its own Postgres
// database (created here, dropped at stop) and Redis prefix, N nodes of the real binary on loopback
// ports, HS256 tokens, and a node restart on the same port. Needs Postgres and Redis running (see
// the repository README); fails with a message saying so when they are not.
import { spawn, execFileSync } from "node:child_process";
import { createHmac } from "node:crypto";
import { createServer } from "node:net";
import { existsSync } from "node:fs";

const SECRET = "sdk-cluster-secret-0123456789abcdef";
const PG = process.env.TEST_DATABASE_URL || "postgres://postgres@127.0.0.1:5432/test";
const REDIS = process.env.TEST_REDIS_URL || "redis://127.0.0.1:6379";

/** Signs a token for `user` valid for `ttlS` seconds (the node checks it; the client only reads it). */
export function token(user, { ttlS = 3600, rooms, name } = {}) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const claims = { sub: user, name: name ?? user, exp: Math.floor(Date.now() / 1000) + ttlS };
  if (rooms) claims.rooms = rooms;
  const head = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}`;
  return `${head}.${createHmac("sha256", SECRET).update(head).digest("base64url")}`;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

export async function within(promise, ms, what) {
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

function psql(db, sql) {
  try {
    return execFileSync("psql", [`${PG.replace(/\/[^/]*$/, "")}/${db}`, "-qAtc", sql], { stdio: ["ignore", "pipe", "pipe"] }).toString();
  } catch (e) {
    throw new Error(`Postgres at ${PG} did not answer (${String(e.stderr || e.message).trim()}). Start it: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`);
  }
}

/** Resolves once `child` (a chorus node) answers 200 on `${url}/readyz`; fails if it exits first or after 20 s. */
export function waitReady(url, child, what) {
  let exited = child.exitCode;
  child.on("exit", (code) => (exited = code));
  child.on("error", (e) => (exited = String(e)));
  const ready = (async () => {
    for (;;) {
      if (exited !== null) throw new Error(`chorus ${what} exited early (${exited}); are Postgres and Redis running? (see the README)`);
      try {
        if ((await fetch(`${url}/readyz`)).ok) return;
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 50)); // polling a readiness endpoint, not a sleep-as-sync
    }
  })();
  return within(ready, 20000, `${what} ready`);
}

export class Cluster {
  /** Starts `n` nodes sharing a fresh database and a fresh Redis prefix. */
  static async start({ n = 2, bin = process.env.CHORUS_BIN || "../../target/debug/chorus", env = {} } = {}) {
    if (!existsSync(bin)) {
      throw new Error(`no chorus binary at ${bin}: build it (cargo build --bin chorus, at the repository's root) or point CHORUS_BIN at one`);
    }
    const c = new Cluster();
    c.bin = bin;
    c.db = `chorus_sdk_${process.pid}_${Date.now() % 100000}`;
    psql("postgres", `CREATE DATABASE ${c.db}`);
    c.env = {
      PATH: process.env.PATH,
      NO_COLOR: "1",
      CHORUS__DATABASE__URL: `${PG.replace(/\/[^/]*$/, "")}/${c.db}`,
      CHORUS__REDIS__URL: REDIS,
      CHORUS__REDIS__PREFIX: c.db,
      CHORUS__AUTH__JWT_SECRET: SECRET,
      CHORUS__SHUTDOWN__DRAIN_MS: "200",
      CHORUS__LOG__LEVEL: "warn",
      ...env,
    };
    c.nodes = [];
    // Interrupted (Ctrl-C, a CI timeout's SIGTERM): stop the nodes and drop the database anyway.
    const onSignal = (sig) => {
      c.stopNow();
      process.exit(sig === "SIGINT" ? 130 : 143);
    };
    c.signals = ["SIGINT", "SIGTERM"].map((sig) => [sig, () => onSignal(sig)]);
    for (const [sig, fn] of c.signals) process.once(sig, fn);
    try {
      for (let i = 0; i < n; i++) c.nodes.push({ port: await freePort(), child: null });
      await Promise.all(c.nodes.map((_, i) => c.startNode(i)));
    } catch (e) {
      await c.stop();
      throw e;
    }
    return c;
  }

  url(i) {
    return `http://127.0.0.1:${this.nodes[i].port}`;
  }

  get urls() {
    return this.nodes.map((_, i) => this.url(i));
  }

  async startNode(i) {
    const node = this.nodes[i];
    const child = spawn(this.bin, ["serve", "--bind", `127.0.0.1:${node.port}`], {
      env: { ...this.env, CHORUS__NODE__ID: `sdk-node-${i}` },
      stdio: ["ignore", "inherit", "inherit"],
    });
    node.child = child;
    await waitReady(this.url(i), child, `node ${i}`);
  }

  /** SIGTERM (the node drains, closing sockets with 1012) and wait for the exit. */
  async stopNode(i) {
    const child = this.nodes[i].child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGTERM");
    await within(exited, 15000, `node ${i} exit`);
  }

  /** Synchronous: kill the nodes, drop the database (for signal handlers). */
  stopNow() {
    for (const node of this.nodes ?? []) if (node.child && node.child.exitCode === null) node.child.kill("SIGKILL");
    if (this.db) psql("postgres", `DROP DATABASE IF EXISTS ${this.db} WITH (FORCE)`);
    this.db = null;
  }

  async stop() {
    for (const [sig, fn] of this.signals ?? []) process.off(sig, fn);
    for (const node of this.nodes ?? []) if (node.child && node.child.exitCode === null) node.child.kill("SIGKILL");
    await Promise.all((this.nodes ?? []).map((n) => n.child && n.child.exitCode === null ? new Promise((r) => n.child.once("exit", r)) : null));
    if (this.db) psql("postgres", `DROP DATABASE IF EXISTS ${this.db} WITH (FORCE)`);
    this.db = null;
  }
}
