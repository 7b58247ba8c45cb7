// The one error type the client rejects and emits with: a protocol error code plus the room it
// concerns, so an app can tell "forbidden in #ops" from a network failure.

import type { ServerErrorCode } from "./protocol.js";

/** Codes the client itself gives: closed by the app, a token it cannot renew, the network, a close code that reconnecting cannot cure. */
export type ClientErrorCode = "closed" | "token_expired" | "token_invalid" | "network" | "protocol_error" | "policy_violation" | "frame_too_large";

/** Every code a `ChorusError` can carry; `http_<status>` for a REST answer that was not JSON. */
export type ErrorCode = ServerErrorCode | ClientErrorCode | `http_${number}`;

/** Codes that a retry with the same `client_msg_id` can cure (PROTOCOL.md §3, "Which errors to retry"). */
export const RETRYABLE: ReadonlySet<string> = new Set(["unavailable", "rate_limited", "internal"]);

export class ChorusError extends Error {
  /** A protocol code (`forbidden`, `invalid_room`, `body_too_large`, …) or a client one: `closed`, `token_expired`, `network`. */
  readonly code: ErrorCode;
  readonly room?: string;
  /** The HTTP status, when the error came from a REST call. */
  readonly status?: number;
  readonly retryAfterMs?: number;

  constructor(code: ErrorCode, message: string, extra: { room?: string; status?: number; retryAfterMs?: number } = {}) {
    super(extra.room ? `${message} (room ${extra.room})` : message);
    this.name = "ChorusError";
    this.code = code;
    this.room = extra.room;
    this.status = extra.status;
    this.retryAfterMs = extra.retryAfterMs;
  }

  get retryable(): boolean {
    return RETRYABLE.has(this.code);
  }
}

/** The error a failed REST response carries (`{"error":{"code","message"}}`). */
export async function responseError(res: Response, room?: string): Promise<ChorusError> {
  let body: any = {};
  try {
    body = await res.json();
  } catch {
    // not JSON: a proxy's page; the status says enough
  }
  const e = body && body.error ? body.error : { code: `http_${res.status}`, message: res.statusText || `HTTP ${res.status}` };
  const after = Number(res.headers.get("retry-after"));
  return new ChorusError(String(e.code) as ErrorCode, String(e.message), {
    room,
    status: res.status,
    retryAfterMs: after > 0 ? after * 1000 : undefined,
  });
}
