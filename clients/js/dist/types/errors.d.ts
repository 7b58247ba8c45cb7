/** Codes that a retry with the same `client_msg_id` can cure (PROTOCOL.md §3, "Which errors to retry"). */
export declare const RETRYABLE: Set<string>;
export declare class ChorusError extends Error {
    /** A protocol code (`forbidden`, `invalid_room`, `body_too_large`, …) or a client one: `closed`, `token_expired`, `network`. */
    readonly code: string;
    readonly room?: string;
    /** The HTTP status, when the error came from a REST call. */
    readonly status?: number;
    readonly retryAfterMs?: number;
    constructor(code: string, message: string, extra?: {
        room?: string;
        status?: number;
        retryAfterMs?: number;
    });
    get retryable(): boolean;
}
/** The error a failed REST response carries (`{"error":{"code","message"}}`). */
export declare function responseError(res: Response, room?: string): Promise<ChorusError>;
