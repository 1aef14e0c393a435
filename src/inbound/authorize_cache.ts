/**
 * Authorize answers across changes. The public listener asks the agent's
 * `/v1/agent/connect/authorize` for every connection; this keeps what may be reused: an answer
 * younger than `freshMs` (`-authorize-fresh`), a recent one when the agent cannot answer
 * (`-authorize-cache-ttl`), and an identical call in flight, which concurrent connections of one
 * caller join.
 *
 * Every intention or roots change moves an epoch ({@linkcode AuthorizeCache.forget}). An answer
 * belongs to the epoch its call began in, so an answer in flight when a change came — computed
 * by the agent for the state before it — is never stored, no connection joins its call after the
 * change, and {@linkcode AuthorizeCache.current} asks again instead of letting it open a
 * connection: the re-check round that the change started cannot see a connection that is not
 * open yet.
 * @module
 */
import { AgentError } from "../agent/errors.ts";
import type { AuthorizeResult } from "../agent/types.ts";
import { deadline } from "../net/timers.ts";

/** The caller an answer is for: its certificate's SPIFFE ID and serial. */
export interface AuthorizeCaller {
  /** The SPIFFE ID (first URI SAN) of the caller's certificate. */
  uri: string;
  /** The serial of the caller's certificate (colon hex). */
  serial: string;
}

/** Options of {@linkcode AuthorizeCache}. */
export interface AuthorizeCacheOptions {
  /** Asks the agent once; `signal` aborts at the call's deadline. */
  ask: (caller: AuthorizeCaller, opts: { signal: AbortSignal }) => Promise<AuthorizeResult>;
  /** Deadline of one call to the agent, shared by those who join it. @default {5000} */
  timeoutMs?: number;
  /** Answer from the last answer for the caller when it is at most this old. @default {0} */
  freshMs?: number;
  /**
   * When the agent cannot answer (unreachable, timeout, 5xx, 429), use its last answer for the
   * caller when it is at most this old; never less than `freshMs`. @default {0}
   */
  cacheTtlMs?: number;
  /**
   * How many times {@linkcode AuthorizeCache.current} asks again when changes keep overtaking
   * the answer, before it gives up (the connection is refused). @default {3}
   */
  maxReasks?: number;
}

/**
 * Where an answer came from: the agent, a call of the same caller already in flight (`joined`),
 * a recent answer within `freshMs` (`fresh`), or one within `cacheTtlMs` because the agent could
 * not answer (`outage`).
 */
export type AnswerSource = "agent" | "joined" | "fresh" | "outage";

/** What {@linkcode AuthorizeCache.check} found out. */
export type AuthorizeAnswer =
  | {
    /** An answer of the agent (allow or deny). */
    ok: true;
    /** The agent's answer. */
    result: AuthorizeResult;
    /** Where it came from. */
    source: AnswerSource;
    /** The epoch whose state it reflects (see {@linkcode AuthorizeCache.isCurrent}). */
    epoch: number;
    /** How old it was when used (0 when just asked). */
    ageMs: number;
    /** `outage`: why the agent did not answer. */
    error?: unknown;
  }
  | {
    /** No answer: the connection is refused (fail closed). */
    ok: false;
    /** `authorize_timeout` past the deadline, else `authorize_error`. */
    reason: "authorize_timeout" | "authorize_error";
    /** For the log. */
    detail: string;
    /** The epoch the call began in. */
    epoch: number;
  };

/** One call to the agent, which concurrent connections of the same caller share. */
interface Call {
  result: Promise<AuthorizeResult>;
  /** Aborted when the call's deadline passes. */
  signal: AbortSignal;
  /** The epoch the call began in. */
  epoch: number;
}

/**
 * Reuse of authorize answers, and the epoch that keeps answers from before a change out.
 *
 * @example
 * ```ts
 * import { AuthorizeCache } from "./authorize_cache.ts";
 * const cache = new AuthorizeCache({
 *   ask: () => Promise.resolve({ Authorized: true, Reason: "allowed" }),
 *   freshMs: 10_000,
 * });
 * const caller = { uri: "spiffe://1111.consul/ns/default/dc/dc1/svc/web", serial: "0a" };
 * const first = await cache.current(caller); // asks
 * const again = await cache.current(caller); // within 10 s: not asked
 * console.log(first.ok && first.source, again.ok && again.source); // "agent" "fresh"
 * cache.forget(); // intentions changed: the next connection asks
 * ```
 */
export class AuthorizeCache {
  readonly #ask: AuthorizeCacheOptions["ask"];
  readonly #timeoutMs: number;
  readonly #freshMs: number;
  readonly #cacheTtlMs: number;
  readonly #maxReasks: number;
  #epoch = 0;
  /** The last answer per caller SPIFFE ID, with `Date.now()` when it came. */
  readonly #answers = new Map<string, { result: AuthorizeResult; at: number }>();
  /** Calls in flight of the current epoch, by caller certificate. */
  readonly #inflight = new Map<string, Call>();

  /** Creates it; see {@linkcode AuthorizeCacheOptions}. */
  constructor(options: AuthorizeCacheOptions) {
    this.#ask = options.ask;
    this.#timeoutMs = options.timeoutMs ?? 5000;
    this.#freshMs = options.freshMs ?? 0;
    this.#cacheTtlMs = Math.max(options.cacheTtlMs ?? 0, this.#freshMs);
    this.#maxReasks = options.maxReasks ?? 3;
  }

  /** The current epoch: how many times answers were forgotten. */
  get epoch(): number {
    return this.#epoch;
  }

  /**
   * Forgets every answer and every call in flight (intentions or roots changed): new connections
   * ask anew, and answers still in flight belong to the past epoch.
   */
  forget(): void {
    this.#epoch++;
    this.#answers.clear();
    this.#inflight.clear();
  }

  /** Whether no change came since the state `answer` reflects. */
  isCurrent(answer: AuthorizeAnswer): boolean {
    return answer.epoch === this.#epoch;
  }

  /**
   * An answer for `caller` that no change has overtaken: asks (see {@linkcode check}) until the
   * answer is current, starting from `answer` if given. Failures are returned as they come;
   * after `maxReasks` overtaken answers in a row the result is an `authorize_error`.
   */
  async current(caller: AuthorizeCaller, answer?: AuthorizeAnswer): Promise<AuthorizeAnswer> {
    answer ??= await this.check(caller);
    for (let reasks = 0; answer.ok && !this.isCurrent(answer); reasks++) {
      if (reasks === this.#maxReasks) {
        return {
          ok: false,
          reason: "authorize_error",
          detail: `authorize: intentions or roots changed ${reasks + 1} times while the agent ` +
            `answered for ${caller.uri}`,
          epoch: this.#epoch,
        };
      }
      answer = await this.check(caller);
    }
    return answer;
  }

  /**
   * One answer for `caller`: a fresh one, or an identical call in flight (its answer is no older
   * than the connection), or a new call; when the call fails, a recent answer within the TTL
   * (a real 4xx answer of the agent is not an outage). May be overtaken by a change: see
   * {@linkcode current}.
   */
  async check(caller: AuthorizeCaller): Promise<AuthorizeAnswer> {
    const stored = this.#freshMs > 0 ? this.#answers.get(caller.uri) : undefined;
    const storedAge = stored ? Date.now() - stored.at : Infinity;
    if (stored && storedAge <= this.#freshMs) {
      return {
        ok: true,
        result: stored.result,
        source: "fresh",
        epoch: this.#epoch,
        ageMs: storedAge,
      };
    }
    const { call, joined } = this.#call(caller);
    try {
      const result = await call.result;
      return {
        ok: true,
        result,
        source: joined ? "joined" : "agent",
        epoch: call.epoch,
        ageMs: 0,
      };
    } catch (err) {
      // Only answers of the current epoch are stored: whatever is here reflects the state now.
      const recent = this.#answers.get(caller.uri);
      const ageMs = recent ? Date.now() - recent.at : Infinity;
      if (
        recent && ageMs <= this.#cacheTtlMs && !(err instanceof AgentError && !err.retryable)
      ) {
        return {
          ok: true,
          result: recent.result,
          source: "outage",
          epoch: this.#epoch,
          ageMs,
          error: err,
        };
      }
      const timedOut = call.signal.aborted;
      return {
        ok: false,
        reason: timedOut ? "authorize_timeout" : "authorize_error",
        detail: timedOut
          ? `authorize: no answer within ${this.#timeoutMs} ms`
          : (err as Error)?.message ?? String(err),
        epoch: call.epoch,
      };
    }
  }

  /** Joins the call in flight for the same caller certificate, or starts one. */
  #call(caller: AuthorizeCaller): { call: Call; joined: boolean } {
    const key = `${caller.uri} ${caller.serial}`;
    const running = this.#inflight.get(key);
    if (running) return { call: running, joined: true };
    const ac = new AbortController();
    const timer = deadline(this.#timeoutMs);
    timer.signal.addEventListener("abort", () => {
      ac.abort(new Error(`authorize timed out after ${this.#timeoutMs} ms`));
    });
    const epoch = this.#epoch;
    let asked: Promise<AuthorizeResult>;
    try {
      asked = this.#ask(caller, { signal: ac.signal });
    } catch (err) {
      asked = Promise.reject(err);
    }
    const call: Call = {
      signal: ac.signal,
      epoch,
      result: asked.then((result) => {
        // An answer to a call that began before a change is not kept: it may predate it.
        if (epoch === this.#epoch && this.#cacheTtlMs > 0) {
          this.#answers.set(caller.uri, { result, at: Date.now() });
        }
        return result;
      }).finally(() => {
        timer.clear();
        if (this.#inflight.get(key) === call) this.#inflight.delete(key);
      }),
    };
    this.#inflight.set(key, call);
    return { call, joined: false };
  }
}
