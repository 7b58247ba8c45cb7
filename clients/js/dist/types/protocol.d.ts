import type { Ack, Entry, HistoryPage, Joined, Message, MyRoom, PresenceUser, ReadState, Reaction } from "./types.js";
/** Error codes the server sends (PROTOCOL.md §3, §7). */
export type ServerErrorCode = "bad_request" | "invalid_room" | "invalid_body" | "body_too_large" | "not_joined" | "forbidden" | "rate_limited" | "unavailable" | "internal" | "not_found" | "gone" | "unauthorized" | "too_many_connections";
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
export type ServerFrame = HelloFrame | JoinedFrame | WireEntry | AckFrame | LeftFrame | HistoryFrame | PresenceFrame | PresenceDiffFrame | TypingFrame | ReadFrame | ResetFrame | PongFrame | ErrorFrame;
/** Each server frame's fields, as PROTOCOL.md names them (the unit tests check the two agree). */
export declare const SERVER_FRAME_FIELDS: {
    readonly [K in ServerFrame["type"]]: readonly string[];
};
/** A frame as the server sent it, or null for text that is not one. */
export declare function parseFrame(text: string): ServerFrame | null;
export declare function isEntry(f: {
    type: string;
}): f is WireEntry;
export declare function toMessage(w: WireMessage): Message;
export declare function toEntry(w: WireEntry): Entry;
export declare function toJoined(f: JoinedFrame): Joined;
export declare function toAck(f: AckFrame, clientMsgId: string): Ack;
export declare function toReadState(f: {
    room: string;
    seq: number;
    unread: number;
    last_seq?: number;
}): ReadState;
/** `GET /api/rooms/{room}/messages` as it travels. */
export interface WireHistoryPage {
    room: string;
    epoch?: string;
    last_seq: number;
    messages: WireMessage[];
}
export declare function toHistoryPage(w: WireHistoryPage): HistoryPage;
/** One row of `GET /api/me/rooms` as it travels. */
export interface WireMyRoom {
    room: string;
    last_seq: number;
    read_seq: number;
    unread: number;
    last_message?: WireMessage;
}
export declare function toMyRoom(w: WireMyRoom): MyRoom;
export {};
