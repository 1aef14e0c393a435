/**
 * meshgate — a Consul Connect sidecar proxy and Connect-native toolkit for Deno.
 *
 * - {@linkcode AgentClient}: Consul's agent HTTP API on `fetch`, with blocking-query streams
 *   ({@linkcode BlockingQuery}) usable on any runtime with fetch.
 * - Trust: SPIFFE IDs ({@linkcode parseSpiffeId}), certificates ({@linkcode parseCertificate}),
 *   chain checks against the mesh roots ({@linkcode verifyChain}).
 * - {@linkcode startDevAgent}: an in-process Consul test double speaking the real HTTP
 *   contract, with a real Connect CA, for tests and demos.
 *
 * @example
 * ```ts ignore
 * import { AgentClient, startDevAgent } from "@meshgate/meshgate";
 *
 * await using dev = await startDevAgent();
 * const agent = new AgentClient({ address: dev.address });
 * const ac = new AbortController();
 * for await (const { value: roots } of agent.watchRoots().subscribe(ac.signal)) {
 *   console.log("trust domain", roots.TrustDomain, "active root", roots.ActiveRootID);
 *   ac.abort();
 * }
 * ```
 * @module
 */

export {
  type AgentCall,
  AgentClient,
  type AgentClientOptions,
  type AgentQuery,
  type AgentReachability,
  type AgentResponse,
  type BlockingReadOptions,
  type RequestOptions,
} from "./src/agent/client.ts";
export { OperatorClient } from "./src/agent/operator.ts";
export {
  type BlockingFetch,
  type BlockingParams,
  BlockingQuery,
  type BlockingQueryOptions,
  type BlockingResult,
  type BlockingStatus,
  DEFAULT_WAIT_MS,
  MAX_WAIT_MS,
  type Snapshot,
} from "./src/agent/blocking.ts";
export {
  AGENT_ENV_VARS,
  type AgentConfig,
  type AgentConnectionOptions,
  type Environment,
  resolveAgentConfig,
} from "./src/agent/config.ts";
export { DecodeFailure, type Decoder } from "./src/agent/decode.ts";
export { formatGoDuration, parseGoDuration } from "./src/agent/duration.ts";
export {
  AgentConfigError,
  AgentDecodeError,
  AgentError,
  AgentNetworkError,
  type AnyAgentError,
  isRetryable,
} from "./src/agent/errors.ts";
export type {
  AgentSelf,
  AgentService,
  AuthorizeRequest,
  AuthorizeResult,
  CAConfiguration,
  CARoot,
  CARootList,
  CatalogNode,
  CatalogService,
  CheckDefinition,
  CompiledDiscoveryChain,
  ConfigEntry,
  ConnectProxyConfig,
  DiscoveryGraphNode,
  DiscoveryResolver,
  DiscoveryTarget,
  HealthCheck,
  Intention,
  IntentionInput,
  LeafCert,
  PreparedQueryDefinition,
  PreparedQueryResult,
  ServiceAddress,
  ServiceEntry,
  ServiceRegistration,
  ServiceWeights,
  Upstream,
} from "./src/agent/types.ts";

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
export { exportSec1Pem, importEcPrivateKeyPem } from "./src/trust/keys.ts";
export {
  colonHex,
  decodePem,
  encodePem,
  type PemBlock,
  splitPemCertificates,
} from "./src/trust/pem.ts";
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
  ConnectCA,
  type ConnectCAOptions,
  type IssuedLeaf,
  type RotationMaterial,
} from "./src/devagent/ca.ts";
export { createDevAgent, type DevAgent, type DevAgentOptions } from "./src/devagent/app.ts";
export type { Fault } from "./src/devagent/faults.ts";
export {
  type RunningDevAgent,
  startDevAgent,
  type StartDevAgentOptions,
} from "./src/devagent/server.ts";
export { type DevAgentApp } from "./src/devagent/app.ts";
export { Catalog, type CatalogOptions } from "./src/devagent/catalog.ts";
export { ConfigEntries } from "./src/devagent/chain.ts";
export { Faults } from "./src/devagent/faults.ts";
export { Intentions } from "./src/devagent/intentions.ts";
export { Leaves, type LeavesOptions } from "./src/devagent/leaves.ts";
export { Store } from "./src/devagent/store.ts";

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
  type HeldData,
  type HeldSocket,
  holdSocket,
  type Pipe,
  pipeSockets,
  type PipeStats,
} from "./src/net/pipe.ts";
export { connectPlain, formatAddress, peerChain, type SocketAddress } from "./src/net/sockets.ts";
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
  type AuthorizedConnection,
  type Caller,
  type InboundConnection,
  type InboundGateway,
  type InboundOptions,
  type InboundSettings,
  startInbound,
} from "./src/inbound/gateway.ts";
export {
  type ConnectionEvent,
  type Refusal,
  REFUSAL_REASONS,
  type RefusalReason,
} from "./src/events/connection.ts";
export {
  type DialFailure,
  type DialFailureReason,
  dialMesh,
  type MeshConnection,
  type MeshDialResult,
  type MeshEndpoint,
} from "./src/outbound/dialer.ts";
export {
  type ChainTarget,
  endpointsOf,
  type Route,
  routesOf,
  UpstreamResolver,
  type UpstreamResolverOptions,
} from "./src/outbound/resolver.ts";
export {
  type Candidate,
  type ConnectResult,
  type EndpointDialResult,
  type EndpointHealth,
  type LoadBalancingPolicy,
  type PickResult,
  UpstreamConnectError,
  type UpstreamConnection,
  UpstreamConnector,
  type UpstreamConnectorOptions,
  type UpstreamConnectReason,
  upstreamListenerName,
  type UpstreamRefusal,
  type UpstreamTarget,
} from "./src/outbound/connector.ts";
export {
  type OutboundConnection,
  startUpstream,
  type UpstreamConfig,
  type UpstreamListener,
  type UpstreamOptions,
} from "./src/outbound/listener.ts";
export {
  configFromService,
  type ProxyConfig,
  ProxyConfigError,
  upstreamKey,
} from "./src/proxy/config.ts";
export {
  findSidecar,
  Proxy,
  type ProxyLimits,
  type ProxyOptions,
  type ProxyPhase,
  type SelfRegistration,
  startProxy,
} from "./src/proxy/proxy.ts";
export { EventHub } from "./src/events/hub.ts";
export type {
  LifecycleEvent,
  LifecyclePhase,
  ProxyEvent,
  ReauthorizeRound,
} from "./src/events/lifecycle.ts";
export {
  type AdminApp,
  type AdminAppOptions,
  createAdminApp,
  explain,
  type Explanation,
  isLoopback,
} from "./src/admin/app.ts";
export { type ReadinessOptions, readinessProblems } from "./src/admin/readiness.ts";
export { type AdminServer, type AdminServerOptions, startAdmin } from "./src/admin/server.ts";
export { createProxyMetrics, type ProxyMetrics } from "./src/admin/proxy_metrics.ts";
export type { AdminInbound, AdminSubject, AdminUpstream } from "./src/admin/subject.ts";
export {
  Counter,
  Gauge,
  Histogram,
  type Labels,
  Metric,
  type MetricKind,
  PROMETHEUS_CONTENT_TYPE,
  Registry,
} from "./src/admin/prometheus.ts";
export {
  type ConnectionState,
  type EndpointState,
  openConnections,
  type ProxyState,
  proxyState,
  type UpstreamState,
} from "./src/admin/state.ts";
export {
  connect,
  type ConnectOptions,
  ConnectService,
  type MeshListener,
  type MeshServer,
  type ServeOptions,
} from "./src/native/service.ts";
export { type MeshHandler, type MeshRequestInfo } from "./src/native/http_server.ts";
export { MeshAddressError, parseMeshHost } from "./src/native/names.ts";
export {
  allowCallers,
  callerOf,
  type MeshContext,
  type MeshMiddleware,
} from "./src/native/hono.ts";
export { createDenoAgentClient, namedEnv, PROXY_ENV_VARS } from "./src/transport/agent_client.ts";
export { createNodeFetch, type NodeFetchOptions } from "./src/transport/node_fetch.ts";
export { decideByIntentions, type IntentionDecision } from "./src/intentions/decide.ts";
export {
  type AnswerSource,
  type AuthorizeAnswer,
  AuthorizeCache,
  type AuthorizeCacheOptions,
  type AuthorizeCaller,
} from "./src/inbound/authorize_cache.ts";
export {
  reauthorize,
  reauthorizeOnChange,
  type ReauthorizeOptions,
} from "./src/inbound/reauthorize.ts";
export {
  type AccessLogOptions,
  type AccessLogRecord,
  startAccessLog,
} from "./src/proxy/access_log.ts";
