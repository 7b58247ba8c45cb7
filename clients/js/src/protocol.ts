// The wire protocol (PROTOCOL.md §3, §7) as TypeScript: every frame the server sends, as a
// discriminated union on `type`, with its fields named as they travel (snake_case). The public
// API never shows these: `toEntry` and the other functions below map them to the camelCase types
// of types.ts, at the edge. `SERVER_FRAME_FIELDS` lists each frame's fields at runtime; a unit
// test checks it against docs/PROTOCOL.md, so the SDK and the contract cannot drift apart.

import type { Ack, Entry, HistoryPage, Joined, Message, MyRoom, PresenceUser, ReadState, Reaction } from "./types.js";

/** Error codes the server sends (PROTOCOL.md §3, §7). */
export type ServerErrorCode =
  | "bad_request"
  | "invalid_room"
  | "invalid_body"
  | "body_too_large"
  | "not_joined"
  | "forbidden"
  | "rate_limited"
  | "unavailable"
  | "internal"
  | "not_found"
  | "gone"
  | "unauthorized"
  | "too_many_connections";

interface WireEntryBase {
  room: string;
  seq: number;
  id: string;
  user: string;
  name?: string;
  ts: string;
  client_msg_id?: string;
}

export interface WireMessage extends WireEntryBase {
  type: "message";
  body: string;
  edited_ts?: string;
  deleted?: boolean;
  reactions?: Reaction[];
}

export interface WireEdit extends WireEntryBase {
  type: "edit";
  target: number;
  body: string;
  deleted?: boolean;
}

export interface WireDelete extends WireEntryBase {
  type: "delete";
  target: number;
}

export interface WireReact extends WireEntryBase {
  type: "react";
  target: number;
  key: string;
  op: "add" | "remove";
}

export type WireEntry = WireMessage | WireEdit | WireDelete | WireReact;

export interface HelloFrame {
  type: "hello";
  protocol: number;
  node: string;
  session: string;
  user: string;
  heartbeat_ms: number;
}

export interface JoinedFrame {
  type: "joined";
  ref?: string;
  room: string;
  epoch?: string;
  last_seq: number;
  recovered: boolean;
  read_seq?: number;
  unread?: number;
}

export interface AckFrame {
  type: "ack";
  ref?: string;
  room: string;
  seq: number;
  id: string;
  ts: string;
  client_msg_id?: string;
  duplicate: boolean;
}

export interface LeftFrame {
  type: "left";
  ref?: string;
  room: string;
}

export interface HistoryFrame {
  type: "history";
  ref?: string;
  room: string;
  messages: WireMessage[];
}

export interface PresenceFrame {
  type: "presence";
  room: string;
  users: PresenceUser[];
}

export interface PresenceDiffFrame {
  type: "presence_diff";
  room: string;
  joins: PresenceUser[];
  leaves: PresenceUser[];
}

export interface TypingFrame {
  type: "typing";
  room: string;
  user: string;
}

export interface ReadFrame {
  type: "read";
  ref?: string;
  room: string;
  user: string;
  seq: number;
  unread: number;
  last_seq?: number;
}

export interface ResetFrame {
  type: "reset";
  room: string;
  epoch: string;
  last_seq: number;
}

export interface PongFrame {
  type: "pong";
  ref?: string;
}

export interface ErrorFrame {
  type: "error";
  ref?: string;
  /** A server code; the HTTP transports may also give `http_<status>` for an answer that was not JSON. */
  code: import("./errors.js").ErrorCode;
  message: string;
  retry_after_ms?: number;
  /** Not on the wire: the HTTP transports add the room and the status of a refused request. */
  room?: string;
  status?: number;
}

export type ServerFrame =
  | HelloFrame
  | JoinedFrame
  | WireEntry
  | AckFrame
  | LeftFrame
  | HistoryFrame
  | PresenceFrame
  | PresenceDiffFrame
  | TypingFrame
  | ReadFrame
  | ResetFrame
  | PongFrame
  | ErrorFrame;

/** Each server frame's fields, as PROTOCOL.md names them (the unit tests check the two agree). */
export const SERVER_FRAME_FIELDS: { readonly [K in ServerFrame["type"]]: readonly string[] } = {
  hello: ["protocol", "node", "session", "user", "heartbeat_ms"],
  joined: ["ref", "room", "epoch", "last_seq", "recovered", "read_seq", "unread"],
  message: ["room", "seq", "id", "user", "name", "body", "ts", "client_msg_id", "edited_ts", "deleted", "reactions"],
  edit: ["room", "seq", "id", "target", "user", "name", "body", "ts", "client_msg_id", "deleted"],
  delete: ["room", "seq", "id", "target", "user", "name", "ts", "client_msg_id"],
  react: ["room", "seq", "id", "target", "user", "name", "key", "op", "ts", "client_msg_id"],
  ack: ["ref", "room", "seq", "id", "ts", "client_msg_id", "duplicate"],
  left: ["ref", "room"],
  history: ["ref", "room", "messages"],
  presence: ["room", "users"],
  presence_diff: ["room", "joins", "leaves"],
  typing: ["room", "user"],
  read: ["ref", "room", "user", "seq", "unread", "last_seq"],
  reset: ["room", "epoch", "last_seq"],
  pong: ["ref"],
  error: ["ref", "code", "message", "retry_after_ms"],
};

const ENTRY_TYPES = new Set(["message", "edit", "delete", "react"]);

/** A frame as the server sent it, or null for text that is not one. */
export function parseFrame(text: string): ServerFrame | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (!value || typeof value !== "object") return null;
  const type = (value as { type?: unknown }).type;
  return typeof type === "string" ? (value as ServerFrame) : null;
}

export function isEntry(f: { type: string }): f is WireEntry {
  return ENTRY_TYPES.has(f.type);
}

/** Puts `key: value` in `out` unless value is undefined (optional fields stay absent). */
function put<T extends object, K extends string, V>(out: T, key: K, value: V | undefined): T {
  if (value !== undefined) (out as Record<string, unknown>)[key] = value;
  return out;
}

export function toMessage(w: WireMessage): Message {
  const m: Message = { type: "message", room: w.room, seq: w.seq, id: w.id, user: w.user, body: w.body, ts: w.ts };
  put(m, "name", w.name);
  put(m, "clientMsgId", w.client_msg_id);
  put(m, "editedTs", w.edited_ts);
  put(m, "deleted", w.deleted);
  return put(m, "reactions", w.reactions);
}

export function toEntry(w: WireEntry): Entry {
  if (w.type === "message") return toMessage(w);
  const base = { room: w.room, seq: w.seq, id: w.id, user: w.user, ts: w.ts };
  put(base, "name", w.name);
  put(base, "clientMsgId", w.client_msg_id);
  switch (w.type) {
    case "edit":
      return put({ ...base, type: "edit" as const, target: w.target, body: w.body }, "deleted", w.deleted);
    case "delete":
      return { ...base, type: "delete", target: w.target };
    case "react":
      return { ...base, type: "react", target: w.target, key: w.key, op: w.op };
  }
}

export function toJoined(f: JoinedFrame): Joined {
  const j: Joined = { room: f.room, lastSeq: f.last_seq, recovered: !!f.recovered };
  put(j, "epoch", f.epoch);
  put(j, "readSeq", f.read_seq);
  return put(j, "unread", f.unread);
}

export function toAck(f: AckFrame, clientMsgId: string): Ack {
  return { room: f.room, seq: f.seq, id: f.id, ts: f.ts, clientMsgId, duplicate: !!f.duplicate };
}

export function toReadState(f: { room: string; seq: number; unread: number; last_seq?: number }): ReadState {
  return { room: f.room, seq: f.seq, unread: f.unread, lastSeq: f.last_seq ?? f.seq };
}

/** `GET /api/rooms/{room}/messages` as it travels. */
export interface WireHistoryPage {
  room: string;
  epoch?: string;
  last_seq: number;
  messages: WireMessage[];
}

export function toHistoryPage(w: WireHistoryPage): HistoryPage {
  return put({ room: w.room, lastSeq: w.last_seq, messages: w.messages.map(toMessage) }, "epoch", w.epoch);
}

/** One row of `GET /api/me/rooms` as it travels. */
export interface WireMyRoom {
  room: string;
  last_seq: number;
  read_seq: number;
  unread: number;
  last_message?: WireMessage;
}

export function toMyRoom(w: WireMyRoom): MyRoom {
  const r: MyRoom = { room: w.room, lastSeq: w.last_seq, readSeq: w.read_seq, unread: w.unread };
  return put(r, "lastMessage", w.last_message && toMessage(w.last_message));
}
