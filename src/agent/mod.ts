/**
 * Consul's agent HTTP API on `fetch` alone — no `Deno.*`, no `node:*` — so it runs on any runtime
 * with fetch (Deno, Deno Deploy, Bun, Node, Workers). {@linkcode AgentClient} is what a proxy or a
 * Connect-native service calls: reads, blocking-query streams ({@linkcode BlockingQuery}),
 * authorize, registration and checks. {@linkcode OperatorClient} carries the writes a proxy never
 * makes (CA configuration, intentions, config entries, prepared queries), so a proxy's token needs
 * none of their permissions. Wire shapes keep Consul's spelling (`CARootList`, `LeafCert`).
 *
 * @example
 * ```ts
 * import { AgentClient } from "@meshgate/meshgate/agent";
 * import { startDevAgent } from "@meshgate/meshgate/devagent";
 *
 * await using dev = await startDevAgent(); // the Consul test double; yours: "127.0.0.1:8500"
 * const agent = new AgentClient({ address: dev.address });
 * const stop = new AbortController();
 * for await (const { value: roots } of agent.watchRoots().subscribe(stop.signal)) {
 *   console.log("trust domain", roots.TrustDomain, "active root", roots.ActiveRootID);
 *   stop.abort(); // one snapshot is enough here
 * }
 * await agent.close();
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
} from "./client.ts";
export { OperatorClient } from "./operator.ts";
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
} from "./blocking.ts";
export {
  AGENT_ENV_VARS,
  type AgentConfig,
  type AgentConnectionOptions,
  type Environment,
  resolveAgentConfig,
} from "./config.ts";
export { DecodeFailure, type Decoder } from "./decode.ts";
export { formatGoDuration, parseGoDuration } from "./duration.ts";
export {
  AgentConfigError,
  AgentDecodeError,
  AgentError,
  AgentNetworkError,
  type AnyAgentError,
  isRetryable,
} from "./errors.ts";
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
} from "./types.ts";
