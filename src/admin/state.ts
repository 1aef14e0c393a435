/**
 * The proxy's state as JSON for `GET /v1/state` and the dashboard: identity, certificates,
 * listeners, upstreams with their chain targets and endpoints, connection counts, the agent's
 * reachability and the age of each watch. Never a private key or a token.
 * @module
 */
import { formatAddress } from "../net/sockets.ts";
import type { AdminSubject } from "./subject.ts";

/** An endpoint of a chain target. */
export interface EndpointState {
  /** `Node/Service.ID`. */
  id: string;
  /** `address:port` dialled. */
  address: string;
  /** The last dial error, while it is the latest outcome. */
  lastError?: string;
  /** When that dial failed (ISO 8601). */
  lastErrorAt?: string;
  /** Consul's weight for it. */
  weight: number;
  /** Open connections through it. */
  connections: number;
  /** Until when it is ejected after consecutive failures (ISO 8601). */
  ejectedUntil?: string;
}

/** One upstream listener. */
export interface UpstreamState {
  /** Service or prepared-query name. */
  name: string;
  /** Its datacenter, when the upstream names one. */
  datacenter?: string;
  /**
   * Its listener name in events and metrics: `upstream:<name>`, or `upstream:<name>@<dc>` in
   * another datacenter.
   */
  listener: string;
  /** `service` or `prepared_query`. */
  type: string;
  /** Where it listens. */
  bind: string;
  /** Open connections. */
  connections: number;
  /** Discovery-chain targets (service upstreams), primary first. */
  targets: {
    id: string;
    service: string;
    datacenter: string;
    connectTimeoutMs: number;
    endpoints: EndpointState[];
    /** The agent's last endpoint list was filtered by ACLs (instances the token may not see). */
    resultsFilteredByAcls: boolean;
    /** While filtered: the endpoint and the permissions the token likely lacks. */
    aclWarning?: string;
  }[];
  /** When the chain or an endpoint list last changed (ISO 8601). */
  updatedAt?: string;
}

/** The JSON of `GET /v1/state`. */
export interface ProxyState {
  /** `starting`, `ready`, `draining` or `stopped`. */
  phase: string;
  /** When the proxy started (ISO 8601). */
  startedAt: string;
  /** Who we are in the mesh. */
  identity: {
    service?: string;
    proxyId?: string;
    spiffeId?: string;
    trustDomain?: string;
  };
  /** The current leaf certificate. */
  leaf: {
    serial: string;
    notBefore: string;
    notAfter: string;
    expiresInSeconds: number;
    lastRenewalAt?: string;
  } | null;
  /** The CA roots trusted now. */
  roots: {
    activeRootId: string;
    trustDomain: string;
    roots: { id: string; name: string; active: boolean; notAfter: string }[];
    lastRotationAt?: string;
  } | null;
  /** The public mTLS listener. */
  publicListener: { address: string; app: string; connections: number } | null;
  /** Upstream listeners. */
  upstreams: UpstreamState[];
  /** Open connections by direction. */
  connections: { inbound: number; outbound: number };
  /** The Consul agent. */
  agent: {
    address: string;
    reachable: boolean;
    lastAnswerAt?: string;
    lastFailureAt?: string;
    lastFailure?: string;
  };
  /** Every blocking-query watch. */
  watches: {
    key: string;
    healthy: boolean;
    failures: number;
    lastError?: string;
    lastSuccessAgeSeconds?: number;
    backoffUntil?: string;
  }[];
}

const iso = (ms: number | undefined) => ms === undefined ? undefined : new Date(ms).toISOString();

/**
 * Reads the state of `proxy` now.
 *
 * @example
 * ```ts
 * import { AgentClient, connect } from "@meshgate/meshgate";
 * import { proxyState } from "@meshgate/meshgate/admin";
 * import { startDevAgent } from "@meshgate/meshgate/devagent";
 *
 * await using dev = await startDevAgent(); // the Consul test double; any agent will do
 * await using agent = new AgentClient({ address: dev.address });
 * await using api = await connect({ service: "api", agent }); // or a Proxy from startProxy()
 * const s = proxyState(api);
 * console.log(s.identity.spiffeId, s.leaf?.expiresInSeconds); // spiffe://…/svc/api 259140
 * ```
 */
export function proxyState(proxy: AdminSubject, now: number = Date.now()): ProxyState {
  const leaf = proxy.material.leaf;
  const roots = proxy.material.roots;
  const inbound = proxy.inboundListeners;
  const publicListener = inbound[0];
  let inboundCount = 0;
  for (const l of inbound) inboundCount += l.connections.size;
  const reach = proxy.agent.reachability;
  let outbound = 0;
  const upstreams = proxy.upstreams.map((u): UpstreamState => {
    const connections = u.connections?.size ?? 0;
    outbound += connections;
    const r = u.resolver;
    const targets = r
      ? [...new Set(r.routes.flatMap((route) => route.targets))].flatMap((id) => {
        const t = r.targets.get(id);
        if (!t) return [];
        return [{
          id: t.id,
          service: t.service,
          datacenter: t.datacenter,
          connectTimeoutMs: t.connectTimeoutMs,
          endpoints: t.endpoints.map((e): EndpointState => {
            const h = u.endpointHealth.get(e.id);
            return {
              id: e.id,
              address: `${e.address}:${e.port}`,
              weight: e.weight ?? 1,
              connections: h?.active ?? 0,
              ...(h?.lastError ? { lastError: h.lastError, lastErrorAt: iso(h.lastErrorAt) } : {}),
              ...(h?.ejectedUntil && h.ejectedUntil > now
                ? { ejectedUntil: iso(h.ejectedUntil) }
                : {}),
            };
          }),
          resultsFilteredByAcls: t.resultsFilteredByAcls,
          ...(t.aclWarning ? { aclWarning: t.aclWarning } : {}),
        }];
      })
      : [];
    return {
      name: u.upstream.name,
      ...(u.upstream.datacenter ? { datacenter: u.upstream.datacenter } : {}),
      listener: u.name,
      type: u.upstream.type,
      bind: u.address ? formatAddress(u.address) : "(in-process)",
      connections,
      targets,
      updatedAt: r?.updatedAt ? iso(r.updatedAt) : undefined,
    };
  });
  return {
    phase: proxy.phase,
    startedAt: new Date(proxy.startedAt).toISOString(),
    identity: {
      service: proxy.service,
      proxyId: proxy.proxyId,
      spiffeId: leaf?.info.uris[0],
      trustDomain: roots?.roots.TrustDomain,
    },
    leaf: leaf
      ? {
        serial: leaf.info.serial,
        notBefore: leaf.info.notBefore.toISOString(),
        notAfter: leaf.info.notAfter.toISOString(),
        expiresInSeconds: Math.round((leaf.info.notAfter.getTime() - now) / 1000),
        lastRenewalAt: iso(proxy.lastEvent("leaf")?.at),
      }
      : null,
    roots: roots
      ? {
        activeRootId: roots.roots.ActiveRootID,
        trustDomain: roots.roots.TrustDomain,
        roots: roots.roots.Roots.map((r, i) => ({
          id: r.ID,
          name: r.Name,
          active: r.Active,
          notAfter: roots.infos[i]?.notAfter.toISOString() ?? r.NotAfter,
        })),
        lastRotationAt: iso(proxy.lastEvent("roots")?.at),
      }
      : null,
    publicListener: publicListener
      ? {
        address: formatAddress(publicListener.address),
        app: publicListener.app ? formatAddress(publicListener.app) : "(in-process handler)",
        connections: publicListener.connections.size,
      }
      : null,
    upstreams,
    connections: { inbound: inboundCount, outbound },
    agent: {
      address: proxy.agent.config.baseUrl,
      reachable: (reach.lastFailureAt ?? 0) <= (reach.lastAnswerAt ?? 0),
      lastAnswerAt: iso(reach.lastAnswerAt),
      lastFailureAt: iso(reach.lastFailureAt),
      lastFailure: reach.lastFailure,
    },
    watches: proxy.agent.watches.map(({ key, status }) => ({
      key,
      healthy: status.failures === 0,
      failures: status.failures,
      lastError: status.lastError === undefined ? undefined : String(status.lastError),
      lastSuccessAgeSeconds: status.lastSuccessAt === undefined
        ? undefined
        : Math.round((now - status.lastSuccessAt) / 1000),
      backoffUntil: status.backoffUntil && status.backoffUntil > now
        ? iso(status.backoffUntil)
        : undefined,
    })),
  };
}

/** One open connection, for `GET /v1/connections`. */
export interface ConnectionState {
  /** `inbound` or `outbound`. */
  direction: "inbound" | "outbound";
  /** `inbound:<service>`, `upstream:<name>` or `upstream:<name>@<dc>`. */
  listener: string;
  /** Inbound: the client's SPIFFE ID; outbound: `service@address:port` reached. */
  peer: string;
  /** The remote address of the accepted socket. */
  remote: string;
  /** Bytes received from the other side of the listener (mesh for inbound, upstream for outbound). */
  bytesIn: number;
  /** Bytes sent to it. */
  bytesOut: number;
  /** Seconds since it was established. */
  ageSeconds: number;
}

/**
 * Open connections, newest first, at most `limit`.
 *
 * @example
 * ```ts
 * import { AgentClient, connect } from "@meshgate/meshgate";
 * import { openConnections } from "@meshgate/meshgate/admin";
 * import { startDevAgent } from "@meshgate/meshgate/devagent";
 *
 * await using dev = await startDevAgent(); // the Consul test double; any agent will do
 * await using agent = new AgentClient({ address: dev.address });
 * await using api = await connect({ service: "api", agent }); // or a Proxy from startProxy()
 * for (const c of openConnections(api, 10)) console.log(c.direction, c.peer, c.bytesIn);
 * ```
 */
export function openConnections(
  proxy: AdminSubject,
  limit: number = 100,
  now: number = Date.now(),
): ConnectionState[] {
  const out: ConnectionState[] = [];
  const service = proxy.service ?? "";
  for (const c of proxy.inboundListeners.flatMap((l) => [...l.connections])) {
    out.push({
      direction: "inbound",
      listener: `inbound:${service}`,
      peer: c.peer,
      remote: c.remote,
      bytesIn: c.pipe.stats.aToB,
      bytesOut: c.pipe.stats.bToA,
      ageSeconds: (now - c.since) / 1000,
    });
  }
  for (const u of proxy.upstreams) {
    for (const c of u.connections ?? []) {
      out.push({
        direction: "outbound",
        listener: u.name,
        peer: c.peer,
        remote: c.remote,
        bytesIn: c.pipe.stats.bToA,
        bytesOut: c.pipe.stats.aToB,
        ageSeconds: (now - c.since) / 1000,
      });
    }
  }
  return out.sort((a, b) => a.ageSeconds - b.ageSeconds).slice(0, limit);
}
