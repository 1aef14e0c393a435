/**
 * The proxy's Prometheus metrics: counters and histograms fed by its event stream, gauges read
 * from its live state at scrape time. Names start with `meshgate_`; every label value is a
 * closed set or a name from the registration (never a client address).
 * @module
 */
import { REFUSAL_REASONS } from "../events/connection.ts";
import type { AdminSubject } from "./subject.ts";
import { type ReadinessOptions, readinessProblems } from "./readiness.ts";
import { type Labels, Registry } from "./prometheus.ts";

/** Latency buckets in seconds: 0.5 ms … 10 s. */
const LATENCY_BUCKETS = [
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
];

/** A registry wired to a proxy; `close()` stops listening to its events. */
export interface ProxyMetrics {
  /** The registry; render it for `/metrics`. */
  registry: Registry;
  /** Bytes received and sent through every listener so far (for the dashboard). */
  totalBytes(): { in: number; out: number };
  /** Stops updating from the proxy's events. */
  close(): void;
}

/**
 * Creates the metrics of `proxy`.
 *
 * @example
 * ```ts
 * import { AgentClient, connect } from "@meshgate/meshgate";
 * import { createProxyMetrics } from "@meshgate/meshgate/admin";
 * import { startDevAgent } from "@meshgate/meshgate/devagent";
 *
 * await using dev = await startDevAgent(); // the Consul test double; any agent will do
 * await using agent = new AgentClient({ address: dev.address });
 * await using api = await connect({ service: "api", agent }); // or a Proxy from startProxy()
 * const metrics = createProxyMetrics(api);
 * console.log(metrics.registry.render()); // Prometheus text format
 * metrics.close();
 * ```
 */
export function createProxyMetrics(
  proxy: AdminSubject,
  readiness: ReadinessOptions = {},
): ProxyMetrics {
  const r = new Registry();
  const accepted = r.counter(
    "meshgate_connections_accepted_total",
    "Connections authorized (inbound) or established to an upstream (outbound).",
  );
  const refused = r.counter(
    "meshgate_connections_refused_total",
    "Connections refused, by direction and reason (no_cert, bad_chain, bad_identity, denied, authorize_error, limit, handshake_timeout, authorize_timeout, handshake, app_unreachable, no_endpoint, chain_unavailable, endpoints_unavailable, upstream_unreachable, leaf_expired).",
  );
  const cachedAuthz = r.counter(
    "meshgate_authorize_cache_used_total",
    "Inbound connections authorized from the agent's recent answer: why=fresh (within -authorize-fresh, not asked) or why=outage (the agent could not answer).",
  );
  const joinedAuthz = r.counter(
    "meshgate_authorize_joined_total",
    "Inbound connections authorized by an identical authorize call (same caller certificate) already in flight when they asked.",
  );
  const revoked = r.counter(
    "meshgate_connections_revoked_total",
    "Open inbound connections closed because an intention change denied their caller.",
  );
  const active = r.gauge("meshgate_connections_active", "Open proxied connections per listener.");
  const bytesIn = r.counter(
    "meshgate_received_bytes_total",
    "Bytes received from the mesh side (inbound) or from the upstream (outbound), per listener.",
  );
  const bytesOut = r.counter(
    "meshgate_sent_bytes_total",
    "Bytes sent to the mesh side (inbound) or to the upstream (outbound), per listener.",
  );
  const handshake = r.histogram(
    "meshgate_tls_handshake_seconds",
    "Inbound TLS handshake duration, from TCP accept to established.",
    LATENCY_BUCKETS,
  );
  const upstreamConnect = r.histogram(
    "meshgate_upstream_connect_seconds",
    "Outbound connect duration (TCP + mTLS + identity check), per upstream and chain target.",
    LATENCY_BUCKETS,
  );
  const authorize = r.histogram(
    "meshgate_authorize_seconds",
    "Duration of the agent's /v1/agent/connect/authorize call for inbound connections.",
    LATENCY_BUCKETS,
  );
  const dialFailures = r.counter(
    "meshgate_upstream_connect_failures_total",
    "Failed dials to an upstream endpoint, per upstream and discovery-chain target.",
  );
  const ejected = r.gauge(
    "meshgate_upstream_endpoints_ejected",
    "Endpoints left out after consecutive failed dials (passive outlier ejection), per upstream.",
  );
  const leafExpiry = r.gauge(
    "meshgate_leaf_expiry_timestamp_seconds",
    "Unix time at which the current leaf certificate expires.",
  );
  const leafRenewals = r.counter(
    "meshgate_leaf_renewals_total",
    "Leaf certificates installed after the first.",
  );
  const rotations = r.counter(
    "meshgate_root_rotations_total",
    "CA root rotations seen (the active root changed).",
  );
  const configChanges = r.counter(
    "meshgate_config_changes_total",
    "Registration changes applied live.",
  );
  const watchErrors = r.counter(
    "meshgate_watch_errors_total",
    "Failed blocking-query requests, per watch.",
  );
  const watchBackoff = r.gauge(
    "meshgate_watch_backoff",
    "1 while a watch waits to retry after errors, else 0.",
  );
  const watchResets = r.counter(
    "meshgate_watch_index_resets_total",
    "Times the agent's X-Consul-Index went backwards for a watch (the watch re-read).",
  );
  const watchAge = r.gauge(
    "meshgate_watch_last_success_age_seconds",
    "Seconds since a watch last got an answer from the agent.",
  );
  const ready = r.gauge("meshgate_ready", "1 when the proxy is ready to serve, else 0.");
  const leafTrusted = r.gauge(
    "meshgate_leaf_chains_to_roots",
    "1 when the leaf certificate chains to a current CA root, 0 when it does not (renewal due).",
  );
  const reachable = r.gauge(
    "meshgate_agent_reachable",
    "1 when the agent answered the last request, 0 when the last request got no answer.",
  );

  for (const reason of REFUSAL_REASONS) {
    refused.inc({ direction: "inbound", reason }, 0);
    refused.inc({ direction: "outbound", reason }, 0);
  }
  // Bytes of closed connections per listener; live ones are added at scrape time.
  const closedBytes = new Map<string, { labels: Labels; rx: number; tx: number }>();

  // Connections open in worker threads (-workers), by listener: the main thread sees their
  // events, not their sockets, so their count comes from accepted minus closed.
  const workerOpen = new Map<string, { labels: Labels; open: number }>();
  const countWorker = (e: { worker?: number; direction: string; listener: string }, n: number) => {
    if (e.worker === undefined) return;
    const key = `${e.direction}|${e.listener}`;
    const w = workerOpen.get(key) ??
      { labels: { direction: e.direction, listener: e.listener }, open: 0 };
    w.open = Math.max(0, w.open + n);
    workerOpen.set(key, w);
  };

  const stop = proxy.events.subscribe((e) => {
    switch (e.type) {
      case "accepted": {
        countWorker(e, 1);
        accepted.inc({ direction: e.direction, listener: e.listener });
        if (e.handshakeMs !== undefined && e.direction === "inbound") {
          handshake.observe({}, e.handshakeMs / 1000);
        }
        if (e.handshakeMs !== undefined && e.direction === "outbound") {
          upstreamConnect.observe(
            { upstream: e.listener.replace(/^upstream:/, ""), target: e.target ?? "" },
            e.handshakeMs / 1000,
          );
        }
        if (e.authorizeMs !== undefined) authorize.observe({}, e.authorizeMs / 1000);
        if (e.authorizeCached) cachedAuthz.inc({ why: e.authorizeCached });
        if (e.authorizeJoined) joinedAuthz.inc({});
        break;
      }
      case "refused":
        refused.inc({ direction: e.direction, reason: e.refusal.reason });
        break;
      case "closed": {
        countWorker(e, -1);
        const key = `${e.direction}|${e.listener}`;
        const b = closedBytes.get(key) ??
          { labels: { direction: e.direction, listener: e.listener }, rx: 0, tx: 0 };
        b.rx += e.bytesIn;
        b.tx += e.bytesOut;
        closedBytes.set(key, b);
        break;
      }
      case "revoked":
        revoked.inc({ listener: e.listener });
        break;
      case "dial_failed":
        dialFailures.inc({ upstream: e.listener.replace(/^upstream:/, ""), target: e.target });
        break;
      case "leaf":
        if (e.renewed) leafRenewals.inc();
        break;
      case "roots":
        if (e.rotated) rotations.inc();
        break;
      case "config":
        configChanges.inc();
        break;
      case "watch_error":
        watchErrors.inc({ watch: e.watch });
        break;
    }
  });
  revoked.inc({}, 0);
  cachedAuthz.inc({ why: "fresh" }, 0);
  cachedAuthz.inc({ why: "outage" }, 0);
  leafRenewals.inc({}, 0);
  rotations.inc({}, 0);
  configChanges.inc({}, 0);

  /** Bytes per listener (closed plus open connections), and open connections per listener. */
  const byListener = () => {
    const live = new Map<string, { labels: Labels; rx: number; tx: number; open: number }>();
    for (const [k, v] of closedBytes) live.set(k, { ...v, open: 0 });
    const addLive = (
      direction: string,
      listener: string,
      conns: Iterable<{ pipe: { stats: { aToB: number; bToA: number } } }>,
      inboundSide: boolean,
    ) => {
      const key = `${direction}|${listener}`;
      const b = live.get(key) ?? { labels: { direction, listener }, rx: 0, tx: 0, open: 0 };
      for (const c of conns) {
        b.open++;
        // Inbound pipes are mesh→app (aToB); outbound pipes are client→upstream (aToB).
        b.rx += inboundSide ? c.pipe.stats.aToB : c.pipe.stats.bToA;
        b.tx += inboundSide ? c.pipe.stats.bToA : c.pipe.stats.aToB;
      }
      live.set(key, b);
    };
    const service = proxy.service;
    if (service) {
      for (const l of proxy.inboundListeners) {
        addLive("inbound", `inbound:${service}`, l.connections, true);
      }
    }
    for (const u of proxy.upstreams) {
      if (u.connections) addLive("outbound", u.name, u.connections, false);
    }
    for (const [key, w] of workerOpen) {
      const b = live.get(key) ?? { labels: w.labels, rx: 0, tx: 0, open: 0 };
      b.open += w.open; // their live bytes stay in the workers until they close
      live.set(key, b);
    }
    return live;
  };

  r.onCollect(() => {
    const now = Date.now();
    active.reset();
    for (const b of byListener().values()) {
      bytesIn.set(b.labels, b.rx);
      bytesOut.set(b.labels, b.tx);
      active.set(b.labels, b.open);
    }
    ejected.reset();
    for (const u of proxy.upstreams) {
      let n = 0;
      for (const h of u.endpointHealth.values()) if ((h.ejectedUntil ?? 0) > now) n++;
      ejected.set({ upstream: u.name.replace(/^upstream:/, "") }, n);
    }
    const leaf = proxy.material.leaf;
    leafExpiry.reset();
    if (leaf) leafExpiry.set({}, Math.floor(leaf.info.notAfter.getTime() / 1000));
    watchBackoff.reset();
    watchAge.reset();
    watchResets.reset();
    for (const { key, status } of proxy.agent.watches) {
      watchBackoff.set({ watch: key }, status.backoffUntil && status.backoffUntil > now ? 1 : 0);
      watchResets.set({ watch: key }, status.indexResets ?? 0);
      if (status.lastSuccessAt) {
        watchAge.set({ watch: key }, (now - status.lastSuccessAt) / 1000);
      }
    }
    ready.set({}, readinessProblems(proxy, now, readiness).length === 0 ? 1 : 0);
    leafTrusted.reset();
    if (proxy.material.leafTrusted !== undefined) {
      leafTrusted.set({}, proxy.material.leafTrusted ? 1 : 0);
    }
    const reach = proxy.agent.reachability;
    reachable.set({}, (reach.lastFailureAt ?? 0) > (reach.lastAnswerAt ?? 0) ? 0 : 1);
  });

  return {
    registry: r,
    totalBytes() {
      let rx = 0;
      let tx = 0;
      for (const b of byListener().values()) {
        rx += b.rx;
        tx += b.tx;
      }
      return { in: rx, out: tx };
    },
    close: stop,
  };
}
