/**
 * The admin app of a proxy or a Connect-native service, on hono: its state as JSON
 * (`/v1/state`), Prometheus metrics (`/metrics`), readiness (`/ready`), a live event stream
 * (`/v1/events`, SSE), an intention explainer and a dashboard page. {@linkcode createAdminApp}
 * returns the hono app (test it with `app.request()`); {@linkcode startAdmin} serves it. Both read
 * an {@linkcode AdminSubject}, which `Proxy` and `ConnectService` implement.
 *
 * @example
 * ```ts
 * // Needs a Consul agent with the sidecar registration of "web-1".
 * import { createDenoAgentClient, startProxy } from "@meshgate/meshgate";
 * import { startAdmin } from "@meshgate/meshgate/admin";
 *
 * await using agent = await createDenoAgentClient(); // CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, …
 * await using proxy = await startProxy({ agent, sidecarFor: "web-1" });
 * await using admin = await startAdmin({ proxy, hostname: "127.0.0.1", port: 19000 });
 * console.log(`dashboard: ${admin.url}`);
 * ```
 * @module
 */

export {
  type AdminApp,
  type AdminAppOptions,
  createAdminApp,
  DRAIN_HEADER,
  explain,
  type Explanation,
  isLoopback,
} from "./app.ts";
export { AdminBindError, type AdminServer, type AdminServerOptions, startAdmin } from "./server.ts";
export type { AdminInbound, AdminSubject, AdminUpstream } from "./subject.ts";
export {
  type ConnectionState,
  type EndpointState,
  openConnections,
  type ProxyState,
  proxyState,
  type UpstreamState,
} from "./state.ts";
export { createProxyMetrics, type ProxyMetrics } from "./proxy_metrics.ts";
export {
  Counter,
  Gauge,
  Histogram,
  type Labels,
  Metric,
  type MetricKind,
  PROMETHEUS_CONTENT_TYPE,
  Registry,
} from "./prometheus.ts";
export { type ReadinessOptions, readinessProblems } from "./readiness.ts";
