// One joined room, as the client keeps it: its cursor (the last seq handed to the app, where every
// resume starts), its epoch, its exact unread count, who is here, and its queue of entries in the
// user's order, of which only the head is ever on the wire. The connection (client.ts) feeds it
// what the server said; it decides what the app hears and what goes out next.

import { ChorusError } from "./errors.js";
import type { PostEntry, Transport } from "./transport.js";
import type { Ack, ChorusEvents, Entry, Joined, PendingEntry, PresenceUser, ReadState } from "./types.js";
import { backoffDelay } from "./util.js";

interface Waiter<T> {
  resolve: (v: T) => void;
  reject: (e: ChorusError) => void;
}

/** An entry waiting for its ack. */
export interface Pending extends PendingEntry, Waiter<Ack> {
  entry: PostEntry;
}

/** What a room needs of the client around it. */
export interface RoomHost {
  emit<K extends keyof ChorusEvents>(type: K, event: ChorusEvents[K]): void;
  /** The open connection's transport, if there is one. */
  transport(): Transport | null;
  /** Joins the room again on the current connection. */
  rejoin(room: RoomSubscription): void;
  backoff: { minMs: number; maxMs: number };
}

export class RoomSubscription {
  /** The seq of the last entry delivered to the app: the cursor every resume starts from. */
  lastSeq: number | null;
  epoch?: string;
  /** Joined on the current connection. */
  joined = false;
  joinRef?: string;
  last?: Joined;
  waiters: Waiter<Joined>[] = [];
  queue: Pending[] = [];
  private busy = false;
  private retryTimer?: ReturnType<typeof setTimeout>;
  presence = new Map<string, PresenceUser>();
  private readSeq?: number;
  private unreadBase = 0;
  private unreadAt = 0;
  /** Others' messages after the last exact count: counted live. */
  private counted = new Set<number>();

  constructor(
    readonly name: string,
    since: number | null,
    private readonly host: RoomHost,
    private readonly me: () => string | null,
  ) {
    this.lastSeq = since;
  }

  get unread(): number {
    return this.unreadBase + this.counted.size;
  }

  /** The connection went away: joined no more, the head goes again on the next one. */
  unjoin(): void {
    this.joined = false;
    this.joinRef = undefined;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.busy = false;
    for (const p of this.queue) if (p.status !== "queued") p.status = "queued";
  }

  /** Ends the room for the app: every waiter and every pending entry rejects with `err`. */
  end(err: ChorusError): void {
    this.unjoin();
    for (const w of this.waiters) w.reject(err);
    this.waiters = [];
    for (const p of this.queue) p.reject(err);
    this.queue = [];
    this.emitPending();
  }

  joinedWith(j: Joined): void {
    const resume = this.lastSeq !== null;
    if (resume && !j.recovered) {
      this.lastSeq = j.lastSeq;
      this.counted.clear();
      this.host.emit("reset", { room: this.name, lastSeq: j.lastSeq });
    } else if (!resume) {
      this.lastSeq = j.lastSeq;
    }
    this.epoch = j.epoch;
    this.joined = true;
    this.last = j;
    if (j.unread !== undefined && j.readSeq !== undefined) {
      this.readSeq = j.readSeq;
      this.unreadBase = j.unread;
      this.unreadAt = j.lastSeq;
      this.counted = new Set([...this.counted].filter((s) => s > j.lastSeq));
    }
    for (const w of this.waiters) w.resolve(j);
    this.waiters = [];
    this.host.emit("joined", j);
    this.host.emit("unread", { room: this.name, unread: this.unread });
    this.pump();
  }

  /** An entry of the room's log (`known` false: a type this client does not know, which still
   * advances the cursor). False if it was seen already (a resume's overlap). */
  entry(seq: number, e: Entry | null): boolean {
    if (this.lastSeq !== null && seq <= this.lastSeq) return false;
    this.lastSeq = seq;
    if (!e) return true;
    const before = this.unread;
    if (e.type === "message") {
      if (e.user !== this.me() && !e.deleted && e.seq > Math.max(this.readSeq ?? 0, this.unreadAt)) this.counted.add(e.seq);
      this.host.emit("message", { room: this.name, message: e });
    } else {
      if (e.type === "delete") this.counted.delete(e.target);
      this.host.emit("entry", { room: this.name, entry: e });
    }
    if (this.unread !== before) this.host.emit("unread", { room: this.name, unread: this.unread });
    return true;
  }

  /** This user's cursor moved (on any device): the count is exact again. */
  read(s: ReadState): void {
    if (this.readSeq !== undefined && s.seq < this.readSeq) return;
    this.readSeq = s.seq;
    this.unreadBase = s.unread;
    this.unreadAt = s.lastSeq ?? s.seq;
    this.counted = new Set([...this.counted].filter((q) => q > this.unreadAt && q > s.seq));
    this.host.emit("unread", { room: this.name, unread: this.unread });
  }

  /** The history was reset (PROTOCOL §6): live entries go on after `lastSeq` of `epoch`. */
  reset(epoch: string, lastSeq: number): void {
    this.lastSeq = lastSeq;
    this.epoch = epoch;
    this.host.emit("reset", { room: this.name, lastSeq });
  }

  // ----- entries, in the user's order ---------------------------------------------------------

  enqueue(p: Pending): void {
    this.queue.push(p);
    this.emitPending();
    this.pump();
  }

  /** Puts the head on the wire if it may go now. */
  pump(): void {
    const transport = this.host.transport();
    if (this.busy || !this.queue.length || !transport || !this.joined) return;
    const p = this.queue[0];
    if (!transport.post(p.entry)) return;
    this.busy = true;
    p.status = "sending";
    p.attempts++;
    this.emitPending();
  }

  /** The head's ack (matched by its client_msg_id; a late answer to a settled entry changes nothing). */
  acked(clientMsgId: string, ack: Ack): void {
    const p = this.queue[0];
    if (!p || p.clientMsgId !== clientMsgId) return;
    this.queue.shift();
    this.busy = false;
    p.resolve(ack);
    this.emitPending();
    this.pump();
  }

  /** The head was refused: retried (same id, before anything behind it), or failed alone. */
  failed(clientMsgId: string, err: ChorusError): boolean {
    const p = this.queue[0];
    if (!p || p.clientMsgId !== clientMsgId) return false;
    if (err.retryable) {
      p.status = "retrying";
      p.retryReason = err.code;
      const { minMs, maxMs } = this.host.backoff;
      const delay = err.code === "rate_limited" ? (err.retryAfterMs ?? 1000) : backoffDelay(p.attempts, minMs, maxMs);
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        this.busy = false;
        this.pump();
      }, delay);
      this.emitPending();
      return true;
    }
    if (err.code === "not_joined") {
      // The server lost our join (e.g. its room actor restarted): join again; the head goes after.
      this.busy = false;
      p.status = "queued";
      this.joined = false;
      this.host.rejoin(this);
      return true;
    }
    this.queue.shift();
    this.busy = false;
    p.reject(err);
    this.emitPending();
    this.pump();
    return true;
  }

  /** Fails one entry that never went out (refused by the client itself). */
  refuse(p: Pending, err: ChorusError): void {
    p.reject(err);
  }

  pending(): PendingEntry[] {
    return this.queue.map(publicPending);
  }

  emitPending(): void {
    this.host.emit("pending", { room: this.name, pending: this.pending() });
  }
}

function publicPending(p: Pending): PendingEntry {
  const { clientMsgId, room, kind, body, target, status, attempts } = p;
  return status === "retrying"
    ? { clientMsgId, room, kind, body, target, status, attempts, retryReason: p.retryReason }
    : { clientMsgId, room, kind, body, target, status, attempts };
}
