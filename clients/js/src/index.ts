// The package's public surface: the client, its error type and its types (camelCase; the wire's
// own frame types, snake_case as they travel, are exported too for tools that read raw frames).
export { Chorus, DEFAULT_MAX_BODY_BYTES, ROOM_PATTERN, isValidRoom } from "./client.js";
export { ChorusError, RETRYABLE } from "./errors.js";
export type { ClientErrorCode, ErrorCode } from "./errors.js";
export type * from "./types.js";
export type * as wire from "./protocol.js";
export { SERVER_FRAME_FIELDS } from "./protocol.js";
export type { Transport, TransportHost, PostEntry } from "./transport.js";
