/**
 * What the admin app reads: {@linkcode AdminSubject}, an interface that a sidecar proxy and a
 * Connect-native service both implement, so both can be watched through the same app.
 * @module
 */
import type { AgentClient } from "../agent/client.ts";
import type { EventHub } from "../events/hub.ts";
import type { LifecyclePhase, ProxyEvent } from "../events/lifecycle.ts";
import type { InboundGateway } from "../inbound/gateway.ts";
import type { UpstreamListener } from "../outbound/listener.ts";
import type { SocketAddress } from "../net/sockets.ts";
import type { TlsMaterial } from "../trust/material.ts";

/** An inbound mTLS listener as the admin app shows it. */
export interface AdminInbound {
  /** The bound address. */
  readonly address: { hostname: string; port: number };
  /** The local application it pipes to; none when connections are served in-process. */
  readonly app: SocketAddress | undefined;
  /** Open, authorized connections. */
  readonly connections: InboundGateway["connections"];
}

/**
 * An upstream as the admin app shows it: a proxy's upstream listener, or the connector a
 * Connect-native service dials an upstream through.
 */
export interface AdminUpstream {
  /** What it reaches: a service or a prepared query, in a datacenter when it names one. */
  readonly upstream: {
    readonly type: "service" | "prepared_query";
    readonly name: string;
    readonly datacenter?: string;
  };
  /** Its name in events and metrics (`upstream:db`, `upstream:db@dc2`, `native:db`). */
  readonly name: string;
  /** Where it listens; none for a connector (the service dials in-process). */
  readonly address?: SocketAddress;
  /** Open connections, when it tracks them (a connector hands its sockets to the caller). */
  readonly connections?: UpstreamListener["connections"];
  /** The chain and endpoints (service upstreams). */
  readonly resolver?: UpstreamListener["resolver"];
  /** Dial health (consecutive failures, ejection, open connections) by endpoint ID. */
  readonly endpointHealth: UpstreamListener["endpointHealth"];
}

/**
 * What the admin app reads. `Proxy` and `ConnectService` implement it.
 *
 * @example
 * ```ts
 * import type { AdminSubject } from "@meshgate/meshgate/admin";
 *
 * function describe(subject: AdminSubject): string {
 *   const listening = subject.inboundListeners.map((l) => l.address.port).join(", ");
 *   return `${subject.service ?? "(not configured)"} is ${subject.phase}, listening on ${
 *     listening || "nothing"
 *   }, ${subject.upstreams.length} upstream(s)`;
 * }
 * ```
 */
export interface AdminSubject {
  /** The service it is or fronts; unknown while a proxy waits for its registration. */
  readonly service: string | undefined;
  /** The proxy's registration ID, when it runs from one. */
  readonly proxyId?: string;
  /** The lifecycle phase. */
  readonly phase: LifecyclePhase;
  /** `Date.now()` when it started. */
  readonly startedAt: number;
  /** The live leaf and roots. */
  readonly material: TlsMaterial;
  /** Everything that happens (connections and lifecycle). */
  readonly events: EventHub<ProxyEvent>;
  /** The most recent event of a type (e.g. the last leaf renewal), if any. */
  lastEvent<K extends ProxyEvent["type"]>(
    type: K,
  ): Extract<ProxyEvent, { type: K }> | undefined;
  /**
   * Why it does not serve as configured, one line each (what it waits for, what the agent
   * answered, a listener it could not bind); shown on `/ready` after the leaf and roots checks.
   */
  readonly problems: readonly string[];
  /** The agent it watches through (its address, reachability and watches are shown). */
  readonly agent: AgentClient;
  /** Its inbound mTLS listeners (a proxy's public listener; a native service's servers). */
  readonly inboundListeners: readonly AdminInbound[];
  /** Its upstreams (a proxy's upstream listeners; a native service's connectors). */
  readonly upstreams: readonly AdminUpstream[];
  /** Stops it, giving open connections `drainMs` (the admin app's `POST /v1/drain`). */
  close(drainMs?: number): Promise<void>;
}
