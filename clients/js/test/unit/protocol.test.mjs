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

// The same table against docs/api/asyncapi.json, the AsyncAPI document the node serves at
// /api/asyncapi.json (a Rust test keeps that file equal to what the code generates, and the
// integration suite validates every frame it receives against it).
const asyncapi = JSON.parse(readFileSync(new URL("../../../../docs/api/asyncapi.json", import.meta.url), "utf8"));

/** type → { fields, required } of every frame the node sends on the WebSocket. */
function asyncapiServerFrames() {
  const resolve = (schema) => {
    const ref = schema?.$ref;
    return ref ? asyncapi.components.schemas[ref.split("/").pop()] : schema;
  };
  const frames = new Map();
  for (const { $ref } of asyncapi.operations.nodeSends.messages) {
    const payload = resolve(asyncapi.components.messages[$ref.split("/").pop()].payload);
    const fields = Object.keys(payload.properties).filter((f) => f !== "type");
    const required = (payload.required ?? []).filter((f) => f !== "type");
    const kinds = payload.properties.type.enum ?? resolve(payload.properties.type).enum;
    for (const kind of kinds) frames.set(kind, { fields, required });
  }
  return frames;
}

test("the SDK's frame table agrees with the AsyncAPI document: the same frames, no field the node does not send, every field it always sends", () => {
  const documented = asyncapiServerFrames();
  assert.ok(documented.size >= 16, `read ${documented.size} frames from asyncapi.json`);
  assert.deepEqual([...documented.keys()].sort(), Object.keys(SERVER_FRAME_FIELDS).sort());
  const entries = new Set(["message", "edit", "delete", "react"]);
  for (const [type, { fields, required }] of documented) {
    const known = SERVER_FRAME_FIELDS[type];
    for (const field of known) assert.ok(fields.includes(field), `the SDK reads "${type}".${field}, which the node never sends`);
    // An entry's schema is the log entry's, shared by its four types: a delete or a react
    // always has an empty body, which the SDK leaves out.
    const always = entries.has(type) && type !== "message" && type !== "edit" ? required.filter((f) => f !== "body") : required;
    for (const field of always) assert.ok(known.includes(field), `the node always sends "${type}".${field}; the SDK does not know it`);
  }
});
