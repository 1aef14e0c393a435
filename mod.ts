/**
 * meshgate — a Consul Connect sidecar proxy and Connect-native toolkit for Deno.
 *
 * This entry has what running a proxy or being Connect-native takes:
 * - {@linkcode startProxy}: the sidecar (`consul connect proxy`'s job) — watches its
 *   registration, leaf and roots, serves the public mTLS listener (verify, authorize every
 *   connection, then dial the app) and one local listener per upstream.
 * - {@linkcode connect}: a Connect-native service — serve mTLS, `fetch`/`dial` upstreams by name.
 * - {@linkcode createDenoAgentClient}: an agent client configured like the Consul CLI
 *   (`CONSUL_HTTP_*`), TLS to the agent included.
 * - Events ({@linkcode ProxyEvent}), logging ({@linkcode createLogger}), the TLS material and
 *   SPIFFE identities ({@linkcode parseSpiffeId}).
 *
 * The rest is by subpath: `@meshgate/meshgate/agent` (the fetch-only agent client, any
 * runtime), `/native` (Connect-native in full), `/admin` (the hono admin app), `/devagent` (the
 * Consul test double), `/cli` (the command line).
 *
 * @example
 * ```ts
 * // Needs a Consul agent with a sidecar registered for the service instance "web-1".
 * import { createDenoAgentClient, startProxy } from "@meshgate/meshgate";
 *
 * await using agent = await createDenoAgentClient(); // CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, …
 * await using proxy = await startProxy({ agent, sidecarFor: "web-1" });
 * await proxy.ready;
 * proxy.events.subscribe((e) => e.type === "refused" && console.log(e.refusal));
 * ```
 * @module
 */

export {
  findSidecar,
  Proxy,
  type ProxyLimits,
  type ProxyOptions,
  type ProxyPhase,
  type SelfRegistration,
  startProxy,
} from "./src/proxy/proxy.ts";
// Every core (-workers): the relay the threads' agent calls go through, and the pool's types.
export {
  AgentRelay,
  type AgentRelayOptions,
  type RelayRequest,
  type RelayResponse,
  type RelayStats,
} from "./src/workers/agent_relay.ts";
export type { JoinTable } from "./src/workers/authorize_join.ts";
export type {
  ProxyWorkers,
  WorkerAgentOptions,
  WorkerLog,
  WorkerState,
  WorkerThread,
} from "./src/workers/pool.ts";
export {
  configFromService,
  type ProxyConfig,
  ProxyConfigError,
  upstreamKey,
} from "./src/proxy/config.ts";
export {
  type AccessLogOptions,
  type AccessLogRecord,
  startAccessLog,
} from "./src/proxy/access_log.ts";
export {
  connect,
  type ConnectOptions,
  ConnectService,
  type MeshListener,
  type MeshServer,
  type ServeOptions,
} from "./src/native/service.ts";
export type { MeshHandler, MeshRequestInfo } from "./src/native/http_server.ts";
// What a running proxy shows of its listeners (read-only: the listeners themselves are started
// by the proxy, not by users).
export type {
  AuthorizedConnection,
  Caller,
  InboundConnection,
  InboundGateway,
  InboundSettings,
} from "./src/inbound/gateway.ts";
export type {
  OutboundConnection,
  OutboundTls,
  UpstreamConfig,
  UpstreamListener,
} from "./src/outbound/listener.ts";
export type {
  EndpointHealth,
  LoadBalancingPolicy,
  UpstreamTarget,
} from "./src/outbound/connector.ts";
export type { ChainTarget, Route, UpstreamResolver } from "./src/outbound/resolver.ts";
export type { MeshEndpoint } from "./src/outbound/dialer.ts";
export type { Pipe, PipeStats } from "./src/net/pipe.ts";
export type { SocketAddress } from "./src/net/sockets.ts";
export { AgentClient, type AgentClientOptions } from "./src/agent/client.ts";
export {
  createDenoAgentClient,
  type DenoAgentTransportOptions,
  namedEnv,
  PROXY_ENV_VARS,
} from "./src/transport/agent_client.ts";
export { createNodeFetch, type NodeFetchOptions } from "./src/transport/node_fetch.ts";
export {
  type ConnectionEvent,
  type Refusal,
  REFUSAL_REASONS,
  type RefusalReason,
} from "./src/events/connection.ts";
export type {
  LifecycleEvent,
  LifecyclePhase,
  ProxyEvent,
  ReauthorizeRound,
} from "./src/events/lifecycle.ts";
export { EventHub } from "./src/events/hub.ts";
export {
  createLogger,
  type LogFields,
  type Logger,
  type LoggerOptions,
  type LogLevel,
  parseLogLevel,
  silentLogger,
} from "./src/net/log.ts";
export {
  type IdentityFailure,
  leafExpiryMargin,
  type LeafState,
  type MaterialChange,
  type PeerVerdict,
  type RootsState,
  TlsMaterial,
  type TlsMaterialOptions,
} from "./src/trust/material.ts";
export {
  type AgentSpiffeId,
  formatSpiffeId,
  type MeshGatewaySpiffeId,
  parseSpiffeId,
  type ServerSpiffeId,
  type ServiceSpiffeId,
  serviceSpiffeId,
  type SigningSpiffeId,
  type SpiffeId,
  SpiffeIdError,
} from "./src/trust/spiffe.ts";
export {
  CertificateError,
  type CertificateInfo,
  EKU,
  type NameConstraints,
  parseCertificate,
} from "./src/trust/certificate.ts";
export {
  ChainError,
  type ChainFailure,
  type KeyPurpose,
  verifyChain,
  type VerifyChainOptions,
} from "./src/trust/chain.ts";
