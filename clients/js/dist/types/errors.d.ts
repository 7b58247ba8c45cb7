import type { ServerErrorCode } from "./protocol.js";
/** Codes the client itself gives: closed by the app, a token it cannot renew, the network, a close code that reconnecting cannot cure. */
export type ClientErrorCode = "closed" | "token_expired" | "token_invalid" | "network" | "protocol_error" | "policy_violation" | "frame_too_large";
/** Every code a `ChorusError` can carry; `http_<status>` for a REST answer that was not JSON. */
export type ErrorCode = ServerErrorCode | ClientErrorCode | `http_${number}`;
/** Codes that a retry with the same `client_msg_id` can cure (PROTOCOL.md §3, "Which errors to retry"). */
export declare const RETRYABLE: ReadonlySet<string>;
export declare class ChorusError extends Error {
    /** A protocol code (`forbidden`, `invalid_room`, `body_too_large`, …) or a client one: `closed`, `token_expired`, `network`. */
    readonly code: ErrorCode;
    readonly room?: string;
    /** The HTTP status, when the error came from a REST call. */
    readonly status?: number;
    readonly retryAfterMs?: number;
    constructor(code: ErrorCode, message: string, extra?: {
        room?: string;
        status?: number;
        retryAfterMs?: number;
    });
    get retryable(): boolean;
}
/** The error a failed REST response carries (`{"error":{"code","message"}}`). */
export declare function responseError(res: Response, room?: string): Promise<ChorusError>;
