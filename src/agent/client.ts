/**
 * {@linkcode AgentClient}: Consul's agent HTTP API on nothing but `fetch`, `URL`, `Headers` and
 * `AbortSignal`, so it runs on any runtime with fetch. Runtime-specific transport (agent TLS,
 * unix sockets) comes in through the `fetch` option.
 * @module
 */
import { deadline } from "../net/timers.ts";
import {
  type BlockingFetch,
  BlockingQuery,
  type BlockingQueryOptions,
  type BlockingStatus,
} from "./blocking.ts";
import {
  type AgentConfig,
  type AgentConnectionOptions,
  type Environment,
  resolveAgentConfig,
} from "./config.ts";
import {
  decodeAgentSelf,
  decodeAgentService,
  decodeAgentServices,
  decodeAny,
  decodeAuthorize,
  decodeChain,
  DecodeFailure,
  decodeIntentionMatch,
  decodeIntentions,
  decodeLeaf,
  decodePreparedQuery,
  type Decoder,
  decodeRoots,
  decodeServiceEntries,
} from "./decode.ts";
import { AgentDecodeError, AgentError, AgentNetworkError } from "./errors.ts";
import type {
  AgentSelf,
  AgentService,
  AuthorizeRequest,
  AuthorizeResult,
  CARootList,
  CompiledDiscoveryChain,
  Intention,
  LeafCert,
  PreparedQueryResult,
  ServiceEntry,
  ServiceRegistration,
} from "./types.ts";

/** Options of an {@linkcode AgentClient}. */
export interface AgentClientOptions extends AgentConnectionOptions {
  /** Environment to read `CONSUL_*` variables from. @default {{}} */
  env?: Environment;
  /**
   * The fetch to use; inject one bound to a runtime HTTP client for TLS or unix sockets. If it
   * has a `close()` method (a connection pool), {@linkcode AgentClient.close} calls it.
   */
  fetch?: typeof fetch & { close?: () => void };
  /**
   * Supplies the token for each request instead of `token`/`env` (e.g. one read from a file that
   * may change: `createDenoAgentClient` re-reads `tokenFile` this way). Must not throw.
   */
  tokenProvider?: () => string | undefined | Promise<string | undefined>;
  /**
   * Timeout of a non-blocking request in milliseconds.
   * @default {30000}
   */
  requestTimeoutMs?: number;
  /** Defaults for every blocking query the client creates. */
  watchDefaults?: Omit<BlockingQueryOptions<unknown>, "name" | "mode" | "equals">;
  /**
   * Adds `stale` to every read the Consul servers answer (everything but `/v1/agent/…`), so any
   * server, not only the leader, may answer it (the Consul CLI's `-stale`).
   * @default {false}
   */
  stale?: boolean;
}

/** Per-request options. */
export interface RequestOptions {
  /** Aborts the request. */
  signal?: AbortSignal;
  /** Overrides the client's request timeout. */
  timeoutMs?: number;
}

/** Options of a blocking read. */
export interface BlockingReadOptions extends RequestOptions {
  /** Block until the index exceeds this. */
  index?: bigint;
  /** How long the agent may block, in ms. */
  waitMs?: number;
}

/** A decoded answer with the metadata a watch needs. */
export interface AgentResponse<T> {
  /** The decoded body. */
  value: T;
  /** `X-Consul-Index`, when sent. */
  index?: bigint;
  /** `X-Consul-ContentHash`, when sent. */
  hash?: string;
  /**
   * `X-Consul-Results-Filtered-By-ACLs: true`: the agent left out what the token may not read
   * (with ACLs on, a list the token can see none of answers `[]` with this, not a 403).
   */
  resultsFilteredByAcls?: boolean;
  /** All response headers. */
  headers: Headers;
}

/** Whether the agent has been answering; see {@linkcode AgentClient.reachability}. */
export interface AgentReachability {
  /** `Date.now()` of the last HTTP answer, whatever its status. */
  lastAnswerAt?: number;
  /** `Date.now()` of the last request that got no answer (network error or timeout). */
  lastFailureAt?: number;
  /** What went wrong then. */
  lastFailure?: string;
}

/** Query parameters: `true` sends a bare flag, `false`/`undefined` nothing, arrays repeat. */
export type AgentQuery = Record<string, string | number | boolean | undefined | string[]>;

/** One request: method, path, query, body and how to decode the answer. */
export interface AgentCall<T> {
  /** HTTP method. */
  method: "GET" | "PUT" | "POST" | "DELETE";
  /** Path below the agent's base URL, e.g. `/v1/agent/self`. */
  path: string;
  /** Query parameters. */
  query?: AgentQuery;
  /** JSON body. */
  body?: unknown;
  /** Checks and types the answer. */
  decode: Decoder<T>;
  /** A 404 on this call means "none", not an error. */
  allow404?: boolean;
}

function formatWait(ms: number): string {
  return `${Math.ceil(ms)}ms`;
}

/**
 * The Consul agent HTTP client. One typed method per endpoint a Connect proxy uses, plus
 * `watch*` methods that return shared {@linkcode BlockingQuery} objects. Operator-only writes
 * (CA configuration, intention CRUD, config entries, prepared-query CRUD) are
 * `OperatorClient`'s (`./operator.ts`), built on this client.
 *
 * @example
 * ```ts
 * import { AgentClient } from "@meshgate/meshgate/agent";
 * import { startDevAgent } from "@meshgate/meshgate/devagent";
 *
 * await using dev = await startDevAgent(); // the Consul test double; any agent will do
 * await using agent = new AgentClient({ address: dev.address });
 * const { value: roots } = await agent.roots();
 * console.log(roots.TrustDomain);
 * const ok = await agent.authorize({
 *   Target: "db",
 *   ClientCertURI: `spiffe://${roots.TrustDomain}/ns/default/dc/dc1/svc/web`,
 * });
 * console.log(ok.Authorized, ok.Reason);
 * ```
 */
export class AgentClient {
  /** The resolved connection settings (never contains the token). */
  readonly config: AgentConfig;
  readonly #token?: string;
  readonly #tokenProvider?: () => string | undefined | Promise<string | undefined>;
  readonly #fetch: typeof fetch & { close?: () => void };
  readonly #timeoutMs: number;
  readonly #watchDefaults: AgentClientOptions["watchDefaults"];
  readonly #stale: boolean;
  readonly #watches = new Map<string, BlockingQuery<unknown>>();
  #reach: AgentReachability = {};

  /**
   * Creates a client; nothing is sent until a method is called.
   * @param options address, token, transport and defaults
   */
  constructor(options: AgentClientOptions = {}) {
    const { config, token } = resolveAgentConfig(options, options.env ?? {});
    this.config = config;
    this.#token = token;
    this.#tokenProvider = options.tokenProvider;
    this.#fetch = options.fetch ?? ((input, init) => fetch(input, init));
    this.#timeoutMs = options.requestTimeoutMs ?? 30_000;
    this.#watchDefaults = options.watchDefaults;
    this.#stale = options.stale ?? false;
  }

  /** Whether a token is configured (the token itself is never exposed). */
  get hasToken(): boolean {
    return this.#token !== undefined || this.#tokenProvider !== undefined;
  }

  /** Keeps the token out of `console.log` and `Deno.inspect`. */
  [Symbol.for("Deno.customInspect")](): string {
    return `AgentClient(${this.config.baseUrl}${this.hasToken ? ", token: <redacted>" : ""})`;
  }

  /** Keeps the token out of `JSON.stringify`. */
  toJSON(): AgentConfig {
    return this.config;
  }

  /**
   * Performs one request and decodes the answer. Low level: prefer the typed methods.
   * @throws {AgentError} on an HTTP error status
   * @throws {AgentNetworkError} when the agent cannot be reached or the request times out
   * @throws {AgentDecodeError} when the body is not what the endpoint promises
   */
  async request<T>(
    call: AgentCall<T>,
    options: RequestOptions & { blockMs?: number } = {},
  ): Promise<AgentResponse<T>> {
    const endpoint = `${call.method} ${call.path}`;
    const url = new URL(call.path, this.config.baseUrl);
    const query: AgentQuery = { ...call.query };
    if (this.config.namespace) query.ns = this.config.namespace;
    if (this.config.partition) query.partition = this.config.partition;
    // As Consul's Go client: the configured datacenter unless the call names its own.
    if (this.config.datacenter && !query.dc) query.dc = this.config.datacenter;
    if (this.#stale && call.method === "GET" && !call.path.startsWith("/v1/agent/")) {
      query.stale = true;
    }
    for (const [k, v] of Object.entries(query)) {
      if (v === undefined || v === false) continue;
      for (const item of Array.isArray(v) ? v : [v]) {
        url.searchParams.append(k, v === true ? "" : String(item));
      }
    }
    const headers = new Headers({ Accept: "application/json" });
    const token = this.#tokenProvider ? await this.#tokenProvider() : this.#token;
    if (token) headers.set("X-Consul-Token", token);
    let body: string | undefined;
    if (call.body !== undefined) {
      headers.set("Content-Type", "application/json");
      body = JSON.stringify(call.body);
    }
    // A blocking request may be held for wait + wait/16 (Consul's jitter); allow that plus slack.
    const timeoutMs = options.timeoutMs ??
      (options.blockMs ? options.blockMs + options.blockMs / 16 + 10_000 : this.#timeoutMs);
    const timer = deadline(timeoutMs, options.signal);
    let response: Response;
    let text: string;
    try {
      response = await this.#fetch(url, {
        method: call.method,
        headers,
        body,
        signal: timer.signal,
      });
      text = await response.text();
      this.#reach = { ...this.#reach, lastAnswerAt: Date.now() };
    } catch (err) {
      if (options.signal?.aborted) throw options.signal.reason ?? err;
      const detail = timer.timedOut()
        ? `no answer within ${timeoutMs} ms`
        : (err instanceof Error ? err.message : String(err));
      this.#reach = { ...this.#reach, lastFailureAt: Date.now(), lastFailure: detail };
      throw new AgentNetworkError(endpoint, detail, { cause: err });
    } finally {
      timer.clear();
    }
    if (!response.ok) {
      if (response.status === 404 && call.allow404) {
        return { value: undefined as T, headers: response.headers };
      }
      throw new AgentError(endpoint, response.status, text.slice(0, 2000));
    }
    let value: T;
    try {
      const json = text === "" ? null : JSON.parse(text);
      value = call.decode(json);
    } catch (err) {
      const detail = err instanceof DecodeFailure
        ? err.detail
        : `invalid JSON (${(err as Error).message})`;
      throw new AgentDecodeError(endpoint, detail, { cause: err });
    }
    const indexHeader = response.headers.get("X-Consul-Index");
    let index: bigint | undefined;
    if (indexHeader !== null) {
      try {
        index = BigInt(indexHeader);
      } catch {
        throw new AgentDecodeError(endpoint, `X-Consul-Index "${indexHeader}" is not a number`);
      }
    }
    return {
      value,
      index,
      hash: response.headers.get("X-Consul-ContentHash") ?? undefined,
      ...(response.headers.get("X-Consul-Results-Filtered-By-ACLs") === "true"
        ? { resultsFilteredByAcls: true }
        : {}),
      headers: response.headers,
    };
  }

  #blocking<T>(call: AgentCall<T>, opts: BlockingReadOptions = {}): Promise<AgentResponse<T>> {
    const blocking = opts.index !== undefined && opts.index > 0n;
    const query: AgentQuery = { ...call.query };
    if (blocking) query.index = opts.index!.toString();
    if (opts.waitMs !== undefined) query.wait = formatWait(opts.waitMs);
    return this.request({ ...call, query }, {
      ...opts,
      blockMs: blocking ? opts.waitMs ?? 300_000 : undefined,
    });
  }

  // ---- CA --------------------------------------------------------------------------------

  /** `GET /v1/agent/connect/ca/roots`: the trusted roots (blocking by index). */
  roots(opts?: BlockingReadOptions): Promise<AgentResponse<CARootList>> {
    return this.#blocking({
      method: "GET",
      path: "/v1/agent/connect/ca/roots",
      decode: decodeRoots,
    }, opts);
  }

  /** `GET /v1/agent/connect/ca/leaf/:service`: the leaf for a service **name** (blocking). */
  leaf(service: string, opts?: BlockingReadOptions): Promise<AgentResponse<LeafCert>> {
    return this.#blocking({
      method: "GET",
      path: `/v1/agent/connect/ca/leaf/${encodeURIComponent(service)}`,
      decode: decodeLeaf,
    }, opts);
  }

  // ---- authorization ---------------------------------------------------------------------

  /** `POST /v1/agent/connect/authorize`. A denial is a result, not an error. */
  async authorize(req: AuthorizeRequest, opts?: RequestOptions): Promise<AuthorizeResult> {
    return (await this.request({
      method: "POST",
      path: "/v1/agent/connect/authorize",
      body: req,
      decode: decodeAuthorize,
    }, opts)).value;
  }

  // ---- services --------------------------------------------------------------------------

  /** `GET /v1/agent/service/:id` (blocking by hash). */
  service(
    id: string,
    opts: RequestOptions & { hash?: string; waitMs?: number } = {},
  ): Promise<AgentResponse<AgentService>> {
    return this.request({
      method: "GET",
      path: `/v1/agent/service/${encodeURIComponent(id)}`,
      query: {
        hash: opts.hash,
        wait: opts.hash && opts.waitMs !== undefined ? formatWait(opts.waitMs) : undefined,
      },
      decode: decodeAgentService,
    }, { ...opts, blockMs: opts.hash ? opts.waitMs ?? 300_000 : undefined });
  }

  /** `GET /v1/agent/services`, optionally with a `filter` expression. */
  async services(
    opts: RequestOptions & { filter?: string } = {},
  ): Promise<Record<string, AgentService>> {
    return (await this.request({
      method: "GET",
      path: "/v1/agent/services",
      query: { filter: opts.filter },
      decode: decodeAgentServices,
    }, opts)).value;
  }

  /** `PUT /v1/agent/service/register`. */
  async register(
    registration: ServiceRegistration,
    opts: RequestOptions & { replaceExistingChecks?: boolean } = {},
  ): Promise<void> {
    await this.request({
      method: "PUT",
      path: "/v1/agent/service/register",
      query: { "replace-existing-checks": opts.replaceExistingChecks },
      body: registration,
      decode: decodeAny,
    }, opts);
  }

  /** `PUT /v1/agent/service/deregister/:id`. */
  async deregister(serviceId: string, opts?: RequestOptions): Promise<void> {
    await this.request({
      method: "PUT",
      path: `/v1/agent/service/deregister/${encodeURIComponent(serviceId)}`,
      decode: decodeAny,
    }, opts);
  }

  /** `PUT /v1/agent/check/{pass,warn,fail}/:id` with an optional note. */
  async setCheck(
    checkId: string,
    status: "pass" | "warn" | "fail",
    opts: RequestOptions & { note?: string } = {},
  ): Promise<void> {
    await this.request({
      method: "PUT",
      path: `/v1/agent/check/${status}/${encodeURIComponent(checkId)}`,
      query: { note: opts.note },
      decode: decodeAny,
    }, opts);
  }

  /** `PUT /v1/agent/check/update/:id`. */
  async updateCheck(
    checkId: string,
    update: { Status: "passing" | "warning" | "critical"; Output?: string },
    opts?: RequestOptions,
  ): Promise<void> {
    await this.request({
      method: "PUT",
      path: `/v1/agent/check/update/${encodeURIComponent(checkId)}`,
      body: update,
      decode: decodeAny,
    }, opts);
  }

  /** `GET /v1/agent/self`. */
  async self(opts?: RequestOptions): Promise<AgentSelf> {
    return (await this.request({
      method: "GET",
      path: "/v1/agent/self",
      decode: decodeAgentSelf,
    }, opts)).value;
  }

  // ---- discovery -------------------------------------------------------------------------

  /** `GET /v1/discovery-chain/:service`: the compiled chain (blocking by index). */
  discoveryChain(
    service: string,
    opts: BlockingReadOptions & { compileDc?: string } = {},
  ): Promise<AgentResponse<CompiledDiscoveryChain>> {
    return this.#blocking({
      method: "GET",
      path: `/v1/discovery-chain/${encodeURIComponent(service)}`,
      query: { "compile-dc": opts.compileDc },
      decode: decodeChain,
    }, opts);
  }

  /**
   * `GET /v1/health/connect/:service`: mesh endpoints of a service (blocking by index).
   * `filter` is a Consul filter expression (a service-resolver subset's `Filter`).
   */
  healthConnect(
    service: string,
    opts: BlockingReadOptions & {
      passing?: boolean;
      dc?: string;
      tags?: string[];
      filter?: string;
    } = {},
  ): Promise<AgentResponse<ServiceEntry[]>> {
    return this.#blocking({
      method: "GET",
      path: `/v1/health/connect/${encodeURIComponent(service)}`,
      query: {
        passing: opts.passing,
        dc: opts.dc,
        tag: opts.tags,
        filter: opts.filter || undefined,
      },
      decode: decodeServiceEntries,
    }, opts);
  }

  /** `GET /v1/query/:name/execute?connect=true`: a prepared query's mesh endpoints. */
  async preparedQuery(
    name: string,
    opts: RequestOptions & { dc?: string } = {},
  ): Promise<PreparedQueryResult> {
    return (await this.request({
      method: "GET",
      path: `/v1/query/${encodeURIComponent(name)}/execute`,
      query: { connect: "true", dc: opts.dc },
      decode: decodePreparedQuery,
    }, opts)).value;
  }

  // ---- intentions (reads; writes are OperatorClient's) ----------------------------------

  /** `GET /v1/connect/intentions` (blocking by index), optionally filtered. */
  intentions(
    opts: BlockingReadOptions & { filter?: string } = {},
  ): Promise<AgentResponse<Intention[]>> {
    return this.#blocking({
      method: "GET",
      path: "/v1/connect/intentions",
      query: { filter: opts.filter },
      decode: decodeIntentions,
    }, opts);
  }

  /**
   * `GET /v1/connect/intentions/match?by=…&name=…` (blocking by index): the intentions that
   * apply to a destination (or a source), in the order authorize evaluates them.
   */
  async intentionMatch(
    by: "destination" | "source",
    name: string,
    opts: BlockingReadOptions = {},
  ): Promise<AgentResponse<Intention[]>> {
    const res = await this.#blocking({
      method: "GET",
      path: "/v1/connect/intentions/match",
      query: { by, name },
      decode: decodeIntentionMatch,
    }, opts);
    return { ...res, value: res.value[name] ?? [] };
  }

  // ---- watches ---------------------------------------------------------------------------

  /**
   * A shared blocking query: calls with the same `key` get the same query object, so several
   * consumers of one resource cost one request loop.
   */
  watch<T>(
    key: string,
    fetch: BlockingFetch<T>,
    options: BlockingQueryOptions<T> = {},
  ): BlockingQuery<T> {
    const existing = this.#watches.get(key);
    if (existing) return existing as BlockingQuery<T>;
    const query: BlockingQuery<T> = new BlockingQuery(
      fetch,
      { ...this.#watchDefaults, name: key, ...options } as BlockingQueryOptions<T>,
      () => {
        if (this.#watches.get(key) === query) this.#watches.delete(key);
      },
    );
    this.#watches.set(key, query as BlockingQuery<unknown>);
    return query;
  }

  /** Watches the CA roots. */
  watchRoots(options?: BlockingQueryOptions<CARootList>): BlockingQuery<CARootList> {
    return this.watch("roots", (p) => this.roots(p), options);
  }

  /** Watches the leaf certificate of a service name. */
  watchLeaf(service: string, options?: BlockingQueryOptions<LeafCert>): BlockingQuery<LeafCert> {
    return this.watch(`leaf:${service}`, (p) => this.leaf(service, p), options);
  }

  /** Watches a local service registration by hash. */
  watchService(
    id: string,
    options?: BlockingQueryOptions<AgentService>,
  ): BlockingQuery<AgentService> {
    return this.watch(
      `service:${id}`,
      (p) => this.service(id, { hash: p.hash, waitMs: p.waitMs, signal: p.signal }),
      { ...options, mode: "hash" },
    );
  }

  /**
   * Watches a compiled discovery chain, compiled for `compileDc` (default: the agent's
   * datacenter).
   */
  watchDiscoveryChain(
    service: string,
    opts: { compileDc?: string } = {},
    options?: BlockingQueryOptions<CompiledDiscoveryChain>,
  ): BlockingQuery<CompiledDiscoveryChain> {
    const compileDc = opts.compileDc || undefined;
    return this.watch(
      `chain:${service}${compileDc ? `:${compileDc}` : ""}`,
      (p) => this.discoveryChain(service, { ...p, compileDc }),
      options,
    );
  }

  /**
   * Watches the mesh endpoints of a service (`passing` only by default), in `dc` (default: the
   * agent's), narrowed by a Consul `filter` expression.
   */
  watchHealthConnect(
    service: string,
    opts: { passing?: boolean; dc?: string; filter?: string } = {},
    options?: BlockingQueryOptions<ServiceEntry[]>,
  ): BlockingQuery<ServiceEntry[]> {
    const passing = opts.passing ?? true;
    const filter = opts.filter || undefined;
    return this.watch(
      `health:${service}:${opts.dc ?? ""}:${passing}${filter ? `:${filter}` : ""}`,
      (p) => this.healthConnect(service, { ...p, passing, dc: opts.dc, filter }),
      options,
    );
  }

  /** Watches the intentions list, optionally filtered. */
  watchIntentions(
    filter?: string,
    options?: BlockingQueryOptions<Intention[]>,
  ): BlockingQuery<Intention[]> {
    return this.watch(
      `intentions:${filter ?? ""}`,
      (p) => this.intentions({ ...p, filter }),
      options,
    );
  }

  /** Watches the intentions that apply to connections to `destination`. */
  watchIntentionMatch(
    destination: string,
    options?: BlockingQueryOptions<Intention[]>,
  ): BlockingQuery<Intention[]> {
    return this.watch(
      `intention-match:${destination}`,
      (p) => this.intentionMatch("destination", destination, p),
      options,
    );
  }

  /** Every live watch of this client, by key, with the health of its request loop. */
  get watches(): { key: string; status: BlockingStatus }[] {
    return [...this.#watches].map(([key, q]) => ({ key, status: q.status }));
  }

  /** When the agent last answered (any HTTP status) and when a request last got no answer. */
  get reachability(): AgentReachability {
    return { ...this.#reach };
  }

  /** Stops every watch this client created and closes the injected fetch's pool, if any. */
  async close(): Promise<void> {
    await Promise.all([...this.#watches.values()].map((w) => w.close()));
    this.#watches.clear();
    this.#fetch.close?.();
  }

  /** Same as {@linkcode AgentClient.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
