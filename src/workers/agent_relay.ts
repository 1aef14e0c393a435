/**
 * {@linkcode AgentRelay}: the one place a multi-threaded proxy talks to the agent. The main
 * thread's own agent client and every worker's (through `relayFetch`, `./relay_fetch.ts`, over
 * a `MessagePort`) send their HTTP calls here, and identical calls become one: every thread runs
 * the same watches, yet the agent sees one blocking query per resource. Authorize calls are the
 * exception: each thread sends its own (a hop to this thread and back would cost more CPU per
 * connection than the call), and identical ones in flight in several threads — the same
 * caller's certificate — still cost one agent call, joined through a table in shared memory
 * (`./authorize_join.ts`, {@linkcode AgentRelay.joinTable}).
 *
 * Rules, for a call keyed by method, URL without `index`/`hash`/`wait`, and request headers
 * (the ACL token among them — different tokens never share an answer):
 *
 * - A blocking `GET` (`?index=` > 0 or `?hash=`) whose resource is being watched — a blocking
 *   request for the version the relay last received is in flight, so that answer is current —
 *   is answered at once from that answer when the caller holds another version (a worker that
 *   just started, or was behind), as the agent would answer it.
 * - Otherwise it joins the blocking request in flight for the same resource, version and
 *   `wait`, or starts it; the joined answer ends no later than the caller asked.
 * - A non-blocking `GET` is answered from the current answer of a watched resource, or joins
 *   an identical non-blocking `GET` in flight.
 * - Identical `POST /v1/agent/connect/authorize` calls in flight are joined (with the workers'
 *   through the join table). Every other call (registration, checks) passes through on its own.
 *
 * Status, headers (`X-Consul-Index`, `X-Consul-Knownleader`, …) and body pass through
 * unchanged; a transport error reaches every caller of the request as an error. A caller that
 * aborts leaves; the agent request is aborted once its last caller has left.
 * @module
 */

import { AuthorizeJoin, type JoinTable, newJoinTable } from "./authorize_join.ts";

/** One HTTP call as it crosses threads: plain data, structured-cloneable. */
export interface RelayRequest {
  /** HTTP method. */
  method: string;
  /** Absolute URL of the agent endpoint. */
  url: string;
  /** Request headers (the ACL token among them). */
  headers: [string, string][];
  /** Request body (agent calls send JSON text). */
  body?: string;
}

/** One HTTP answer as it crosses threads: plain data, structured-cloneable. */
export interface RelayResponse {
  /** HTTP status. */
  status: number;
  /** HTTP status text. */
  statusText: string;
  /** Response headers, unchanged but for those describing the transfer encoding. */
  headers: [string, string][];
  /** The body as text. */
  body: string;
}

/** How a relayed call was answered, counted by {@linkcode AgentRelay.stats}. */
export interface RelayStats {
  /** Calls received (the main thread's and every worker's). */
  calls: number;
  /** Requests sent to the agent. */
  agentRequests: number;
  /** Calls that joined a request already in flight. */
  joined: number;
  /** Blocking or plain reads answered at once from the current answer of a watched resource. */
  current: number;
  /** Agent requests in flight now. */
  inFlight: number;
}

/**
 * A relay message as it crosses the port: JSON text. One string clones at a fraction of the cost
 * of the object it encodes (measured: 8–10 µs per round trip against 20–26 µs).
 */
export function encode(message: RelayCallMessage | RelayAnswerMessage): string {
  return JSON.stringify(message);
}

/** The message `text` encodes; `undefined` for anything else on the port. */
export function decode<T extends RelayCallMessage | RelayAnswerMessage>(
  text: unknown,
): T | undefined {
  if (typeof text !== "string") return undefined;
  try {
    return JSON.parse(text) as T;
  } catch {
    return undefined;
  }
}

/** Messages a worker's `relayFetch` sends to the relay. */
export type RelayCallMessage =
  | { t: "call"; id: number; request: RelayRequest }
  | { t: "abort"; id: number };

/** Messages the relay answers with. */
export type RelayAnswerMessage =
  | { t: "answer"; id: number; response: RelayResponse }
  | { t: "error"; id: number; name: string; message: string };

/** Options of an {@linkcode AgentRelay}. */
export interface AgentRelayOptions {
  /**
   * The transport to the agent (`fetch`, or the `node:https` one for agent TLS and unix
   * sockets). @default {globalThis.fetch}
   */
  fetch?: (input: URL | string, init: RequestInit) => Promise<Response>;
  /** How many resources' current answers are kept. @default {512} */
  maxResources?: number;
}

/** Response headers that describe the transfer, not the answer: the body is relayed decoded. */
const TRANSFER_HEADERS = new Set([
  "connection",
  "content-encoding",
  "content-length",
  "keep-alive",
  "transfer-encoding",
]);

/** Statuses whose response cannot carry a body. */
const NULL_BODY = new Set([101, 103, 204, 205, 304]);

/** The last answer of a resource (a 2xx `GET`), with its versions. */
interface Current {
  response: RelayResponse;
  index?: string;
  hash?: string;
}

/** One agent request and the callers waiting for it. */
interface Flight {
  /** Its key among the joinable flights; none for a call that is never joined. */
  key?: string;
  controller: AbortController;
  waiters: Set<Waiter>;
  /** The resource a blocking or plain `GET` reads (for the current answer). */
  resource?: string;
  /** A blocking `GET`: which version it waits past. */
  blocking?: { by: "index" | "hash"; version: string };
}

interface Waiter {
  resolve: (r: RelayResponse) => void;
  reject: (e: unknown) => void;
}

/**
 * Answers agent HTTP calls of several threads with as few agent requests as the rules above
 * allow. Give {@linkcode AgentRelay.fetch} to the main thread's `AgentClient`, and one side of a
 * `MessageChannel` per worker to {@linkcode AgentRelay.serve} (the worker's client uses
 * `relayFetch` on the other side).
 *
 * @example
 * ```ts
 * import { AgentClient } from "../agent/client.ts";
 * import { AgentRelay } from "./agent_relay.ts";
 * import { relayFetch } from "./relay_fetch.ts";
 *
 * const relay = new AgentRelay(); // in front of globalThis.fetch
 * const main = new AgentClient({ address: "127.0.0.1:8500", fetch: relay.fetch });
 * const { port1, port2 } = new MessageChannel();
 * const stopServing = relay.serve(port1); // a worker would get port2
 * const other = new AgentClient({ address: "127.0.0.1:8500", fetch: relayFetch(port2) });
 * // main.watchRoots() and other.watchRoots() now cost the agent one blocking query.
 * await other.close();
 * stopServing();
 * await main.close();
 * ```
 */
export class AgentRelay {
  readonly #upstream: (input: URL | string, init: RequestInit) => Promise<Response>;
  readonly #maxResources: number;
  /** Joinable flights by key. */
  readonly #flights = new Map<string, Flight>();
  /** Every flight in progress, joinable or not. */
  readonly #all = new Set<Flight>();
  /** Blocking flights by resource: the resource is watched while one waits past `current`. */
  readonly #watching = new Map<string, Set<Flight>>();
  readonly #current = new Map<string, Current>();
  readonly #ports = new Set<() => void>();
  readonly #stats = { calls: 0, agentRequests: 0, joined: 0, current: 0 };
  readonly #join: AuthorizeJoin;
  #closed = false;
  /**
   * The table through which the workers' authorize calls join this thread's and each other's:
   * give it to each worker's `relayFetch` (`join`).
   */
  readonly joinTable: JoinTable = newJoinTable();

  /** Creates a relay in front of `options.fetch`. */
  constructor(options: AgentRelayOptions = {}) {
    this.#upstream = options.fetch ?? ((input, init) => fetch(input, init));
    this.#maxResources = options.maxResources ?? 512;
    this.#join = new AuthorizeJoin(this.joinTable);
  }

  /** How calls were answered so far. */
  get stats(): RelayStats {
    return { ...this.#stats, inFlight: this.#all.size };
  }

  /**
   * A `fetch` for an `AgentClient` in this thread: its calls go through the relay, so that they
   * and the workers' are joined.
   */
  readonly fetch = async (input: URL | Request | string, init?: RequestInit): Promise<Response> => {
    const request = await toRelayRequest(input, init);
    const answer = await this.call(request, init?.signal ?? undefined);
    return toResponse(answer);
  };

  /**
   * Answers one call. Rejects with the transport's error (every caller of a joined request gets
   * it), or with `signal.reason` when the caller aborts.
   */
  call(request: RelayRequest, signal?: AbortSignal): Promise<RelayResponse> {
    this.#stats.calls++;
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.#closed) return Promise.reject(new TypeError("agent relay is closed"));
    const plan = this.#plan(request);
    if (plan.current) {
      this.#stats.current++;
      return Promise.resolve(plan.current);
    }
    let flight = plan.key === undefined ? undefined : this.#flights.get(plan.key);
    if (flight) this.#stats.joined++;
    else flight = this.#start(request, plan);
    return this.#wait(flight, signal);
  }

  /** What to do with a call: answer from the current answer, or which flight it belongs to. */
  #plan(request: RelayRequest): {
    current?: RelayResponse;
    key?: string;
    authorize?: boolean;
    resource?: string;
    blocking?: Flight["blocking"];
  } {
    const method = request.method.toUpperCase();
    const headers = headerKey(request.headers);
    let url: URL;
    try {
      url = new URL(request.url);
    } catch {
      return {}; // the transport reports the bad URL
    }
    const authorize = authorizeKey(request);
    if (authorize !== undefined) return { key: authorize, authorize: true };
    if (method !== "GET" || request.body) return {};
    const params = url.searchParams;
    const index = params.get("index");
    const hash = params.get("hash");
    const wait = params.get("wait") ?? "";
    for (const p of ["index", "hash", "wait"]) params.delete(p);
    const resource = `GET ${url.href}\n${headers}`;
    const blocking: Flight["blocking"] = hash !== null
      ? { by: "hash", version: hash }
      : index !== null && index !== "0" && index !== ""
      ? { by: "index", version: index }
      : undefined;
    const current = this.#current.get(resource);
    if (current && this.#isWatched(resource, current)) {
      const version = blocking && current[blocking.by];
      if (!blocking || (version !== undefined && version !== blocking.version)) {
        return { current: current.response };
      }
    }
    return blocking
      ? { key: `${resource}\n${blocking.by}=${blocking.version} wait=${wait}`, resource, blocking }
      : { key: `${resource}\nnow`, resource };
  }

  /** Whether a blocking request waits past `current` now: then `current` is the agent's state. */
  #isWatched(resource: string, current: Current): boolean {
    for (const f of this.#watching.get(resource) ?? []) {
      if (f.blocking && current[f.blocking.by] === f.blocking.version) return true;
    }
    return false;
  }

  #start(
    request: RelayRequest,
    plan: { key?: string; authorize?: boolean; resource?: string; blocking?: Flight["blocking"] },
  ): Flight {
    const flight: Flight = {
      key: plan.key,
      controller: new AbortController(),
      waiters: new Set(),
      resource: plan.resource,
      blocking: plan.blocking,
    };
    const { key, resource } = plan;
    this.#all.add(flight);
    if (key !== undefined) this.#flights.set(key, flight);
    if (resource !== undefined && flight.blocking) {
      const set = this.#watching.get(resource) ?? new Set();
      set.add(flight);
      this.#watching.set(resource, set);
    }
    this.#stats.agentRequests++;
    const signal = flight.controller.signal;
    // Authorize: joined with the workers' identical calls too (they send their own, see
    // authorize_join.ts), through the table they share with this thread.
    const sending = plan.authorize && plan.key !== undefined
      ? this.#join.run(plan.key, () => this.#send(request, signal), signal)
      : this.#send(request, signal);
    sending.then(
      (response) => {
        const aborted = flight.controller.signal.aborted;
        this.#land(flight);
        if (
          !aborted && resource !== undefined && response.status >= 200 && response.status < 300
        ) {
          this.#remember(resource, response);
        }
        for (const w of flight.waiters) w.resolve(response);
      },
      (err) => {
        this.#land(flight);
        for (const w of flight.waiters) w.reject(err);
      },
    );
    return flight;
  }

  /** Forgets a flight that ended or that every caller left: no one joins it any more. */
  #land(flight: Flight): void {
    this.#all.delete(flight);
    if (flight.key !== undefined && this.#flights.get(flight.key) === flight) {
      this.#flights.delete(flight.key);
    }
    if (flight.resource !== undefined) {
      const set = this.#watching.get(flight.resource);
      set?.delete(flight);
      if (set?.size === 0) this.#watching.delete(flight.resource);
    }
  }

  #remember(resource: string, response: RelayResponse): void {
    const header = (name: string) => response.headers.find(([k]) => k.toLowerCase() === name)?.[1];
    this.#current.delete(resource); // re-inserted last: the map's order is the eviction order
    this.#current.set(resource, {
      response,
      index: header("x-consul-index"),
      hash: header("x-consul-contenthash"),
    });
    for (const key of this.#current.keys()) {
      if (this.#current.size <= this.#maxResources) break;
      this.#current.delete(key);
    }
  }

  async #send(request: RelayRequest, signal: AbortSignal): Promise<RelayResponse> {
    return await toRelayResponse(
      await this.#upstream(request.url, {
        method: request.method,
        headers: request.headers,
        body: request.body,
        signal,
      }),
    );
  }

  /** Waits for `flight` as one more caller; the last caller to leave aborts the request. */
  #wait(flight: Flight, signal?: AbortSignal): Promise<RelayResponse> {
    return new Promise<RelayResponse>((resolve, reject) => {
      const onAbort = () => {
        leave();
        reject(signal!.reason);
      };
      const waiter: Waiter = {
        resolve: (r) => {
          signal?.removeEventListener("abort", onAbort);
          resolve(r);
        },
        reject: (e) => {
          signal?.removeEventListener("abort", onAbort);
          reject(e);
        },
      };
      const leave = () => {
        flight.waiters.delete(waiter);
        if (flight.waiters.size > 0) return;
        // No one waits any more: a new caller must not join an aborted request.
        this.#land(flight);
        flight.controller.abort(new DOMException("every caller left", "AbortError"));
      };
      flight.waiters.add(waiter);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /**
   * Answers the calls a worker's `relayFetch` sends on `port`. Returns the function
   * that stops: the worker's calls in flight are left (aborted when no one else waits) and the
   * port is closed.
   */
  serve(port: MessagePort): () => void {
    const pending = new Map<number, AbortController>();
    const onMessage = (e: MessageEvent<string>) => {
      const m = decode<RelayCallMessage>(e.data);
      if (m?.t === "abort") {
        pending.get(m.id)?.abort(new DOMException("the caller aborted", "AbortError"));
        pending.delete(m.id);
        return;
      }
      if (m?.t !== "call") return;
      const controller = new AbortController();
      pending.set(m.id, controller);
      this.call(m.request, controller.signal).then(
        (response) => {
          if (pending.delete(m.id)) port.postMessage(encode({ t: "answer", id: m.id, response }));
        },
        (err) => {
          if (!pending.delete(m.id)) return;
          const e = err instanceof Error || err instanceof DOMException
            ? err
            : new Error(String(err));
          port.postMessage(encode({ t: "error", id: m.id, name: e.name, message: e.message }));
        },
      );
    };
    port.addEventListener("message", onMessage as EventListener);
    port.start();
    const stop = () => {
      if (!this.#ports.delete(stop)) return;
      port.removeEventListener("message", onMessage as EventListener);
      for (const c of pending.values()) c.abort(new DOMException("worker left", "AbortError"));
      pending.clear();
      port.close();
    };
    this.#ports.add(stop);
    return stop;
  }

  /** Stops serving every port and aborts every agent request in flight. */
  close(): void {
    this.#closed = true;
    this.#join.close();
    for (const stop of [...this.#ports]) stop();
    for (const f of [...this.#all]) {
      f.controller.abort(new DOMException("agent relay closed", "AbortError"));
    }
  }
}

/**
 * The key of an authorize call (`POST /v1/agent/connect/authorize`): URL, headers (the token)
 * and body; `undefined` for any other call.
 */
export function authorizeKey(request: RelayRequest): string | undefined {
  if (request.method.toUpperCase() !== "POST") return undefined;
  let url: URL;
  try {
    url = new URL(request.url);
  } catch {
    return undefined;
  }
  if (url.pathname !== "/v1/agent/connect/authorize") return undefined;
  return `POST ${url.href}\n${headerKey(request.headers)}\n${request.body ?? ""}`;
}

/** A transport's `Response` as a {@linkcode RelayResponse} (its body read). */
export async function toRelayResponse(response: Response): Promise<RelayResponse> {
  const body = await response.text();
  return {
    status: response.status,
    statusText: response.statusText,
    headers: [...response.headers].filter(([k]) => !TRANSFER_HEADERS.has(k.toLowerCase())),
    body,
  };
}

/** The request headers as part of a key: names lower-cased, sorted. */
function headerKey(headers: [string, string][]): string {
  return headers.map(([k, v]) => `${k.toLowerCase()}: ${v}`).sort().join("\n");
}

/** A `fetch` call's arguments as a {@linkcode RelayRequest}. */
export async function toRelayRequest(
  input: URL | Request | string,
  init?: RequestInit,
): Promise<RelayRequest> {
  if (input instanceof Request) {
    const req = init ? new Request(input, init) : input;
    return {
      method: req.method,
      url: req.url,
      headers: [...req.headers],
      body: req.body ? await req.text() : undefined,
    };
  }
  const body = init?.body;
  return {
    method: (init?.method ?? "GET").toUpperCase(),
    url: String(input),
    headers: [...new Headers(init?.headers)],
    body: body === undefined || body === null
      ? undefined
      : typeof body === "string"
      ? body
      : await new Response(body).text(),
  };
}

/** A {@linkcode RelayResponse} as a `Response`. */
export function toResponse(r: RelayResponse): Response {
  return new Response(NULL_BODY.has(r.status) ? null : r.body, {
    status: r.status,
    statusText: r.statusText,
    headers: r.headers,
  });
}
