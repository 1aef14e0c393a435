/**
 * Connecting to one upstream: its endpoints in the order to try them (per chain target, round
 * robin, recently failed ones last; failover targets after the primary), each dialled over
 * mTLS with identity verification until one answers. Shared by upstream listeners (sidecar)
 * and Connect-native clients.
 * @module
 */
import type tls from "node:tls";
import type { AgentClient } from "../agent/client.ts";
import type { ConnectionEvent, Refusal } from "../events/connection.ts";
import { type Logger, silentLogger } from "../net/log.ts";
import type { TlsMaterial } from "../trust/material.ts";
import { parseSpiffeId } from "../trust/spiffe.ts";
import { type DialFailure, dialMesh, type MeshConnection, type MeshEndpoint } from "./dialer.ts";
import { dialMeshNative } from "./native_tls.ts";
import { endpointsOf, UpstreamResolver } from "./resolver.ts";

/** Which upstream to reach. */
export interface UpstreamTarget {
  /** `service` or `prepared_query`. */
  type: "service" | "prepared_query";
  /** Service or query name. */
  name: string;
  /** Datacenter; empty for the local one. */
  datacenter?: string;
  /**
   * Overrides the chain's `ConnectTimeout` (upstream `Config.connect_timeout_ms`). Also bounds
   * how long a new connection waits for the chain and endpoints (5 s when neither is known).
   */
  connectTimeoutMs?: number;
}

/**
 * Why a connection to an upstream could not be made: `no_endpoint` (the agent says nothing healthy
 * is there), `chain_unavailable` (no discovery chain from the agent within the connect timeout:
 * it refuses, e.g. 403, or is down), `endpoints_unavailable` (the chain is known but no endpoint
 * list of its targets came within the connect timeout), `upstream_unreachable` (every endpoint
 * failed), `leaf_expired` (our certificate expired; no dial until it is renewed), `bad_chain` /
 * `bad_identity` (every endpoint tried failed that check of its certificate).
 */
export type UpstreamConnectReason =
  | "no_endpoint"
  | "chain_unavailable"
  | "endpoints_unavailable"
  | "upstream_unreachable"
  | "leaf_expired"
  | "bad_chain"
  | "bad_identity";

/** A refused connection to an upstream: a {@linkcode Refusal} with the connector's reasons. */
export interface UpstreamRefusal extends Refusal {
  /** See {@linkcode UpstreamConnectReason}. */
  reason: UpstreamConnectReason;
}

/**
 * A connection could not be made: nothing to try, the agent did not say where in time, or
 * every endpoint failed. The data path passes refusals as values; the Connect-native API
 * (`ConnectService.dial`, mesh `fetch`) throws this for its callers.
 *
 * @example
 * ```ts
 * import { UpstreamConnectError } from "@meshgate/meshgate/native";
 * const err = new UpstreamConnectError("no_endpoint", "no healthy instances of db");
 * console.log(err.reason); // "no_endpoint"
 * ```
 */
export class UpstreamConnectError extends Error {
  /**
   * Creates the error.
   * @param reason see {@linkcode UpstreamConnectReason}
   * @param detail what happened
   */
  constructor(reason: UpstreamConnectReason, detail: string) {
    super(detail);
    this.name = "UpstreamConnectError";
    this.reason = reason;
  }
  /** Why. */
  readonly reason: UpstreamConnectReason;
}

/** A verified mesh connection to one endpoint of an upstream. */
export interface UpstreamConnection extends MeshConnection<tls.TLSSocket> {
  /** The endpoint reached. */
  endpoint: MeshEndpoint;
  /** Milliseconds from the first dial of this endpoint to verified. */
  connectMs: number;
}

/** One endpoint to dial, and how long its dial may take. */
export interface Candidate {
  /** The endpoint. */
  endpoint: MeshEndpoint;
  /** The connect timeout of its chain target (or the upstream's own). */
  timeoutMs: number;
}

/** The outcome of {@linkcode UpstreamConnector.pick}: endpoints to try in order, or why none. */
export type PickResult =
  | { ok: true; candidates: [Candidate, ...Candidate[]] }
  | { ok: false; refusal: UpstreamRefusal };

/** The outcome of {@linkcode UpstreamConnector.dial}: one endpoint dialled and verified, or not. */
export type EndpointDialResult =
  | { ok: true; connection: UpstreamConnection }
  | { ok: false; failure: DialFailure };

/** A verified native mesh connection to one endpoint of an upstream. */
export interface NativeUpstreamConnection {
  /** The connection; nothing has been read from it or written to it yet. */
  conn: Deno.TlsConn;
  /** The endpoint reached. */
  endpoint: MeshEndpoint;
  /** Milliseconds from the first dial of this endpoint to verified. */
  connectMs: number;
  /** Call once `conn` is closed: the endpoint's open count goes down (once, however often). */
  done: () => void;
}

/**
 * The outcome of {@linkcode UpstreamConnector.dialNative}: a native connection, a `node:tls`
 * one (where the native leg fell back), or why there is none.
 */
export type NativeEndpointDialResult =
  | { ok: true; connection: NativeUpstreamConnection | UpstreamConnection }
  | { ok: false; failure: DialFailure };

/** The outcome of {@linkcode UpstreamConnector.connect}. */
export type ConnectResult =
  | { ok: true; connection: UpstreamConnection }
  | { ok: false; refusal: UpstreamRefusal };

/**
 * The refusal once every endpoint tried failed: `bad_chain` or `bad_identity` when they all
 * failed that same check of their certificate, else `upstream_unreachable`; the detail is the
 * last failure (`cancelled` when none was tried).
 *
 * @example
 * ```ts
 * import { refusalAfterDials } from "./connector.ts";
 * const refusal = refusalAfterDials([
 *   { reason: "bad_identity", detail: "peer certificate mismatch got …/svc/api, want service db" },
 * ]);
 * console.log(refusal.reason); // "bad_identity"
 * ```
 */
export function refusalAfterDials(failures: readonly DialFailure[]): UpstreamRefusal {
  const reasons = new Set(failures.map((f) => f.reason));
  const [only] = reasons;
  const last = failures.at(-1);
  return {
    reason: reasons.size === 1 && (only === "bad_chain" || only === "bad_identity")
      ? only
      : "upstream_unreachable",
    detail: last ? `${last.reason}: ${last.detail}` : "cancelled",
  };
}

/** How an upstream picks among the healthy endpoints of a target. */
export type LoadBalancingPolicy = "round_robin" | "least_connections";

/** What the connector knows of one endpoint's recent dials. */
export interface EndpointHealth {
  /** Consecutive failed dials (0 after a success). */
  consecutiveFailures: number;
  /** How many times it has been ejected (reset by a success). */
  ejections: number;
  /** `Date.now()` until which it is left out, while ejected. */
  ejectedUntil?: number;
  /** The last dial error and when, while the last dial failed. */
  lastError?: string;
  /** `Date.now()` of that error. */
  lastErrorAt?: number;
  /** Open connections through this connector. */
  active: number;
}

/**
 * The listener name of an upstream in events, metrics and the admin app: `upstream:<name>` in
 * the local datacenter (the name every dashboard already knows), `upstream:<name>@<dc>` when the
 * upstream names another, so two upstreams of one service in two datacenters (each with its own
 * local port) never share a Prometheus series. An upstream whose datacenter is set while the
 * local one is not known yet is named with it.
 *
 * @example
 * ```ts
 * import { upstreamListenerName } from "./connector.ts";
 * upstreamListenerName({ name: "db" }); // "upstream:db"
 * upstreamListenerName({ name: "db", datacenter: "dc1" }, "dc1"); // "upstream:db"
 * upstreamListenerName({ name: "db", datacenter: "dc2" }, "dc1"); // "upstream:db@dc2"
 * ```
 *
 * @param upstream the upstream's name and datacenter (empty for the local one)
 * @param localDatacenter the agent's datacenter, when known
 * @returns the listener name
 */
export function upstreamListenerName(
  upstream: { name: string; datacenter?: string },
  localDatacenter?: string,
): string {
  const dc = upstream.datacenter;
  return dc && dc !== localDatacenter
    ? `upstream:${upstream.name}@${dc}`
    : `upstream:${upstream.name}`;
}

/** Options of {@linkcode UpstreamConnector}. */
export interface UpstreamConnectorOptions {
  /** The agent, for chain, health and prepared-query reads. */
  agent: AgentClient;
  /** The live leaf and roots. */
  material: TlsMaterial;
  /** The upstream. */
  upstream: UpstreamTarget;
  /**
   * The agent's datacenter, whose targets are asked for without `dc`. Default: the one our
   * leaf names, else learnt from the chain.
   */
  localDatacenter?: string;
  /**
   * Events go out with this listener name. Default: `upstream:<name>`, and
   * `upstream:<name>@<dc>` for an upstream in another datacenter (see
   * {@linkcode upstreamListenerName}).
   */
  listener?: string;
  /** How long a failed endpoint goes to the back of the line. @default {10000} */
  failureCooldownMs?: number;
  /** `round_robin` (weighted by Consul's `Weights`) or `least_connections`. @default {"round_robin"} */
  policy?: LoadBalancingPolicy;
  /**
   * Passive outlier ejection: after this many consecutive failed dials an endpoint is left
   * out for `ejectionBaseMs`, doubling each time it is ejected again (at most 5 minutes); 0 = off.
   * @default {3}
   */
  ejectAfterFailures?: number;
  /** First ejection period. @default {10000} */
  ejectionBaseMs?: number;
  /** Log sink. */
  log?: Logger;
  /** `dial_failed` events. */
  onEvent?: (event: ConnectionEvent) => void;
  /** Called when a chain target's healthy endpoints change. */
  onEndpoints?: (change: { upstream: string; target: string; endpoints: string[] }) => void;
}

/**
 * Connects to an upstream, watching its chain and endpoints while it lives. Failures are
 * values: {@linkcode UpstreamConnector.pick} says which endpoints to try (or why none),
 * {@linkcode UpstreamConnector.dial} dials one, {@linkcode UpstreamConnector.connect} does both.
 *
 * @example
 * ```ts
 * import { AgentClient, TlsMaterial } from "@meshgate/meshgate";
 * import { startDevAgent } from "@meshgate/meshgate/devagent";
 * import { UpstreamConnector } from "./connector.ts";
 *
 * await using dev = await startDevAgent(); // the Consul test double; any agent will do
 * await using agent = new AgentClient({ address: dev.address });
 * const material = new TlsMaterial(); // web's leaf and the roots (a proxy watches both)
 * await material.setRoots((await agent.roots()).value);
 * await material.setLeaf((await agent.leaf("web")).value);
 * const db = new UpstreamConnector({ agent, material, upstream: { type: "service", name: "db" } });
 * const connected = await db.connect(AbortSignal.timeout(5000));
 * if (connected.ok) console.log(`connected to ${connected.connection.endpoint.id}`);
 * else console.log(`refused: ${connected.refusal.reason}: ${connected.refusal.detail}`);
 * await db.close();
 * ```
 */
export class UpstreamConnector {
  /** The chain and endpoints (service upstreams). */
  readonly resolver?: UpstreamResolver;
  readonly #o: UpstreamConnectorOptions;
  readonly #health = new Map<string, EndpointHealth>();
  /** Smooth weighted round robin state, per endpoint. */
  readonly #current = new Map<string, number>();
  readonly #log: Logger;
  #listenerName?: string;

  /** Starts watching the upstream's chain and endpoints (service upstreams). */
  constructor(options: UpstreamConnectorOptions) {
    this.#o = options;
    const up = options.upstream;
    this.#log = options.log ?? silentLogger;
    if (up.type === "service") {
      this.resolver = new UpstreamResolver(options.agent, up.name, {
        datacenter: up.datacenter,
        localDatacenter: options.localDatacenter ?? leafDatacenter(options.material),
        log: this.#log,
        onEndpoints: (t) =>
          options.onEndpoints?.({
            upstream: up.name,
            target: t.id,
            endpoints: t.endpoints.map((e) => `${e.address}:${e.port}`),
          }),
      });
    }
  }

  /**
   * The listener name its events carry: `listener` if given, else
   * {@linkcode upstreamListenerName} with the local datacenter (from `localDatacenter` or our
   * leaf), settled once that is known.
   */
  get listenerName(): string {
    if (this.#o.listener) return this.#o.listener;
    if (this.#listenerName) return this.#listenerName;
    const up = this.#o.upstream;
    const local = up.datacenter
      ? this.#o.localDatacenter ?? leafDatacenter(this.#o.material)
      : undefined;
    const name = upstreamListenerName(up, local);
    if (!up.datacenter || local) this.#listenerName = name;
    return name;
  }

  /** Endpoints whose last dial failed (cleared by a success), by endpoint ID. */
  get endpointFailures(): ReadonlyMap<string, { at: number; error: string }> {
    const out = new Map<string, { at: number; error: string }>();
    for (const [id, h] of this.#health) {
      if (h.lastError !== undefined) out.set(id, { at: h.lastErrorAt!, error: h.lastError });
    }
    return out;
  }

  /** Dial health of every endpoint tried so far, by endpoint ID. */
  get endpointHealth(): ReadonlyMap<string, Readonly<EndpointHealth>> {
    return this.#health;
  }

  #healthOf(id: string): EndpointHealth {
    let h = this.#health.get(id);
    if (!h) this.#health.set(id, h = { consecutiveFailures: 0, ejections: 0, active: 0 });
    return h;
  }

  /**
   * Orders one target's endpoints: ejected ones left out (unless all are — then they are all
   * tried, as Envoy's panic threshold does), then by policy: least connections, or smooth
   * weighted round robin (nginx's algorithm) over Consul's weights; recently failed ones last.
   */
  #order(endpoints: readonly MeshEndpoint[]): MeshEndpoint[] {
    const now = Date.now();
    const cooldown = this.#o.failureCooldownMs ?? 10_000;
    const live = endpoints.filter((e) => (this.#health.get(e.id)?.ejectedUntil ?? 0) <= now);
    const pool = live.length ? live : [...endpoints];
    let ordered: MeshEndpoint[];
    // The upstream's own Config.lb_policy wins over the service-resolver's LoadBalancer.
    if ((this.#o.policy ?? this.resolver?.policy) === "least_connections") {
      ordered = [...pool].sort((a, b) =>
        (this.#health.get(a.id)?.active ?? 0) / (a.weight || 1) -
        (this.#health.get(b.id)?.active ?? 0) / (b.weight || 1)
      );
    } else {
      // Smooth weighted round robin: each pick adds every weight to its counter, the largest
      // counter wins and gives back the total. Weight 0 is never picked first.
      const total = pool.reduce((a, e) => a + (e.weight ?? 1), 0);
      let best: MeshEndpoint | undefined;
      for (const e of pool) {
        const c = (this.#current.get(e.id) ?? 0) + (e.weight ?? 1);
        this.#current.set(e.id, c);
        if (!best || c > this.#current.get(best.id)!) best = e;
      }
      if (best) this.#current.set(best.id, this.#current.get(best.id)! - total);
      ordered = best ? [best, ...pool.filter((e) => e !== best)] : [];
    }
    const recent = (e: MeshEndpoint) =>
      now - (this.#health.get(e.id)?.lastErrorAt ?? 0) <= cooldown;
    return [...ordered.filter((e) => !recent(e)), ...ordered.filter(recent)];
  }

  /** The upstream it connects to. */
  get upstream(): UpstreamTarget {
    return this.#o.upstream;
  }

  /**
   * Pick: the endpoints to try, in order — per chain target, by policy, ejected ones left out,
   * recently failed last, failover targets after the primary — or why there are none. Waits
   * for the chain and the endpoint lists it needs at most the connect timeout, never longer
   * (issue #14: an agent that refuses or is down must not hold clients forever); `signal`
   * ends the wait early. No dial while our leaf is expired.
   */
  async pick(signal?: AbortSignal): Promise<PickResult> {
    const up = this.#o.upstream;
    if (this.#o.material.leafExpired) {
      return refused(
        "leaf_expired",
        `our leaf certificate expired at ${this.#o.material.leaf?.cert.ValidBefore}`,
      );
    }
    let candidates: Candidate[];
    if (this.resolver) {
      const listed = await this.#chainCandidates(this.resolver, signal);
      if (!listed.ok) return listed;
      candidates = listed.candidates;
    } else {
      try {
        const result = await this.#o.agent.preparedQuery(up.name, { dc: up.datacenter, signal });
        const endpoints = endpointsOf(result.Nodes).map((e) => ({ ...e, target: up.name }));
        const timeoutMs = up.connectTimeoutMs ?? 5000;
        candidates = this.#order(endpoints).map((endpoint) => ({ endpoint, timeoutMs }));
      } catch (err) {
        return refused("no_endpoint", err instanceof Error ? err.message : String(err));
      }
    }
    const [first, ...rest] = candidates;
    if (first) return { ok: true, candidates: [first, ...rest] };
    // With ACLs on, "none" may only mean "none this token may see": say so.
    const hidden = [...this.resolver?.targets.values() ?? []]
      .flatMap((t) => t.endpoints.length === 0 && t.aclWarning ? [t.aclWarning] : []);
    return refused(
      "no_endpoint",
      `no healthy instances of ${up.name}` + (hidden.length ? ` (${hidden.join("; ")})` : ""),
    );
  }

  /** A chain's candidates: its picked route's targets in failover order, once known. */
  async #chainCandidates(
    resolver: UpstreamResolver,
    signal?: AbortSignal,
  ): Promise<{ ok: true; candidates: Candidate[] } | { ok: false; refusal: UpstreamRefusal }> {
    const up = this.#o.upstream;
    const started = Date.now();
    const left = (timeoutMs: number) => started + timeoutMs - Date.now();
    const chainTimeoutMs = up.connectTimeoutMs ?? 5000;
    if (!await resolver.waitFor(() => resolver.isChainKnown, left(chainTimeoutMs), signal)) {
      const why = resolver.chainError;
      return refused(
        "chain_unavailable",
        `no discovery chain for ${up.name} from the agent within ${chainTimeoutMs} ms` +
          (why ? `: ${why}` : ""),
      );
    }
    const route = resolver.pickRoute();
    const ids = route?.targets ?? [];
    // Settled when, in failover order, the first target that has not answered empty has
    // answered with endpoints (the ones after it are only tried if it fails), or all answered.
    const settled = () => {
      for (const id of ids) {
        const t = resolver.targets.get(id);
        if (!t || (t.isKnown && t.endpoints.length === 0)) continue;
        return t.isKnown;
      }
      return true;
    };
    const endpointsTimeoutMs = up.connectTimeoutMs ??
      resolver.targets.get(ids[0] ?? "")?.connectTimeoutMs ?? 5000;
    await resolver.waitFor(settled, left(endpointsTimeoutMs), signal);
    const candidates: Candidate[] = [];
    for (const id of ids) {
      const target = resolver.targets.get(id);
      if (!target || target.endpoints.length === 0) continue;
      for (const endpoint of this.#order(target.endpoints)) {
        candidates.push({ endpoint, timeoutMs: up.connectTimeoutMs ?? target.connectTimeoutMs });
      }
    }
    const unknown = ids.filter((id) => resolver.targets.get(id)?.isKnown === false);
    if (candidates.length === 0 && unknown.length) {
      const why = resolver.targetError(unknown[0] ?? "");
      return refused(
        "endpoints_unavailable",
        `no endpoint list for ${unknown.join(", ")} from the agent within ` +
          `${endpointsTimeoutMs} ms` + (why ? `: ${why}` : ""),
      );
    }
    return { ok: true, candidates };
  }

  /**
   * Dial → verify one candidate (see {@linkcode dialMesh}), keeping the endpoint's health: a
   * success clears its failures, a failure counts towards ejection, is logged and reported as
   * `dial_failed`. A dial cut by `signal` counts for nothing.
   */
  async dial(candidate: Candidate, signal?: AbortSignal): Promise<EndpointDialResult> {
    const { endpoint, timeoutMs } = candidate;
    const started = Date.now();
    const dialed = await dialMesh(this.#o.material, endpoint, timeoutMs, signal);
    const h = this.#healthOf(endpoint.id);
    if (dialed.ok) {
      this.#succeeded(h);
      dialed.connection.socket.once("close", () => h.active--);
      return {
        ok: true,
        connection: { ...dialed.connection, endpoint, connectMs: Date.now() - started },
      };
    }
    if (signal?.aborted) return dialed;
    this.#failed(endpoint, h, `${dialed.failure.reason}: ${dialed.failure.detail}`, started);
    return dialed;
  }

  /**
   * {@linkcode UpstreamConnector.dial} on the native leg ({@linkcode dialMeshNative}): the same
   * verification, health and events. Where the native leg cannot decide (no peer-certificate
   * accessor, a chain that needs the presented intermediates) the endpoint is dialled with
   * `node:tls` within what is left of its timeout, and that connection is the result.
   */
  async dialNative(candidate: Candidate, signal?: AbortSignal): Promise<NativeEndpointDialResult> {
    const { endpoint, timeoutMs } = candidate;
    const started = Date.now();
    const native = await dialMeshNative(this.#o.material, endpoint, { timeoutMs, signal });
    if (native.ok || native.fallback === undefined) {
      const h = this.#healthOf(endpoint.id);
      if (native.ok) {
        this.#succeeded(h);
        const conn = native.connection.conn;
        const connectMs = Date.now() - started;
        return {
          ok: true,
          connection: { conn, endpoint, connectMs, done: once(() => h.active--) },
        };
      }
      if (signal?.aborted) return native;
      this.#failed(endpoint, h, `${native.failure.reason}: ${native.failure.detail}`, started);
      return native;
    }
    this.#log.log("debug", "native dial falls back to node:tls", {
      endpoint: endpoint.id,
      why: native.fallback,
    });
    const left = Math.max(1, timeoutMs - (Date.now() - started));
    const dialed = await this.dial({ endpoint, timeoutMs: left }, signal);
    if (!dialed.ok) return dialed;
    return { ok: true, connection: { ...dialed.connection, connectMs: Date.now() - started } };
  }

  /** Counts a verified dial: its failures are forgotten, and it is open. */
  #succeeded(h: EndpointHealth): void {
    h.consecutiveFailures = 0;
    h.ejections = 0;
    h.ejectedUntil = undefined;
    h.lastError = undefined;
    h.lastErrorAt = undefined;
    h.active++;
  }

  /** Counts a failed dial: ejection after `ejectAfterFailures` in a row, a log, an event. */
  #failed(endpoint: MeshEndpoint, h: EndpointHealth, error: string, started: number): void {
    h.consecutiveFailures++;
    h.lastError = error;
    h.lastErrorAt = Date.now();
    const threshold = this.#o.ejectAfterFailures ?? 3;
    if (threshold > 0 && h.consecutiveFailures >= threshold) {
      const ms = Math.min((this.#o.ejectionBaseMs ?? 10_000) * 2 ** h.ejections, 300_000);
      h.ejections++;
      h.consecutiveFailures = 0;
      h.ejectedUntil = Date.now() + ms;
      this.#log.log("warn", "endpoint ejected after consecutive failures", {
        endpoint: endpoint.id,
        forMs: ms,
        ejections: h.ejections,
      });
    }
    this.#log.log("warn", "upstream endpoint failed", { endpoint: endpoint.id, error });
    this.#o.onEvent?.({
      type: "dial_failed",
      direction: "outbound",
      listener: this.listenerName,
      target: endpoint.target ?? this.#o.upstream.name,
      endpoint: endpoint.id,
      error,
      ms: Date.now() - started,
    });
  }

  /**
   * Pick, then dial → verify endpoint after endpoint until one is verified. Retries happen
   * only here, before any byte of the caller was sent. `signal` stops early (the caller went
   * away).
   */
  async connect(signal?: AbortSignal): Promise<ConnectResult> {
    const picked = await this.pick(signal);
    if (!picked.ok) return picked;
    const failures: DialFailure[] = [];
    for (const candidate of picked.candidates) {
      if (signal?.aborted) break;
      const dialed = await this.dial(candidate, signal);
      if (dialed.ok) return dialed;
      failures.push(dialed.failure);
    }
    return { ok: false, refusal: refusalAfterDials(failures) };
  }

  /** Stops watching. */
  async close(): Promise<void> {
    await this.resolver?.close();
  }
}

/** `fn`, run at most once. */
function once(fn: () => void): () => void {
  let ran = false;
  return () => {
    if (!ran) fn();
    ran = true;
  };
}

function refused(
  reason: UpstreamConnectReason,
  detail: string,
): { ok: false; refusal: UpstreamRefusal } {
  return { ok: false, refusal: { reason, detail } };
}

/** The datacenter our leaf's SPIFFE ID names (the agent's), when the leaf is loaded. */
function leafDatacenter(material: TlsMaterial): string | undefined {
  const uri = material.leaf?.info.uris[0];
  if (!uri) return undefined;
  try {
    const id = parseSpiffeId(uri);
    return id.kind === "service" ? id.datacenter : undefined;
  } catch {
    return undefined;
  }
}
