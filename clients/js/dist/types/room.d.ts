import { ChorusError } from "./errors.js";
import type { PostEntry, Transport } from "./transport.js";
import type { Ack, ChorusEvents, Entry, Joined, PendingEntry, PresenceUser, ReadState } from "./types.js";
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
    backoff: {
        minMs: number;
        maxMs: number;
    };
}
export declare class RoomSubscription {
    readonly name: string;
    private readonly host;
    private readonly me;
    /** The seq of the last entry delivered to the app: the cursor every resume starts from. */
    lastSeq: number | null;
    epoch?: string;
    /** Joined on the current connection. */
    joined: boolean;
    joinRef?: string;
    last?: Joined;
    waiters: Waiter<Joined>[];
    queue: Pending[];
    private busy;
    private retryTimer?;
    presence: Map<string, PresenceUser>;
    private readSeq?;
    private unreadBase;
    private unreadAt;
    /** Others' messages after the last exact count: counted live. */
    private counted;
    constructor(name: string, since: number | null, host: RoomHost, me: () => string | null);
    get unread(): number;
    /** The connection went away: joined no more, the head goes again on the next one. */
    unjoin(): void;
    /** Ends the room for the app: every waiter and every pending entry rejects with `err`. */
    end(err: ChorusError): void;
    joinedWith(j: Joined): void;
    /** An entry of the room's log (`known` false: a type this client does not know, which still
     * advances the cursor). False if it was seen already (a resume's overlap). */
    entry(seq: number, e: Entry | null): boolean;
    /** This user's cursor moved (on any device): the count is exact again. */
    read(s: ReadState): void;
    /** The history was reset (PROTOCOL §6): live entries go on after `lastSeq` of `epoch`. */
    reset(epoch: string, lastSeq: number): void;
    enqueue(p: Pending): void;
    /** Puts the head on the wire if it may go now. */
    pump(): void;
    /** The head's ack (matched by its client_msg_id; a late answer to a settled entry changes nothing). */
    acked(clientMsgId: string, ack: Ack): void;
    /** The head was refused: retried (same id, before anything behind it), or failed alone. */
    failed(clientMsgId: string, err: ChorusError): boolean;
    /** Fails one entry that never went out (refused by the client itself). */
    refuse(p: Pending, err: ChorusError): void;
    pending(): PendingEntry[];
    emitPending(): void;
}
export {};
