/**
 * The entry of a worker thread of `-workers N` (started by `WorkerPool`, `./pool.ts`): on its
 * `init` message it builds an agent client whose calls go to the main thread's relay
 * ({@linkcode relayFetch}), but for authorize calls, which it sends itself (joined with identical
 * ones of other threads through the relay's join table), and runs the same proxy code as the main thread in data-plane mode —
 * no self-registration, no admin app, listeners bound with `SO_REUSEPORT` beside the main
 * thread's, unix-socket and port-0 listeners left to the main thread. It reports `ready`, each
 * connection event, and `closed` once a `close` message's drain is done.
 * @module
 */
import type { AgentClient } from "../agent/client.ts";
import { createLogger, silentLogger } from "../net/log.ts";
import { type Proxy, startProxy } from "../proxy/proxy.ts";
import { createDenoAgentClient } from "../transport/agent_client.ts";
import type { WorkerCommand, WorkerInit, WorkerReport } from "./pool.ts";
import { type RelayFetch, relayFetch } from "./relay_fetch.ts";

/** The part of a worker's global scope the entry uses. */
export interface WorkerScope {
  /** Sends a report to the main thread. */
  postMessage(message: WorkerReport): void;
  /** Receives `init` and commands. */
  addEventListener(type: "message", listener: (e: MessageEvent) => void): void;
  /** Ends the thread. */
  close(): void;
}

/**
 * Serves the main thread's messages in `scope` (the worker's `self`). Called by this module when
 * it is the worker's entry; a test's own entry may call it and add messages of its own.
 *
 * @example
 * ```ts
 * import { serveWorker, type WorkerScope } from "./worker_main.ts";
 *
 * // A worker's entry calls serveWorker(self as unknown as WorkerScope); a test may wrap `self`
 * // (tests/workers/_crashing_worker.ts) or, as here, talk to it directly.
 * const inbox = new EventTarget();
 * const { promise: ended, resolve: end } = Promise.withResolvers<void>();
 * const scope: WorkerScope = {
 *   addEventListener: (type, listener) => inbox.addEventListener(type, listener as EventListener),
 *   postMessage: (report) => console.log(report), // { t: "closed" }
 *   close: end,
 * };
 * serveWorker(scope);
 * inbox.dispatchEvent(new MessageEvent("message", { data: { t: "close", drainMs: 0 } }));
 * await ended;
 * ```
 */
export function serveWorker(scope: WorkerScope): void {
  let agent: AgentClient | undefined;
  let fetch: RelayFetch | undefined;
  let proxy: Proxy | undefined;
  let starting: Promise<void> | undefined;
  let closing: Promise<void> | undefined;
  const post = (m: WorkerReport) => scope.postMessage(m);

  const close = (drainMs: number) =>
    closing ??= (async () => {
      await starting;
      await proxy?.close(drainMs);
      await agent?.close();
      fetch?.close();
      post({ t: "closed" });
      scope.close();
    })();

  const start = async (init: WorkerInit) => {
    const log = init.log.silent
      ? silentLogger
      : createLogger({ level: init.log.level, json: init.log.json }, { worker: init.id });
    try {
      // Its own transport (agent TLS, unix socket) for its authorize calls; everything else
      // goes to the relay in the main thread.
      agent = await createDenoAgentClient({ ...init.agent }, {
        wrap: (transport) => (fetch = relayFetch(init.relay, { join: init.join, transport })),
      });
      proxy = await startProxy({
        agent,
        ...init.proxy,
        dataPlane: true,
        log,
        onEvent: (event) => post({ t: "event", json: JSON.stringify(event) }),
      });
    } catch (err) {
      if (fetch) fetch.close();
      else init.relay.close();
      post({ t: "failed", error: (err as Error).message });
      return;
    }
    const running = proxy;
    running.ready.then(
      () => post({ t: "ready" }),
      (err: Error) => {
        if (closing) return;
        post({ t: "failed", error: err.message });
        close(0);
      },
    );
  };

  scope.addEventListener("message", (e: MessageEvent<WorkerInit | WorkerCommand>) => {
    const m = e.data;
    if (m?.t === "init" && !starting) starting = start(m);
    else if (m?.t === "close") close(m.drainMs);
  });
}

if (import.meta.main) serveWorker(self as unknown as WorkerScope);
