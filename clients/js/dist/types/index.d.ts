export { Chorus, DEFAULT_MAX_BODY_BYTES, ROOM_PATTERN, isValidRoom } from "./client.js";
export { ChorusError, RETRYABLE } from "./errors.js";
export type { ClientErrorCode, ErrorCode } from "./errors.js";
export type * from "./types.js";
export type * as wire from "./protocol.js";
export { SERVER_FRAME_FIELDS } from "./protocol.js";
export type { Transport, TransportHost, PostEntry } from "./transport.js";
