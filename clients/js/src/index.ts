// The package's public surface: the client, its error type and its types.
export { Chorus, ROOM_PATTERN, isValidRoom } from "./client";
export { ChorusError, RETRYABLE } from "./errors";
export type * from "./types";
