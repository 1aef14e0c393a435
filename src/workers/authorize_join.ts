/**
 * Identical authorize calls in flight in several threads cost the agent one call, without a
 * thread hop for the others. Every thread sends its own authorize calls (a hop to the main
 * thread and back costs more CPU than the call itself saves, measured: +120–250 µs per call);
 * a table in shared memory says which calls are in flight. A thread whose call is already in
 * flight in another thread flags it and waits for that thread's answer, which the owner
 * broadcasts (`BroadcastChannel`) only when someone waits — so the common case costs two atomic
 * operations and no message.
 *
 * Safety: the table holds 32-bit hashes; the broadcast answer carries the full call (URL, token,
 * body), and a waiter whose call differs (a hash collision) sends its own. An owner that has
 * been in flight longer than `staleMs` is not joined (a thread that died mid-call cannot hold
 * others). An owner that fails or is aborted broadcasts that, and its waiters send their own.
 * @module
 */
import type { RelayResponse } from "./agent_relay.ts";

/** The shared state threads join calls through: pass it to every thread's {@linkcode AuthorizeJoin}. */
export interface JoinTable {
  /**
   * `[generation counter, slot…, start time…]`: a slot is 0 when free, else `generation << 1`,
   * plus 1 once a thread waits for it; its start time is `Date.now()` truncated to 31 bits.
   */
  table: SharedArrayBuffer;
  /** The `BroadcastChannel` name answers go out on (unique per table). */
  channel: string;
}

/** A new table with `slots` slots (calls in flight at once without a hash sharing a slot). */
export function newJoinTable(slots = 1024): JoinTable {
  return {
    table: new SharedArrayBuffer((1 + 2 * slots) * 4),
    channel: `meshgate-authorize-${crypto.randomUUID()}`,
  };
}

/** What goes out on the channel when an owner's call ends and someone waits. */
interface Answer {
  slot: number;
  gen: number;
  key: string;
  response?: RelayResponse;
  error?: { name: string; message: string };
}

/** How a call was answered, counted by {@linkcode AuthorizeJoin.stats}. */
export interface JoinStats {
  /** Calls this thread sent itself. */
  sent: number;
  /** Calls answered by another thread's identical call. */
  joined: number;
  /** Answers this thread broadcast for waiters. */
  broadcast: number;
}

/** Options of an {@linkcode AuthorizeJoin}. */
export interface AuthorizeJoinOptions {
  /** An owner in flight longer than this is not joined. @default {2000} */
  staleMs?: number;
}

/**
 * One thread's side of a {@linkcode JoinTable}.
 *
 * @example
 * ```ts
 * import { AuthorizeJoin, newJoinTable } from "./authorize_join.ts";
 *
 * const shared = newJoinTable(); // sent to every worker with its init message
 * const join = new AuthorizeJoin(shared);
 * const answer = await join.run("POST /v1/agent/connect/authorize {…}", () =>
 *   Promise.resolve({ status: 200, statusText: "OK", headers: [], body: "{}" }));
 * console.log(answer.status);
 * join.close();
 * ```
 */
export class AuthorizeJoin {
  readonly #state: Int32Array;
  readonly #started: Int32Array;
  readonly #slots: number;
  readonly #channel: BroadcastChannel;
  readonly #staleMs: number;
  readonly #waiting = new Map<string, (answer: Answer) => void>();
  readonly #stats: JoinStats = { sent: 0, joined: 0, broadcast: 0 };
  #closed = false;

  /** Joins the table `shared` (created once with {@linkcode newJoinTable}). */
  constructor(shared: JoinTable, options: AuthorizeJoinOptions = {}) {
    const words = shared.table.byteLength / 4;
    this.#slots = (words - 1) / 2;
    this.#state = new Int32Array(shared.table, 0, 1 + this.#slots);
    this.#started = new Int32Array(shared.table, (1 + this.#slots) * 4, this.#slots);
    this.#staleMs = options.staleMs ?? 2000;
    this.#channel = new BroadcastChannel(shared.channel);
    this.#channel.onmessage = (e: MessageEvent<string>) => {
      let answer: Answer;
      try {
        answer = JSON.parse(e.data);
      } catch {
        return;
      }
      this.#waiting.get(`${answer.slot}:${answer.gen}`)?.(answer);
    };
  }

  /** How this thread's calls were answered. */
  get stats(): JoinStats {
    return { ...this.#stats };
  }

  /**
   * Answers the call `key` (everything that makes two calls the same: URL, token, body): with
   * `send()`, or with the answer of the identical call another thread has in flight. Rejects
   * with `send()`'s error, or `signal.reason` when aborted while waiting for another thread.
   */
  async run(
    key: string,
    send: () => Promise<RelayResponse>,
    signal?: AbortSignal,
  ): Promise<RelayResponse> {
    if (this.#closed) return this.#own(send);
    const slot = 1 + (fnv1a(key) % this.#slots);
    const gen = ((Atomics.add(this.#state, 0, 1) & 0x3fffffff) + 1) << 1;
    for (let attempt = 0; attempt < 3; attempt++) {
      if (Atomics.compareExchange(this.#state, slot, 0, gen) === 0) {
        Atomics.store(this.#started, slot - 1, now());
        return await this.#owned(slot, gen, key, send);
      }
      const current = Atomics.load(this.#state, slot);
      if (current === 0) continue; // freed meanwhile: try to own it
      if (now() - Atomics.load(this.#started, slot - 1) > this.#staleMs) break;
      // Listen before flagging: the owner broadcasts as soon as it sees the flag at its end.
      const answer = this.#await(slot, current & ~1, signal);
      const flagged = (current & 1) === 1 ||
        Atomics.compareExchange(this.#state, slot, current, current | 1) === current;
      if (!flagged) {
        answer.cancel();
        continue; // the owner finished meanwhile
      }
      const got = await answer.promise;
      if (got.key === key && got.response) {
        this.#stats.joined++;
        return got.response;
      }
      break; // a hash collision, or the owner failed: send our own
    }
    return this.#own(send);
  }

  #own(send: () => Promise<RelayResponse>): Promise<RelayResponse> {
    this.#stats.sent++;
    return send();
  }

  async #owned(
    slot: number,
    gen: number,
    key: string,
    send: () => Promise<RelayResponse>,
  ): Promise<RelayResponse> {
    let response: RelayResponse | undefined;
    let error: unknown;
    try {
      this.#stats.sent++;
      response = await send();
      return response;
    } catch (err) {
      error = err;
      throw err;
    } finally {
      const was = Atomics.exchange(this.#state, slot, 0);
      if ((was & 1) === 1 && (was & ~1) === gen) {
        this.#stats.broadcast++;
        const e = error instanceof Error || error instanceof DOMException
          ? { name: error.name, message: error.message }
          : error !== undefined
          ? { name: "Error", message: String(error) }
          : undefined;
        const answer: Answer = { slot, gen, key, ...(e ? { error: e } : { response }) };
        this.#channel.postMessage(JSON.stringify(answer));
      }
    }
  }

  /** Waits for the answer to (slot, gen); `cancel()` stops waiting. */
  #await(slot: number, gen: number, signal?: AbortSignal) {
    const ours = `${slot}:${gen}`;
    let cancel = () => {};
    const promise = new Promise<Answer>((resolve, reject) => {
      const onAbort = () => {
        this.#waiting.delete(ours);
        reject(signal!.reason);
      };
      this.#waiting.set(ours, (answer) => {
        this.#waiting.delete(ours);
        signal?.removeEventListener("abort", onAbort);
        resolve(answer);
      });
      signal?.addEventListener("abort", onAbort, { once: true });
      cancel = () => {
        this.#waiting.delete(ours);
        signal?.removeEventListener("abort", onAbort);
      };
    });
    return { promise, cancel };
  }

  /** Leaves the table: stops listening for answers; calls still in flight end on their own. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#channel.close();
    for (const resolve of [...this.#waiting.values()]) {
      // Waiters send their own call instead.
      resolve({ slot: 0, gen: 0, key: "" });
    }
    this.#waiting.clear();
  }
}

/** `Date.now()` in 31 bits (wraps every 24 days; only differences of seconds are compared). */
function now(): number {
  return Date.now() & 0x7fffffff;
}

/** FNV-1a, 32 bits, of the UTF-16 code units of `text`. */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
