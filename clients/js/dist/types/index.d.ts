export { Chorus, ROOM_PATTERN, isValidRoom } from "./client";
export { ChorusError, RETRYABLE } from "./errors";
export type * from "./types";
