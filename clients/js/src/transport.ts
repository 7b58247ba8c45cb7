// The seam between the client and the wire. A Transport carries one connection's worth of
// traffic: joins, entries, read cursors, typing. Whatever it is made of (one WebSocket, or SSE
// streams / long-polls plus REST), everything the server answers comes back to the client as the
// WebSocket protocol's frames (`TransportHost.frame`), so the client has one code path for all.
//
// One Transport object per connection attempt: when it is dropped (`close`), nothing it started
// calls its host again.

import type { ChorusError } from "./errors.js";
import type { HelloFrame, ServerFrame } from "./protocol.js";
import type { TransportKind } from "./types.js";

/** What a transport calls back into the client with. */
export interface TransportHost {
  /** What the server said (over HTTP: what the transport made of its answers, as the same frames). */
  frame(f: ServerFrame): void;
  /** The connection is usable (WebSocket: `hello` arrived). */
  opened(hello?: HelloFrame): void;
  /** It broke: reconnect, waiting at least `floorMs`. */
  lost(reason: string, floorMs?: number, draining?: boolean): void;
  /** The server refused the token (4001, 401). */
  authFailed(): void;
  /** A refusal reconnecting cannot cure. */
  fatal(err: ChorusError): void;
  /** A WebSocket never got through though HTTP works (a proxy): use the HTTP transports. */
  fallBack(): void;
  /** A room's HTTP stream was refused for good. */
  roomFailed(room: string, err: ChorusError): void;
  /** The current token. */
  token(): string | undefined;
  /** Whether the server answers and takes the token, over one REST call. */
  probe(): Promise<"ok" | "auth" | "down">;
  /** A timer on the client's clock (cleared when the client closes). */
  later(ms: number, fn: () => void): ReturnType<typeof setTimeout>;
}

/** An entry to put on the wire: its `ack` (or `error`) comes back with `ref` = `clientMsgId`. */
export interface PostEntry {
  room: string;
  kind: "send" | "edit" | "delete" | "react";
  clientMsgId: string;
  body?: string;
  target?: number;
  key?: string;
  op?: "add" | "remove";
}

export interface Transport {
  readonly kind: TransportKind;
  /** What a renewed token needs: a new connection (WebSocket), or each room joined again (HTTP). */
  readonly renewal: "reconnect" | "rejoin";
  /** Connects with `token`; `host.opened` once usable, `host.lost` (or another verdict) if not. */
  open(token: string): void;
  /** Drops everything; the host hears nothing more from this transport. */
  close(): void;
  /** Joins (or resumes after `since`); the answer is a `joined` or `error` frame with `ref`. */
  join(room: string, since: number | null, epoch: string | undefined, ref: string): void;
  /** Stops a room's traffic (an HTTP stream, or a `leave` frame). */
  leave(room: string, ref: string): void;
  /** Puts an entry on the wire; false when it cannot go now. */
  post(entry: PostEntry): boolean;
  /** Moves the read cursor, answered by a `read` frame with `ref`; false: use REST instead. */
  markRead(room: string, seq: number, ref: string): boolean;
  typing(room: string): void;
}
