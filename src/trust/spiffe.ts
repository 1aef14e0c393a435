/**
 * SPIFFE IDs as Consul writes them in certificate URI SANs, parsed the way Consul's
 * `agent/connect/uri.go` does: patterns matched on the raw path (service, agent, mesh gateway,
 * server), segments unescaped afterwards.
 * @module
 */

/** A service identity: `spiffe://<td>[/ap/<p>]/ns/<ns>/dc/<dc>/svc/<service>`. */
export interface ServiceSpiffeId {
  /** Discriminant. */
  kind: "service";
  /** `<cluster-id>.consul`. */
  trustDomain: string;
  /** Admin partition (`default` when absent from the URI). */
  partition: string;
  /** Namespace (`default` on CE). */
  namespace: string;
  /** Datacenter. */
  datacenter: string;
  /** Service name. */
  service: string;
}

/** A client agent identity: `spiffe://<td>[/ap/<p>]/agent/client/dc/<dc>/id/<node>`. */
export interface AgentSpiffeId {
  /** Discriminant. */
  kind: "agent";
  /** Trust domain. */
  trustDomain: string;
  /** Admin partition. */
  partition: string;
  /** Datacenter. */
  datacenter: string;
  /** Node ID. */
  agent: string;
}

/** A server identity (peering): `spiffe://<td>/agent/server/dc/<dc>`. */
export interface ServerSpiffeId {
  /** Discriminant. */
  kind: "server";
  /** Trust domain. */
  trustDomain: string;
  /** Datacenter. */
  datacenter: string;
}

/** A mesh gateway identity: `spiffe://<td>[/ap/<p>]/gateway/mesh/dc/<dc>`. */
export interface MeshGatewaySpiffeId {
  /** Discriminant. */
  kind: "mesh-gateway";
  /** Trust domain. */
  trustDomain: string;
  /** Admin partition. */
  partition: string;
  /** Datacenter. */
  datacenter: string;
}

/** The CA's own identity: `spiffe://<td>` with an empty path. */
export interface SigningSpiffeId {
  /** Discriminant. */
  kind: "signing";
  /** Trust domain. */
  trustDomain: string;
  /** The cluster ID: the trust domain up to its first dot. */
  clusterId: string;
}

/** Any identity Consul puts in a certificate. */
export type SpiffeId =
  | ServiceSpiffeId
  | AgentSpiffeId
  | ServerSpiffeId
  | MeshGatewaySpiffeId
  | SigningSpiffeId;

/**
 * The URI is not a SPIFFE ID Consul would accept.
 *
 * @example
 * ```ts
 * import { parseSpiffeId, SpiffeIdError } from "@meshgate/meshgate";
 * try { parseSpiffeId("https://example.com"); } catch (e) { console.log(e instanceof SpiffeIdError); }
 * ```
 */
export class SpiffeIdError extends Error {
  /**
   * Creates the error.
   * @param uri the rejected input (truncated)
   * @param detail why it was rejected
   */
  constructor(uri: string, detail: string) {
    super(`${detail}: ${uri.slice(0, 200)}`);
    this.name = "SpiffeIdError";
    this.uri = uri.slice(0, 200);
  }
  /** The rejected input (truncated). */
  readonly uri: string;
}

const SEG = "([^/]+)";
const SERVICE = new RegExp(`^(?:/ap/${SEG})?/ns/${SEG}/dc/${SEG}/svc/${SEG}$`);
const AGENT = new RegExp(`^(?:/ap/${SEG})?/agent/client/dc/${SEG}/id/${SEG}$`);
const GATEWAY = new RegExp(`^(?:/ap/${SEG})?/gateway/mesh/dc/${SEG}$`);
const SERVER = new RegExp(`^/agent/server/dc/${SEG}$`);

function unescape(uri: string, segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new SpiffeIdError(uri, "SPIFFE ID has a malformed escape");
  }
}

/**
 * Parses a SPIFFE URI as Consul does. The trust domain is lower-cased (hosts are
 * case-insensitive); names keep their case.
 *
 * @example
 * ```ts
 * import { parseSpiffeId } from "@meshgate/meshgate";
 * const id = parseSpiffeId("spiffe://1111.consul/ns/default/dc/dc1/svc/web");
 * if (id.kind === "service") console.log(id.service); // web
 * ```
 * @throws {SpiffeIdError} when the URI is not a Consul SPIFFE ID
 */
export function parseSpiffeId(uri: string): SpiffeId {
  if (typeof uri !== "string" || uri.length > 2048) {
    throw new SpiffeIdError(String(uri), "SPIFFE ID must be a string of at most 2048 characters");
  }
  const m = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\/([^/?#]*)([^?#]*)(?:\?[^#]*)?(?:#.*)?$/.exec(uri);
  if (!m) throw new SpiffeIdError(uri, "SPIFFE ID is not a URI");
  // Groups 1-3 are not optional: a match always sets them (possibly to "").
  if (m[1]!.toLowerCase() !== "spiffe") {
    throw new SpiffeIdError(uri, "SPIFFE ID must have 'spiffe' scheme");
  }
  const trustDomain = m[2]!.toLowerCase();
  const path = m[3]!;
  if (!trustDomain || /[@:\s]/.test(trustDomain)) {
    throw new SpiffeIdError(uri, "SPIFFE ID has an invalid trust domain");
  }
  // In the patterns below only the `/ap/<partition>` group (1) is optional; the `!` groups are
  // required by their pattern, so a match sets them.
  const u = (s: string) => unescape(uri, s);
  let r: RegExpExecArray | null;
  if ((r = SERVICE.exec(path))) {
    return {
      kind: "service",
      trustDomain,
      partition: r[1] ? u(r[1]).toLowerCase() : "default",
      namespace: u(r[2]!),
      datacenter: u(r[3]!),
      service: u(r[4]!),
    };
  }
  if ((r = AGENT.exec(path))) {
    return {
      kind: "agent",
      trustDomain,
      partition: r[1] ? u(r[1]).toLowerCase() : "default",
      datacenter: u(r[2]!),
      agent: u(r[3]!),
    };
  }
  if ((r = GATEWAY.exec(path))) {
    return {
      kind: "mesh-gateway",
      trustDomain,
      partition: r[1] ? u(r[1]).toLowerCase() : "default",
      datacenter: u(r[2]!),
    };
  }
  if ((r = SERVER.exec(path))) {
    return { kind: "server", trustDomain, datacenter: u(r[1]!) };
  }
  if (path === "" && trustDomain.includes(".")) {
    return {
      kind: "signing",
      trustDomain,
      clusterId: trustDomain.slice(0, trustDomain.indexOf(".")),
    };
  }
  throw new SpiffeIdError(uri, "SPIFFE ID is not in the expected format");
}

function esc(s: string): string {
  return encodeURIComponent(s);
}

/**
 * Formats a SPIFFE ID as Consul writes it (`/ap/<p>` only for a non-default partition).
 *
 * @example
 * ```ts
 * import { formatSpiffeId } from "@meshgate/meshgate";
 * console.log(formatSpiffeId({
 *   kind: "service", trustDomain: "1111.consul", partition: "default",
 *   namespace: "default", datacenter: "dc1", service: "web",
 * })); // spiffe://1111.consul/ns/default/dc/dc1/svc/web
 * ```
 */
export function formatSpiffeId(id: SpiffeId): string {
  const base = `spiffe://${id.trustDomain}`;
  const ap = (p: string) => (p && p !== "default" ? `/ap/${esc(p)}` : "");
  switch (id.kind) {
    case "service":
      return `${base}${ap(id.partition)}/ns/${esc(id.namespace)}/dc/${esc(id.datacenter)}/svc/${
        esc(id.service)
      }`;
    case "agent":
      return `${base}${ap(id.partition)}/agent/client/dc/${esc(id.datacenter)}/id/${esc(id.agent)}`;
    case "mesh-gateway":
      return `${base}${ap(id.partition)}/gateway/mesh/dc/${esc(id.datacenter)}`;
    case "server":
      return `${base}/agent/server/dc/${esc(id.datacenter)}`;
    case "signing":
      return base;
  }
}

/**
 * Builds a service SPIFFE ID with Consul's defaults for namespace and partition.
 *
 * @example
 * ```ts
 * import { serviceSpiffeId } from "@meshgate/meshgate";
 * const id = serviceSpiffeId({ trustDomain: "1111.consul", datacenter: "dc1", service: "db" });
 * console.log(id.namespace); // default
 * ```
 */
export function serviceSpiffeId(
  init: { trustDomain: string; datacenter: string; service: string } & Partial<ServiceSpiffeId>,
): ServiceSpiffeId {
  return {
    kind: "service",
    partition: "default",
    namespace: "default",
    ...init,
    trustDomain: init.trustDomain.toLowerCase(),
  };
}
