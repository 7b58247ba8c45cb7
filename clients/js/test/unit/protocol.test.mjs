// The SDK's frame table against the contract: every frame PROTOCOL.md says the server sends, with
// every field it lists, is one the SDK knows (SERVER_FRAME_FIELDS, which its types mirror), and the
// SDK knows no frame the contract does not have. A frame or field added to one and not the other
// fails here.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { SERVER_FRAME_FIELDS } from "../../dist/chorus.js";

const doc = readFileSync(new URL("../../../../docs/PROTOCOL.md", import.meta.url), "utf8");

/** type → fields, from the "Server → client" tables of PROTOCOL.md. */
function documentedServerFrames() {
  const frames = new Map();
  let serverSide = false;
  for (const line of doc.split("\n")) {
    if (/Server → client/.test(line)) serverSide = true;
    else if (/Client → server/.test(line)) serverSide = false;
    if (!serverSide) continue;
    const gains = line.match(/^\| `([a-z_]+)` gains (.*?) \|/);
    if (gains) {
      const fields = [...gains[2].matchAll(/"([a-z_]+)"/g)].map((m) => m[1]);
      frames.set(gains[1], [...(frames.get(gains[1]) ?? []), ...fields]);
      continue;
    }
    // A table row, or the `hello` frame written on a line of its own.
    const row = line.match(/^(?:\| )?`\{"type":"([a-z_]+)"(.*?)\}`/);
    if (!row) continue;
    const [, type, rest] = row;
    const flat = rest.replace(/\[[^\]]*\]/g, ""); // nested shapes (users, joins) are not fields
    const fields = [...flat.matchAll(/"([a-z_]+)"/g)].map((m) => m[1]);
    frames.set(type, [...(frames.get(type) ?? []), ...fields]);
  }
  return frames;
}

test("every server frame and field of PROTOCOL.md is in the SDK's frame table, and no other frame", () => {
  const documented = documentedServerFrames();
  assert.ok(documented.size >= 15, `read ${documented.size} frames from PROTOCOL.md`);
  for (const [type, fields] of documented) {
    const known = SERVER_FRAME_FIELDS[type];
    assert.ok(known, `PROTOCOL.md has a "${type}" frame the SDK does not know`);
    for (const field of fields) assert.ok(known.includes(field), `"${type}".${field} is in PROTOCOL.md, not in the SDK`);
  }
  for (const type of Object.keys(SERVER_FRAME_FIELDS)) {
    assert.ok(documented.has(type), `the SDK knows a "${type}" frame that PROTOCOL.md does not have`);
  }
});
