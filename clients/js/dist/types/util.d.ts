export type Listener<T> = (event: T) => void;
export declare class Emitter<Events extends object> {
    private listeners;
    /** Adds a listener; returns the function that removes it. */
    on<K extends keyof Events>(type: K, fn: Listener<Events[K]>): () => void;
    off<K extends keyof Events>(type: K, fn: Listener<Events[K]>): void;
    protected emit<K extends keyof Events>(type: K, event: Events[K]): void;
}
/** Full jitter: uniform in [0, min(max, min·2^attempt)], never below `floor`. */
export declare function backoffDelay(attempt: number, minMs: number, maxMs: number, floor?: number): number;
export declare function newId(): string;
/** The claims of a JWT, read without verification; null when it is not one. */
export declare function tokenClaims(token: string | undefined): {
    sub?: string;
    exp?: number;
} | null;
/** When to renew a token expiring at `exp` (seconds): a tenth of what is left, between 1 s and 60 s early. */
export declare function refreshDelayMs(exp: number, now?: number): number;
/** The length of `s` in UTF-8 bytes (what the server's byte limits count). */
export declare function utf8Length(s: string): number;
