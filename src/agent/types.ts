/**
 * Consul's JSON shapes for the endpoints a Connect proxy uses. Field names are kept exactly as
 * Consul spells them on the wire, so a body can be compared with Consul's documentation.
 * @module
 */

/** One CA root, as in `GET /v1/agent/connect/ca/roots` (`structs.CARoot`). */
export interface CARoot {
  /** Lowercase colon-hex SHA-1 fingerprint of the root's DER (not a UUID). */
  ID: string;
  /** Opaque display name, e.g. `Consul CA Primary Cert`. */
  Name: string;
  /** The serial as a JSON number; may lose precision past 2^53: read it from the PEM instead. */
  SerialNumber: number;
  /** Colon-hex key id of the certificate that signs leaves; a current leaf's AKID equals it. */
  SigningKeyID: string;
  /** The cluster id (trust domain without `.consul`); `""` on roots from before 1.4. */
  ExternalTrustDomain?: string;
  /** RFC 3339 validity start. */
  NotBefore: string;
  /** RFC 3339 validity end. */
  NotAfter: string;
  /** The root certificate PEM. */
  RootCert: string;
  /**
   * PEMs that peers send after their leaf (cross-signed root first after a rotation). Consul
   * sends `null` when there are none; the client's decoder turns that into `[]`.
   */
  IntermediateCerts: string[] | null;
  /** True for exactly one root: the one that signs new leaves. */
  Active: boolean;
  /** `ec` or `rsa`. */
  PrivateKeyType?: string;
  /** Key size in bits. */
  PrivateKeyBits?: number;
  /** Raft index of creation. */
  CreateIndex: number;
  /** Raft index of the last change. */
  ModifyIndex: number;
}

/** `GET /v1/agent/connect/ca/roots` (`structs.IndexedCARoots`). */
export interface CARootList {
  /** The `ID` of the active root. */
  ActiveRootID: string;
  /** `<cluster-id>.consul`, no scheme. */
  TrustDomain: string;
  /** Every root still trusted; the most recently activated one is last. */
  Roots: CARoot[];
}

/** `GET /v1/agent/connect/ca/leaf/:service` (`structs.IssuedCert`). */
export interface LeafCert {
  /** Lowercase colon-hex serial, e.g. `01:2c`. */
  SerialNumber: string;
  /** The leaf PEM followed by the active root's intermediates. */
  CertPEM: string;
  /** SEC1 `EC PRIVATE KEY` PEM; a new key on every renewal. Never log it. */
  PrivateKeyPEM: string;
  /** The service name the certificate is for. */
  Service: string;
  /** The SPIFFE ID written in the certificate. */
  ServiceURI: string;
  /** RFC 3339 NotBefore. */
  ValidAfter: string;
  /** RFC 3339 NotAfter. */
  ValidBefore: string;
  /** Raft index when signed. */
  CreateIndex: number;
  /** Raft index when signed. */
  ModifyIndex: number;
}

/** Body of `POST /v1/agent/connect/authorize`. */
export interface AuthorizeRequest {
  /** Destination service **name** (not an ID, not the proxy's name). */
  Target: string;
  /** The client certificate's first URI SAN. */
  ClientCertURI: string;
  /** Colon-hex serial of the client certificate (accepted, never checked). */
  ClientCertSerial?: string;
}

/** Answer of `POST /v1/agent/connect/authorize`. A denial is not an HTTP error. */
export interface AuthorizeResult {
  /** Whether the connection may proceed. */
  Authorized: boolean;
  /** Free text for logs, e.g. `Matched L4 intention: default/web => default/db (…)`. */
  Reason: string;
}

/** `Weights` of a service instance. */
export interface ServiceWeights {
  /** Weight while all checks pass (never 0). */
  Passing: number;
  /** Weight while some check warns. */
  Warning: number;
}

/** An address and port under `TaggedAddresses`. */
export interface ServiceAddress {
  /** Host. */
  Address: string;
  /** Port. */
  Port: number;
}

/** One upstream of a `connect-proxy` registration (`api.Upstream`). */
export interface Upstream {
  /** `service` (default) or `prepared_query`. */
  DestinationType?: "service" | "prepared_query" | string;
  /** Enterprise namespace of the destination. */
  DestinationNamespace?: string;
  /** Enterprise partition of the destination. */
  DestinationPartition?: string;
  /** Cluster peer of the destination. */
  DestinationPeer?: string;
  /** Service or prepared query name. */
  DestinationName: string;
  /** Datacenter; empty means the local one. */
  Datacenter?: string;
  /** Address of the local listener (default `127.0.0.1`). */
  LocalBindAddress?: string;
  /** Port of the local listener. */
  LocalBindPort?: number;
  /** Unix socket path of the local listener, instead of a port. */
  LocalBindSocketPath?: string;
  /** Octal mode of that socket, e.g. `0600`. */
  LocalBindSocketMode?: string;
  /** Opaque options, e.g. `connect_timeout_ms`, `protocol`. */
  Config?: Record<string, unknown>;
  /** Mesh gateway mode for this upstream. */
  MeshGateway?: { Mode?: string };
  /** Whether central config supplied this upstream. */
  CentrallyConfigured?: boolean;
}

/** `Proxy` of a `connect-proxy` registration (`api.AgentServiceConnectProxyConfig`). */
export interface ConnectProxyConfig {
  /** The proxied service's name. */
  DestinationServiceName: string;
  /** The proxied service's instance ID. */
  DestinationServiceID?: string;
  /** Address of the local application. */
  LocalServiceAddress?: string;
  /** Port of the local application. */
  LocalServicePort?: number;
  /** Unix socket of the local application. */
  LocalServiceSocketPath?: string;
  /** `""`, `direct` or `transparent`. */
  Mode?: string;
  /** Transparent proxy settings. */
  TransparentProxy?: { OutboundListenerPort?: number; DialedDirectly?: boolean };
  /** Opaque proxy options (`local_connect_timeout_ms`, `handshake_timeout_ms`, …). */
  Config?: Record<string, unknown>;
  /** The upstreams to listen for. */
  Upstreams?: Upstream[];
  /** Mesh gateway mode. */
  MeshGateway?: { Mode?: string };
  /** Expose paths. */
  Expose?: { Checks?: boolean; Paths?: unknown[] };
}

/** `GET /v1/agent/service/:id` (`api.AgentService`). */
export interface AgentService {
  /** `connect-proxy`, a gateway kind, or absent for an ordinary service. */
  Kind?: string;
  /** Instance ID. */
  ID: string;
  /** Service name. */
  Service: string;
  /** Tags; `[]` when none. */
  Tags: string[];
  /** Metadata; `{}` when none. */
  Meta: Record<string, string>;
  /** Port. */
  Port: number;
  /** Address; often `""`. */
  Address: string;
  /** Unix socket path of the service. */
  SocketPath?: string;
  /** Named addresses. */
  TaggedAddresses?: Record<string, ServiceAddress>;
  /** Load-balancing weights. */
  Weights: ServiceWeights;
  /** Whether the catalog may override tags. */
  EnableTagOverride: boolean;
  /** Opaque hash of this body, for hash blocking. */
  ContentHash?: string;
  /** Proxy settings for `connect-proxy` services. */
  Proxy?: ConnectProxyConfig;
  /** `{Native: true}` for Connect-native services. */
  Connect?: { Native?: boolean };
  /** The agent's datacenter. */
  Datacenter?: string;
  /** Raft indexes (usually absent on agent-local reads). */
  CreateIndex?: number;
  /** Raft indexes (usually absent on agent-local reads). */
  ModifyIndex?: number;
}

/** A check in a registration body. */
export interface CheckDefinition {
  /** Check ID; defaults from the service ID. */
  CheckID?: string;
  /** Display name. */
  Name?: string;
  /** TTL duration for TTL checks, e.g. `30s`. */
  TTL?: string;
  /** TCP target `host:port` for TCP checks. */
  TCP?: string;
  /** Interval for TCP/HTTP checks. */
  Interval?: string;
  /** Alias of another service instance. */
  AliasService?: string;
  /** Notes for operators. */
  Notes?: string;
  /** Initial status. */
  Status?: "passing" | "warning" | "critical";
  /** Remove the service after it has been critical this long. */
  DeregisterCriticalServiceAfter?: string;
}

/** Body of `PUT /v1/agent/service/register` (`api.AgentServiceRegistration`). */
export interface ServiceRegistration {
  /** Kind, e.g. `connect-proxy`. */
  Kind?: string;
  /** Instance ID (defaults to `Name`). */
  ID?: string;
  /** Service name (required). */
  Name: string;
  /** Tags. */
  Tags?: string[];
  /** Port. */
  Port?: number;
  /** Address. */
  Address?: string;
  /** Unix socket path. */
  SocketPath?: string;
  /** Metadata. */
  Meta?: Record<string, string>;
  /** Weights. */
  Weights?: ServiceWeights;
  /** One check. */
  Check?: CheckDefinition | null;
  /** More checks. */
  Checks?: CheckDefinition[] | null;
  /** Proxy settings for `connect-proxy`. */
  Proxy?: Partial<ConnectProxyConfig>;
  /** Native flag and sidecar sugar. */
  Connect?: {
    Native?: boolean;
    SidecarService?: Partial<Omit<ServiceRegistration, "Name">> & { Name?: string } | null;
  };
}

/** A node in a health entry. */
export interface CatalogNode {
  /** Node UUID. */
  ID: string;
  /** Node name. */
  Node: string;
  /** Node address: the fallback dial address. */
  Address: string;
  /** Node's datacenter. */
  Datacenter: string;
  /** `lan`, `wan`, … addresses. */
  TaggedAddresses?: Record<string, string>;
  /** Node metadata. */
  Meta?: Record<string, string>;
  /** Raft index. */
  CreateIndex?: number;
  /** Raft index. */
  ModifyIndex?: number;
}

/** A service in a health entry (`structs.NodeService`; differs from `AgentService`). */
export interface CatalogService {
  /** Kind, e.g. `connect-proxy`. */
  Kind?: string;
  /** Instance ID. */
  ID: string;
  /** Service name. */
  Service: string;
  /** Tags. */
  Tags: string[];
  /** Address (may be `""`: then dial the node's address). */
  Address: string;
  /** Named addresses; `consul-virtual` must never be dialled. */
  TaggedAddresses?: Record<string, ServiceAddress>;
  /** Metadata; Consul sends `null` when empty (the client's decoder gives `{}`). */
  Meta: Record<string, string> | null;
  /** Port. */
  Port: number;
  /** Unix socket path. */
  SocketPath?: string;
  /** Weights. */
  Weights: ServiceWeights;
  /** Tag override flag. */
  EnableTagOverride: boolean;
  /** Always present, even for non-proxies. */
  Proxy: Partial<ConnectProxyConfig>;
  /** Always present (`{}`). */
  Connect: { Native?: boolean };
  /** Peer name (`""` locally). */
  PeerName?: string;
  /** Raft index. */
  CreateIndex: number;
  /** Raft index. */
  ModifyIndex: number;
}

/** A health check in a health entry. */
export interface HealthCheck {
  /** Node name. */
  Node: string;
  /** Check ID. */
  CheckID: string;
  /** Display name. */
  Name: string;
  /** `passing`, `warning` or `critical`. */
  Status: "passing" | "warning" | "critical" | string;
  /** Notes. */
  Notes: string;
  /** Last output. */
  Output: string;
  /** Owning service ID (`""` for node checks). */
  ServiceID: string;
  /** Owning service name. */
  ServiceName: string;
  /** Always `[]`. */
  ServiceTags: string[];
  /** `ttl`, `tcp`, `alias`, … or `""`. */
  Type: string;
  /** Interval as a duration string. */
  Interval?: string;
  /** Timeout as a duration string. */
  Timeout?: string;
  /** Exposed port. */
  ExposedPort?: number;
  /** Definition with string durations. */
  Definition?: Record<string, unknown>;
  /** Raft index. */
  CreateIndex: number;
  /** Raft index. */
  ModifyIndex: number;
}

/** One element of `GET /v1/health/connect/:service`. */
export interface ServiceEntry {
  /** The node. */
  Node: CatalogNode;
  /** The mesh-capable instance (a sidecar, a native instance or a gateway). */
  Service: CatalogService;
  /** Node and service checks. */
  Checks: HealthCheck[];
}

/** `GET /v1/query/:name/execute?connect=true`. */
/** The body of `POST /v1/query` (the fields a mesh client needs). */
export interface PreparedQueryDefinition {
  /** The name it executes by (also its ID). */
  Name?: string;
  /** What it looks up. */
  Service: {
    /** The service name. */
    Service: string;
    /** Leave out endpoints with a warning check too (critical ones are always left out). */
    OnlyPassing?: boolean;
    /** Tags every endpoint must have (`!tag` for must not). */
    Tags?: string[];
    /** Other datacenters to try when this one has no healthy endpoint. */
    Failover?: { NearestN?: number; Datacenters?: string[] };
  };
}

/** The answer of `GET /v1/query/:name/execute`. */
export interface PreparedQueryResult {
  /** The service the query resolved to. */
  Service: string;
  /** Entries in the shape of health endpoints. */
  Nodes: ServiceEntry[];
  /** DNS settings. */
  DNS?: { TTL?: string };
  /** The datacenter that answered. */
  Datacenter: string;
  /** How many failovers were tried. */
  Failovers: number;
  /** The cluster peer that answered (`""` locally). */
  PeerName?: string;
  /** The embedded `QueryMeta`: Consul 1.22.7 sends `Index` (1), `LastContact`, `KnownLeader`… */
  Index?: number;
  /** Whether the answering server knew a leader. */
  KnownLeader?: boolean;
  /** `leader`, `stale` or `consistent`. */
  ConsistencyLevel?: string;
}

/** A target of a compiled discovery chain. */
export interface DiscoveryTarget {
  /** `[<subset>.]<service>.<namespace>.<partition>.<dc>`; treat as opaque. */
  ID: string;
  /** The service to dial. */
  Service: string;
  /** Subset name, if any. */
  ServiceSubset?: string;
  /** Namespace. */
  Namespace: string;
  /** Partition. */
  Partition: string;
  /** Datacenter. */
  Datacenter: string;
  /** Peer, for peered targets. */
  Peer?: string;
  /** Mesh gateway mode. */
  MeshGateway: { Mode?: string };
  /** Subset filter. */
  Subset: { Filter?: string; OnlyPassing?: boolean };
  /** Transparent proxy settings. */
  TransparentProxy: Record<string, unknown>;
  /** Go duration string, e.g. `5s`. */
  ConnectTimeout?: string;
  /** Whether the target is outside the mesh. */
  External?: boolean;
  /** The SNI a proxy would send. */
  SNI: string;
  /** Same as the generated SNI. */
  Name: string;
}

/** A resolver node's settings. */
export interface DiscoveryResolver {
  /** True when no resolver entry exists. */
  Default?: boolean;
  /** Go duration string. */
  ConnectTimeout: string;
  /** Integer nanoseconds (Go's `time.Duration`); absent when the resolver sets none. */
  RequestTimeout?: number;
  /** The primary target ID. */
  Target: string;
  /** Failover targets in order. */
  Failover?: { Targets: string[]; Policy?: unknown; Regions?: unknown };
}

/** A node of a compiled discovery chain. */
export interface DiscoveryGraphNode {
  /** `router`, `splitter` or `resolver`. */
  Type: "router" | "splitter" | "resolver";
  /** Node name. */
  Name: string;
  /** Router routes. */
  Routes?: { Definition: unknown; NextNode: string }[];
  /** Splitter splits. */
  Splits?: { Definition?: unknown; Weight: number; NextNode: string }[];
  /** Resolver settings. */
  Resolver?: DiscoveryResolver;
  /** Load-balancer settings. */
  LoadBalancer?: unknown;
}

/** `GET /v1/discovery-chain/:service` → `Chain`. */
export interface CompiledDiscoveryChain {
  /** The service the chain is for. */
  ServiceName: string;
  /** Namespace (`default` on CE). */
  Namespace: string;
  /** Partition (`default` on CE). */
  Partition: string;
  /** The datacenter compiled for. */
  Datacenter: string;
  /** Only when an override changed the result. */
  CustomizationHash?: string;
  /** True when no config entry changes anything. */
  Default?: boolean;
  /** `tcp`, `http`, `http2`, `grpc`. */
  Protocol?: string;
  /** Key into `Nodes` where evaluation starts. */
  StartNode: string;
  /** Graph nodes by `<Type>:<Name>`. */
  Nodes: Record<string, DiscoveryGraphNode>;
  /** Targets by ID. */
  Targets: Record<string, DiscoveryTarget>;
  /**
   * The service's virtual IP (`["240.0.0.1"]`) once the catalog gave it one (a connect proxy or
   * a Connect-native instance was registered); `null` before. The client's decoder gives `[]`.
   */
  AutoVirtualIPs?: string[] | null;
  /** `[]` beside an assigned virtual IP, else `null` (`[]` after the client's decoder). */
  ManualVirtualIPs?: string[] | null;
}

/** One intention (`structs.Intention`, by-name form). */
export interface Intention {
  /** Empty for intentions created by name. */
  ID?: string;
  /** Free text. */
  Description?: string;
  /** Source namespace (`default` on CE). */
  SourceNS: string;
  /** Source service or `*`. */
  SourceName: string;
  /** Destination namespace. */
  DestinationNS: string;
  /** Destination service or `*`. */
  DestinationName: string;
  /** Source partition (Enterprise). */
  SourcePartition?: string;
  /** Destination partition (Enterprise). */
  DestinationPartition?: string;
  /** Source peer. */
  SourcePeer?: string;
  /** Always `consul`. */
  SourceType: string;
  /** `allow` or `deny`; absent for L7 intentions. */
  Action?: "allow" | "deny";
  /** L7 permissions (authorize treats them as deny). */
  Permissions?: unknown[];
  /** Metadata. */
  Meta?: Record<string, string>;
  /** 9, 8, 6 or 5 on CE. */
  Precedence: number;
  /** Raft index. */
  CreateIndex: number;
  /** Raft index. */
  ModifyIndex: number;
  /** Legacy intentions only; absent for intentions created by name (1.22). */
  CreatedAt?: string;
  /** Legacy intentions only; absent for intentions created by name (1.22). */
  UpdatedAt?: string;
}

/** Body of `PUT /v1/connect/intentions/exact`. */
export interface IntentionInput {
  /** `allow` or `deny` (or use `Permissions`). */
  Action?: "allow" | "deny";
  /** Free text. */
  Description?: string;
  /** Always `consul`. */
  SourceType?: string;
  /** L7 permissions instead of `Action`. */
  Permissions?: unknown[];
}

/** The stable part of `GET /v1/agent/self`. */
export interface AgentSelf {
  /** Agent configuration summary. */
  Config: {
    Datacenter: string;
    PrimaryDatacenter?: string;
    NodeName: string;
    NodeID: string;
    Revision?: string;
    Server: boolean;
    Version: string;
    BuildDate?: string;
  };
  /** Sanitised runtime configuration; not a stable API. */
  DebugConfig?: Record<string, unknown>;
  /** Everything else the agent sends. */
  [key: string]: unknown;
}

/** `GET /v1/connect/ca/configuration` and the body of its PUT. */
export interface CAConfiguration {
  /** `consul`, `vault`, `aws-pca`. */
  Provider: string;
  /** Provider settings (`LeafCertTTL`, `PrivateKey`, `RootCert`, …). */
  Config: Record<string, unknown>;
  /** Rotate without a cross-signed certificate. */
  ForceWithoutCrossSigning?: boolean;
  /** Provider state (read only). */
  State?: Record<string, string> | null;
  /** Raft index (read only). */
  CreateIndex?: number;
  /** Raft index (read only). */
  ModifyIndex?: number;
}

/** A config entry for `PUT /v1/config` (resolver, splitter, defaults). */
export interface ConfigEntry {
  /** `service-resolver`, `service-splitter`, `service-defaults`, `proxy-defaults`, … */
  Kind: string;
  /** The service the entry is for. */
  Name: string;
  /** Everything else, as Consul names it. */
  [key: string]: unknown;
}
