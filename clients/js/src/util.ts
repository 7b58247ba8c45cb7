// Small pieces the client needs everywhere: a typed event emitter, backoff with jitter, ids and
// reading a JWT's expiry (never verifying it: the server does that).

export type Listener<T> = (event: T) => void;

export class Emitter<Events extends object> {
  private listeners = new Map<keyof Events, Set<Listener<any>>>();

  /** Adds a listener; returns the function that removes it. */
  on<K extends keyof Events>(type: K, fn: Listener<Events[K]>): () => void {
    let set = this.listeners.get(type);
    if (!set) this.listeners.set(type, (set = new Set()));
    set.add(fn);
    return () => this.off(type, fn);
  }

  off<K extends keyof Events>(type: K, fn: Listener<Events[K]>): void {
    this.listeners.get(type)?.delete(fn);
  }

  protected emit<K extends keyof Events>(type: K, event: Events[K]): void {
    for (const fn of [...(this.listeners.get(type) ?? [])]) {
      try {
        fn(event);
      } catch (e) {
        // A listener's bug must not break delivery to the others, nor the client's own state.
        setTimeout(() => {
          throw e;
        });
      }
    }
  }
}

/** Full jitter: uniform in [0, min(max, min·2^attempt)], never below `floor`. */
export function backoffDelay(attempt: number, minMs: number, maxMs: number, floor = 0): number {
  const cap = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 30));
  return Math.max(floor, Math.random() * cap);
}

export function newId(): string {
  const c: any = (globalThis as any).crypto;
  if (c && typeof c.randomUUID === "function") return c.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`;
}

/** The claims of a JWT, read without verification; null when it is not one. */
export function tokenClaims(token: string | undefined): { sub?: string; exp?: number } | null {
  if (!token) return null;
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const padded = part + "=".repeat((4 - (part.length % 4)) % 4);
    return JSON.parse(decodeUtf8(atob(padded)));
  } catch {
    return null;
  }
}

function decodeUtf8(binary: string): string {
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}

/** When to renew a token expiring at `exp` (seconds): a tenth of what is left, between 1 s and 60 s early. */
export function refreshDelayMs(exp: number, now = Date.now()): number {
  const left = exp * 1000 - now;
  const early = Math.min(60_000, Math.max(1_000, left / 10));
  return Math.max(0, left - early);
}

/** The length of `s` in UTF-8 bytes (what the server's byte limits count). */
export function utf8Length(s: string): number {
  return new TextEncoder().encode(s).length;
}
