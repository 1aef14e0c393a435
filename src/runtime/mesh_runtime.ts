/**
 * The core a sidecar `Proxy` and a Connect-native `ConnectService` share:
 * the live TLS material fed from the agent (roots and leaf watches), the event hub with the
 * last event of each type, the problems `/ready` shows, the lifecycle phase, the intentions
 * watch that re-checks the open connections of the inbound listeners, the background loops,
 * and one idempotent `close()` that every caller awaits. What differs (the proxy's registration
 * and listeners, the native service's serve/dial/fetch) stays with its owner.
 * @module
 */
import type { AgentClient } from "../agent/client.ts";
import type { Intention } from "../agent/types.ts";
import type { ConnectionEvent } from "../events/connection.ts";
import { EventHub } from "../events/hub.ts";
import type { LifecycleEvent, LifecyclePhase, ProxyEvent } from "../events/lifecycle.ts";
import type { InboundGateway } from "../inbound/gateway.ts";
import { reauthorizeOnChange } from "../inbound/reauthorize.ts";
import { type Logger, silentLogger } from "../net/log.ts";
import { TlsMaterial } from "../trust/material.ts";
import { feedLeaf, type FeedOptions, feedRoots } from "./feed.ts";

/** Options of {@linkcode MeshRuntime}. */
export interface MeshRuntimeOptions {
  /** The agent every watch goes through. */
  agent: AgentClient;
  /** Log sink. */
  log?: Logger;
  /** Also receives every connection event (`accepted`, `refused`, `closed`…), unstamped. */
  onEvent?: (event: ConnectionEvent) => void;
  /**
   * The inbound listeners whose open connections an intention change re-checks (read at every
   * change). @default {no listeners}
   */
  gateways?: () => Iterable<InboundGateway>;
  /**
   * Grace period before the connections of a caller an intention change denies are closed;
   * -1 turns the intentions watch off ({@linkcode MeshRuntime.watchIntentions} does nothing).
   * @default {0}
   */
  revokeGraceMs?: number;
  /** Authorize deadline per caller when re-checking. @default {5000} */
  authorizeTimeoutMs?: number;
  /** The leaf watchdog's margin (see `feedLeaf`). @default {10 % of its lifetime, at most 1 h} */
  leafExpiryMarginMs?: number;
  /** Close `agent` once stopped (the owner created it). @default {false} */
  ownsAgent?: boolean;
}

/** What the owner does while {@linkcode MeshRuntime.close} drains. */
export interface RuntimeDrain {
  /**
   * Runs once the phase is `draining`: stop serving and wait for open connections. `stop()`
   * aborts {@linkcode MeshRuntime.signal} (the watches and loops) earlier than after `drain`.
   */
  drain?: (stop: () => void) => Promise<void>;
  /** Runs once the phase is `stopped`, before `close()` resolves. */
  stopped?: () => void;
}

/** Connection events also passed to `onEvent`. */
const CONNECTION_EVENTS: ReadonlySet<string> = new Set([
  "accepted",
  "refused",
  "closed",
  "dial_failed",
  "revoked",
]);

/**
 * The runtime a proxy or a Connect-native service runs on. Nothing starts until asked:
 * {@linkcode MeshRuntime.watchRoots}, {@linkcode MeshRuntime.watchLeaf} and
 * {@linkcode MeshRuntime.watchIntentions} start the watches, {@linkcode MeshRuntime.spawn} adopts
 * a loop that {@linkcode MeshRuntime.close} awaits.
 *
 * @example
 * ```ts
 * import { AgentClient } from "../agent/client.ts";
 * import { MeshRuntime } from "./mesh_runtime.ts";
 *
 * const runtime = new MeshRuntime({ agent: new AgentClient(), ownsAgent: true });
 * runtime.watchRoots();
 * runtime.watchLeaf("web");
 * runtime.material.ready.then(() => runtime.markReady());
 * runtime.events.subscribe((e) => console.log(e.type));
 * await runtime.close();
 * ```
 */
export class MeshRuntime implements AsyncDisposable {
  /** The live leaf and roots. */
  readonly material: TlsMaterial = new TlsMaterial();
  /** Everything that happens (connections and lifecycle), for metrics, the admin app and logs. */
  readonly events: EventHub<ProxyEvent> = new EventHub<ProxyEvent>();
  /** `Date.now()` at creation. */
  readonly startedAt: number = Date.now();
  /** The agent every watch goes through. */
  readonly agent: AgentClient;
  /** Log sink. */
  readonly log: Logger;
  readonly #o: MeshRuntimeOptions;
  readonly #controller = new AbortController();
  readonly #loops = new Set<Promise<void>>();
  readonly #last = new Map<ProxyEvent["type"], ProxyEvent>();
  /** Why the owner does not serve as configured, by source (`leaf`, `roots`, `authorize`…). */
  readonly #problems = new Map<string, string>();
  #phase: LifecyclePhase = "starting";
  #roots = false;
  #leafService?: string;
  #leafStop?: AbortController;
  #intentionsService?: string;
  #intentionsStop?: AbortController;
  #intentions?: readonly Intention[];
  #closing?: Promise<void>;

  /** Creates a runtime; nothing runs until a watch is started. */
  constructor(options: MeshRuntimeOptions) {
    this.#o = options;
    this.agent = options.agent;
    this.log = options.log ?? silentLogger;
  }

  /** Aborted when the runtime stops: every watch and loop it owns ends on it. */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** `starting` until {@linkcode MeshRuntime.markReady}, then `ready`; `draining`/`stopped` on close. */
  get phase(): LifecyclePhase {
    return this.#phase;
  }

  /**
   * Why the owner does not serve as configured, one line each, for `/ready`: what it waits for
   * and what the agent answered (`leaf: /v1/agent/connect/ca/leaf/web: HTTP 403: Permission
   * denied`), material it refused, a listener it could not bind.
   */
  get problems(): string[] {
    return [...this.#problems.values()];
  }

  /** The current problem of `source`, if any. */
  problemOf(source: string): string | undefined {
    return this.#problems.get(source);
  }

  /** Sets (or with `undefined` clears) the problem of `source`. */
  problem(source: string, text: string | undefined): void {
    if (text === undefined) this.#problems.delete(source);
    else this.#problems.set(source, text);
  }

  /** The latest intentions of the watched service (highest precedence first), once known. */
  get intentions(): readonly Intention[] | undefined {
    return this.#intentions;
  }

  /** The most recent event of a type (e.g. the last leaf renewal), if any. */
  lastEvent<K extends ProxyEvent["type"]>(
    type: K,
  ): Extract<ProxyEvent, { type: K }> | undefined {
    return this.#last.get(type) as Extract<ProxyEvent, { type: K }> | undefined;
  }

  /** Stamps and publishes an event (connection events also go to `onEvent`). */
  readonly emit = (event: ConnectionEvent | LifecycleEvent): void => {
    const stamped = { ...event, at: Date.now() };
    this.#last.set(event.type, stamped);
    this.events.publish(stamped);
    if (CONNECTION_EVENTS.has(event.type)) this.#o.onEvent?.(event as ConnectionEvent);
  };

  #setPhase(phase: LifecyclePhase): void {
    this.#phase = phase;
    this.emit({ type: "phase", phase });
  }

  /** Turns `starting` into `ready` (publishing it); false when the phase was another. */
  markReady(): boolean {
    if (this.#phase !== "starting") return false;
    this.#setPhase("ready");
    return true;
  }

  /** Adopts a background loop: {@linkcode MeshRuntime.close} awaits it. */
  spawn(loop: Promise<void>): void {
    this.#loops.add(loop);
    loop.finally(() => this.#loops.delete(loop));
  }

  /** Resolves true once `p` resolves, false when the runtime stops first. */
  async until(p: Promise<unknown>): Promise<boolean> {
    const signal = this.#controller.signal;
    if (signal.aborted) return false;
    let onAbort = () => {};
    const aborted = new Promise<false>((resolve) => {
      onAbort = () => resolve(false);
      signal.addEventListener("abort", onAbort, { once: true });
    });
    try {
      return await Promise.race([p.then(() => true), aborted]);
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
  }

  #feed(signal: AbortSignal, problem: (text: string | undefined) => void): FeedOptions {
    return {
      agent: this.agent,
      material: this.material,
      signal,
      log: this.log,
      emit: this.emit,
      problem,
    };
  }

  /** Starts the CA roots watch (once; later calls do nothing). Problems go under `roots`. */
  watchRoots(): void {
    if (this.#roots || this.#controller.signal.aborted) return;
    this.#roots = true;
    this.spawn(feedRoots(this.#feed(this.#controller.signal, (t) => this.problem("roots", t))));
  }

  /**
   * Watches the leaf of `service` (problems under `leaf`). Another service stops the previous
   * watch and forgets its problem; the same service again does nothing.
   */
  watchLeaf(service: string): void {
    if (this.#leafService === service || this.#controller.signal.aborted) return;
    this.#leafStop?.abort();
    this.problem("leaf", undefined); // the old service's; the new feed reports its own
    const stop = new AbortController();
    this.#leafStop = stop;
    this.#leafService = service;
    const signal = AbortSignal.any([this.#controller.signal, stop.signal]);
    const problem = (text: string | undefined) => {
      if (this.#leafService === service) this.problem("leaf", text);
    };
    this.spawn(feedLeaf({
      ...this.#feed(signal, problem),
      service,
      expiryMarginMs: this.#o.leafExpiryMarginMs,
    }));
  }

  /**
   * Watches the intentions of `service`: {@linkcode MeshRuntime.intentions} follows them, and
   * every change re-checks the open connections of `gateways`, closing denied callers' after
   * `revokeGraceMs`. Another service replaces the watch; the same one again, or
   * `revokeGraceMs` < 0, does nothing.
   */
  watchIntentions(service: string): void {
    const grace = this.#o.revokeGraceMs ?? 0;
    if (grace < 0 || this.#intentionsService === service || this.#controller.signal.aborted) {
      return;
    }
    this.#intentionsStop?.abort();
    const stop = new AbortController();
    this.#intentionsStop = stop;
    this.#intentionsService = service;
    this.#intentions = undefined;
    this.spawn(reauthorizeOnChange({
      agent: this.agent,
      service,
      gateways: this.#o.gateways ?? (() => []),
      graceMs: grace,
      authorizeTimeoutMs: this.#o.authorizeTimeoutMs,
      signal: AbortSignal.any([this.#controller.signal, stop.signal]),
      log: this.log,
      emit: this.emit,
      onIntentions: (list) => {
        if (this.#intentionsService === service) this.#intentions = list;
      },
    }));
  }

  /**
   * Stops: the phase turns `draining`, the owner's `drain` runs, the watches and loops stop
   * and are awaited, the agent is closed if owned, the phase turns `stopped`. Idempotent: every
   * caller gets the same promise, including one that calls from a `draining` subscriber (only
   * the first caller's `steps` run).
   */
  close(steps: RuntimeDrain = {}): Promise<void> {
    if (!this.#closing) {
      // Set before the drain starts: its first step publishes `draining` synchronously, and a
      // subscriber that closes then must get this promise, not start a second drain.
      const closing = Promise.withResolvers<void>();
      this.#closing = closing.promise;
      this.#close(steps).then(closing.resolve, closing.reject);
    }
    return this.#closing;
  }

  /** Whether {@linkcode MeshRuntime.close} was called. */
  get closing(): boolean {
    return this.#closing !== undefined;
  }

  async #close(steps: RuntimeDrain): Promise<void> {
    this.#setPhase("draining");
    const stop = () => this.#controller.abort();
    await steps.drain?.(stop);
    stop();
    await Promise.all([...this.#loops]);
    if (this.#o.ownsAgent) await this.agent.close();
    this.#setPhase("stopped");
    steps.stopped?.();
  }

  /** Same as {@linkcode MeshRuntime.close} without owner steps. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
