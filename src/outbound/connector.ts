/**
 * Connecting to one upstream: its endpoints in the order to try them (per chain target, round
 * robin, recently failed ones last; failover targets after the primary), each dialled over
 * mTLS with identity verification until one answers. Shared by upstream listeners (sidecar)
 * and Connect-native clients.
 * @module
 */
import type { AgentClient } from "../agent/client.ts";
import type { ConnectionEvent } from "../inbound/refusal.ts";
import type { HeldSocket } from "../net/pipe.ts";
import { type Logger, silentLogger } from "../net/log.ts";
import type { TlsMaterial } from "../trust/material.ts";
import type tls from "node:tls";
import { DialError, dialMesh, type MeshEndpoint } from "./dialer.ts";
import { endpointsOf, UpstreamResolver } from "./resolver.ts";

/** Which upstream to reach. */
export interface UpstreamTarget {
  /** `service` or `prepared_query`. */
  type: "service" | "prepared_query";
  /** Service or query name. */
  name: string;
  /** Datacenter; empty for the local one. */
  datacenter?: string;
  /** Overrides the chain's `ConnectTimeout` (upstream `Config.connect_timeout_ms`). */
  connectTimeoutMs?: number;
}

/**
 * A connection could not be made: no endpoint, or every endpoint failed.
 *
 * @example
 * ```ts
 * import { UpstreamConnectError } from "@meshgate/meshgate";
 * const err = new UpstreamConnectError("no_endpoint", "no healthy instances of db");
 * console.log(err.reason); // "no_endpoint"
 * ```
 */
export class UpstreamConnectError extends Error {
  /**
   * Creates the error.
   * @param reason `no_endpoint` (nothing healthy to try), `upstream_unreachable`, or
   *   `leaf_expired` (our certificate expired; no dial until it is renewed)
   * @param detail what happened
   */
  constructor(reason: "no_endpoint" | "upstream_unreachable" | "leaf_expired", detail: string) {
    super(detail);
    this.name = "UpstreamConnectError";
    this.reason = reason;
  }
  /** Why. */
  readonly reason: "no_endpoint" | "upstream_unreachable" | "leaf_expired";
}

/** A verified mesh connection to one endpoint. */
export interface UpstreamConnection {
  /** The TLS socket. */
  socket: tls.TLSSocket;
  /** What it received while being verified. */
  held: HeldSocket;
  /** The endpoint reached. */
  endpoint: MeshEndpoint;
  /** Milliseconds from the first dial of this endpoint to verified. */
  connectMs: number;
}

/** Options of {@linkcode UpstreamConnector}. */
export interface UpstreamConnectorOptions {
  /** The agent, for chain, health and prepared-query reads. */
  agent: AgentClient;
  /** The live leaf and roots. */
  material: TlsMaterial;
  /** The upstream. */
  upstream: UpstreamTarget;
  /** Events go out with this listener name (`upstream:<name>` by default). */
  listener?: string;
  /** How long a failed endpoint goes to the back of the line. @default {10000} */
  failureCooldownMs?: number;
  /** Log sink. */
  log?: Logger;
  /** `dial_failed` events. */
  onEvent?: (event: ConnectionEvent) => void;
  /** Called when a chain target's healthy endpoints change. */
  onEndpoints?: (change: { upstream: string; target: string; endpoints: string[] }) => void;
}

/**
 * Connects to an upstream, watching its chain and endpoints while it lives.
 *
 * @example
 * ```ts ignore
 * import { UpstreamConnector } from "@meshgate/meshgate";
 * const db = new UpstreamConnector({ agent, material, upstream: { type: "service", name: "db" } });
 * const { socket, endpoint } = await db.connect();
 * console.log(`connected to ${endpoint.id}`);
 * ```
 */
export class UpstreamConnector {
  /** The chain and endpoints (service upstreams). */
  readonly resolver?: UpstreamResolver;
  readonly #o: UpstreamConnectorOptions;
  readonly #failures = new Map<string, { at: number; error: string }>();
  readonly #cursor = new Map<string, number>();
  readonly #log: Logger;

  /** Starts watching the upstream's chain and endpoints (service upstreams). */
  constructor(options: UpstreamConnectorOptions) {
    this.#o = options;
    const up = options.upstream;
    this.#log = options.log ?? silentLogger;
    if (up.type === "service") {
      this.resolver = new UpstreamResolver(options.agent, up.name, {
        datacenter: up.datacenter,
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

  /** Endpoints whose last dial failed (cleared by a success), by endpoint ID. */
  get endpointFailures(): ReadonlyMap<string, { at: number; error: string }> {
    return this.#failures;
  }

  /** Candidates in the order to try them: per target, round robin, recently failed last. */
  async candidates(): Promise<{ endpoint: MeshEndpoint; timeoutMs: number }[]> {
    const up = this.#o.upstream;
    if (!this.resolver) {
      const result = await this.#o.agent.preparedQuery(up.name, { dc: up.datacenter });
      return endpointsOf(result.Nodes).map((endpoint) => ({
        endpoint: { ...endpoint, target: up.name },
        timeoutMs: up.connectTimeoutMs ?? 5000,
      }));
    }
    await this.resolver.ready;
    const route = this.resolver.pickRoute();
    const cooldown = this.#o.failureCooldownMs ?? 10_000;
    const out: { endpoint: MeshEndpoint; timeoutMs: number }[] = [];
    for (const id of route?.targets ?? []) {
      const target = this.resolver.targets.get(id);
      if (!target || target.endpoints.length === 0) continue;
      const start = (this.#cursor.get(id) ?? 0) % target.endpoints.length;
      this.#cursor.set(id, start + 1);
      const ordered = [...target.endpoints.slice(start), ...target.endpoints.slice(0, start)];
      const now = Date.now();
      const healthy = ordered.filter((e) => now - (this.#failures.get(e.id)?.at ?? 0) > cooldown);
      const cooling = ordered.filter((e) => !healthy.includes(e));
      for (const endpoint of [...healthy, ...cooling]) {
        out.push({ endpoint, timeoutMs: up.connectTimeoutMs ?? target.connectTimeoutMs });
      }
    }
    return out;
  }

  /**
   * Dials endpoints in order until one is verified. Retries happen only here, before any byte
   * of the caller was sent. `cancelled` stops early (the client went away).
   * @throws {UpstreamConnectError}
   */
  async connect(cancelled: () => boolean = () => false): Promise<UpstreamConnection> {
    const up = this.#o.upstream;
    if (this.#o.material.leafExpired) {
      throw new UpstreamConnectError(
        "leaf_expired",
        `our leaf certificate expired at ${this.#o.material.leaf!.cert.ValidBefore}`,
      );
    }
    let list;
    try {
      list = await this.candidates();
    } catch (err) {
      throw new UpstreamConnectError("no_endpoint", (err as Error).message);
    }
    if (list.length === 0) {
      throw new UpstreamConnectError("no_endpoint", `no healthy instances of ${up.name}`);
    }
    let lastError = "";
    for (const { endpoint, timeoutMs } of list) {
      if (cancelled()) break;
      const started = Date.now();
      try {
        const { socket, held } = await dialMesh(this.#o.material, endpoint, timeoutMs);
        this.#failures.delete(endpoint.id);
        return { socket, held, endpoint, connectMs: Date.now() - started };
      } catch (err) {
        lastError = err instanceof DialError ? `${err.reason}: ${err.message}` : String(err);
        this.#failures.set(endpoint.id, { at: Date.now(), error: lastError });
        this.#log.log("warn", "upstream endpoint failed", {
          endpoint: endpoint.id,
          error: lastError,
        });
        this.#o.onEvent?.({
          type: "dial_failed",
          direction: "outbound",
          listener: this.#o.listener ?? `upstream:${up.name}`,
          target: endpoint.target ?? up.name,
          endpoint: endpoint.id,
          error: lastError,
          ms: Date.now() - started,
        });
      }
    }
    throw new UpstreamConnectError("upstream_unreachable", lastError || "cancelled");
  }

  /** Stops watching. */
  async close(): Promise<void> {
    await this.resolver?.close();
  }
}
