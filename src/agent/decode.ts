/**
 * Checks the agent's JSON before the rest of the proxy touches it. A body with a field of the
 * wrong type becomes one clear {@linkcode DecodeFailure} naming the field, never a `TypeError`
 * deep inside the data plane. Only the fields meshgate reads are checked; the rest pass through.
 *
 * Consul is written in Go, whose `encoding/json` writes an empty (nil) slice or map as `null`
 * unless the handler replaces it: `GET /v1/connect/intentions/match` answers `{"db": null}` when
 * nothing matches (1.22.7), a CA root without intermediates has `"IntermediateCerts": null`, a
 * prepared query's nodes may carry `"Checks": null`. The decoders accept `null` wherever Consul's
 * structs hold a slice or a map and replace it with `[]` or `{}`, as Consul means it, in the
 * value they are given (the freshly parsed body), so nothing downstream sees `null` for a list.
 * @module
 */
import type {
  AgentSelf,
  AgentService,
  AuthorizeResult,
  CAConfiguration,
  CARootList,
  CompiledDiscoveryChain,
  Intention,
  LeafCert,
  PreparedQueryResult,
  ServiceEntry,
} from "./types.ts";

/** A decoder turns an unknown JSON value into a typed one or throws {@linkcode DecodeFailure}. */
export type Decoder<T> = (value: unknown) => T;

/** Thrown by decoders; the client wraps it in an `AgentDecodeError` naming the endpoint. */
export class DecodeFailure extends Error {
  /**
   * Creates the error.
   * @param detail `path: what was expected`
   */
  constructor(detail: string) {
    super(detail);
    this.name = "DecodeFailure";
    this.detail = detail;
  }
  /** `path: what was expected`. */
  readonly detail: string;
}

type Kind = "string" | "number" | "boolean" | "object" | "array";

function kindOf(v: unknown): string {
  return v === null ? "null" : Array.isArray(v) ? "array" : typeof v;
}

function expect(v: unknown, kind: Kind, path: string): void {
  if (kindOf(v) !== kind) throw new DecodeFailure(`${path}: expected ${kind}, got ${kindOf(v)}`);
}

function obj(v: unknown, path: string): Record<string, unknown> {
  expect(v, "object", path);
  return v as Record<string, unknown>;
}

function fields(
  o: Record<string, unknown>,
  path: string,
  required: Record<string, Kind>,
  optional: Record<string, Kind> = {},
): void {
  for (const [k, kind] of Object.entries(required)) expect(o[k], kind, `${path}.${k}`);
  for (const [k, kind] of Object.entries(optional)) {
    if (o[k] !== undefined && o[k] !== null) expect(o[k], kind, `${path}.${k}`);
  }
}

/**
 * A list Consul may send as `null` (a nil Go slice): `null` becomes `[]` in `o`. A required list
 * may not be missing; an optional one that is missing stays missing.
 */
function list(
  o: Record<string, unknown>,
  key: string,
  path: string,
  required = false,
): unknown[] {
  if (o[key] === null) o[key] = [];
  if (o[key] === undefined && !required) return [];
  expect(o[key], "array", `${path}.${key}`);
  return o[key] as unknown[];
}

/** A map Consul may send as `null` (a nil Go map): `null` becomes `{}` in `o`. */
function map(
  o: Record<string, unknown>,
  key: string,
  path: string,
  required = false,
): Record<string, unknown> {
  if (o[key] === null) o[key] = {};
  if (o[key] === undefined && !required) return {};
  expect(o[key], "object", `${path}.${key}`);
  return o[key] as Record<string, unknown>;
}

function isPem(v: unknown): boolean {
  return typeof v === "string" && v.includes("-----BEGIN ");
}

/** Decodes `IndexedCARoots`; `Roots` and each root's `IntermediateCerts` may be `null`. */
export const decodeRoots: Decoder<CARootList> = (v) => {
  const o = obj(v, "$");
  fields(o, "$", { ActiveRootID: "string", TrustDomain: "string" });
  list(o, "Roots", "$", true).forEach((r, i) => {
    const path = `$.Roots[${i}]`;
    const root = obj(r, path);
    fields(root, path, {
      ID: "string",
      RootCert: "string",
      Active: "boolean",
    }, {
      SigningKeyID: "string",
      NotAfter: "string",
      NotBefore: "string",
    });
    list(root, "IntermediateCerts", path).forEach((pem, j) => {
      if (!isPem(pem)) throw new DecodeFailure(`${path}.IntermediateCerts[${j}]: not a PEM`);
    });
    if (!isPem(root.RootCert)) throw new DecodeFailure(`${path}.RootCert: not a PEM`);
  });
  return v as CARootList;
};

/** Decodes `IssuedCert`. */
export const decodeLeaf: Decoder<LeafCert> = (v) => {
  const o = obj(v, "$");
  fields(o, "$", {
    SerialNumber: "string",
    CertPEM: "string",
    PrivateKeyPEM: "string",
    Service: "string",
    ServiceURI: "string",
    ValidAfter: "string",
    ValidBefore: "string",
  });
  if (!isPem(o.CertPEM)) throw new DecodeFailure("$.CertPEM: not a PEM");
  if (!isPem(o.PrivateKeyPEM)) throw new DecodeFailure("$.PrivateKeyPEM: not a PEM");
  for (const k of ["ValidAfter", "ValidBefore"]) {
    if (Number.isNaN(Date.parse(o[k] as string))) {
      throw new DecodeFailure(`$.${k}: not an RFC 3339 time`);
    }
  }
  return v as LeafCert;
};

/** Decodes the authorize answer. */
export const decodeAuthorize: Decoder<AuthorizeResult> = (v) => {
  fields(obj(v, "$"), "$", { Authorized: "boolean" }, { Reason: "string" });
  return v as AuthorizeResult;
};

/** `api.AgentServiceConnectProxyConfig` (also `structs.ConnectProxyConfig` in health entries). */
function decodeProxy(p: Record<string, unknown>, path: string): void {
  fields(p, path, {}, {
    DestinationServiceName: "string",
    DestinationServiceID: "string",
    LocalServiceAddress: "string",
    LocalServicePort: "number",
    LocalServiceSocketPath: "string",
    Mode: "string",
    TransparentProxy: "object",
    MeshGateway: "object",
    Expose: "object",
  });
  map(p, "Config", path);
  list(p, "EnvoyExtensions", path);
  list(p, "Upstreams", path).forEach((u, i) => {
    const at = `${path}.Upstreams[${i}]`;
    const up = obj(u, at);
    fields(up, at, { DestinationName: "string" }, {
      DestinationType: "string",
      Datacenter: "string",
      LocalBindAddress: "string",
      LocalBindPort: "number",
      LocalBindSocketPath: "string",
      MeshGateway: "object",
    });
    map(up, "Config", at);
  });
  const expose = p.Expose as Record<string, unknown> | undefined;
  if (expose) list(expose, "Paths", `${path}.Expose`);
}

/** Decodes an `AgentService`; `null` tags, meta, upstreams and config become empty. */
export const decodeAgentService: Decoder<AgentService> = (v) => {
  const o = obj(v, "$");
  fields(o, "$", { ID: "string", Service: "string", Port: "number" }, {
    Kind: "string",
    Address: "string",
    ContentHash: "string",
    Proxy: "object",
    Weights: "object",
    TaggedAddresses: "object",
    Connect: "object",
  });
  list(o, "Tags", "$");
  map(o, "Meta", "$");
  if (o.Proxy) decodeProxy(o.Proxy as Record<string, unknown>, "$.Proxy");
  return v as AgentService;
};

/** Decodes the map of `GET /v1/agent/services` (`null` is no service). */
export const decodeAgentServices: Decoder<Record<string, AgentService>> = (v) => {
  const o = v === null ? {} : obj(v, "$");
  for (const [id, svc] of Object.entries(o)) {
    try {
      decodeAgentService(svc);
    } catch (err) {
      if (err instanceof DecodeFailure) throw new DecodeFailure(`$[${id}]${err.detail.slice(1)}`);
      throw err;
    }
  }
  return o as Record<string, AgentService>;
};

/** One `structs.CheckServiceNode`: node, service and checks, each list possibly `null`. */
function decodeEntry(e: unknown, path: string): void {
  const o = obj(e, path);
  const node = obj(o.Node, `${path}.Node`);
  fields(node, `${path}.Node`, { Node: "string", Address: "string" }, {
    Datacenter: "string",
  });
  map(node, "TaggedAddresses", `${path}.Node`);
  map(node, "Meta", `${path}.Node`);
  const svc = obj(o.Service, `${path}.Service`);
  fields(svc, `${path}.Service`, {
    ID: "string",
    Service: "string",
  }, { Address: "string", Port: "number", Kind: "string", Weights: "object" });
  list(svc, "Tags", `${path}.Service`);
  map(svc, "TaggedAddresses", `${path}.Service`);
  map(svc, "Meta", `${path}.Service`);
  if (svc.Proxy !== undefined) {
    decodeProxy(map(svc, "Proxy", `${path}.Service`), `${path}.Service.Proxy`);
  }
  list(o, "Checks", path, true).forEach((c, i) => {
    const check = obj(c, `${path}.Checks[${i}]`);
    fields(check, `${path}.Checks[${i}]`, { Status: "string" });
    list(check, "ServiceTags", `${path}.Checks[${i}]`);
  });
}

/** Decodes the list of `GET /v1/health/connect/:service` (`null` is no endpoint). */
export const decodeServiceEntries: Decoder<ServiceEntry[]> = (v) => {
  const entries = v === null ? [] : v;
  expect(entries, "array", "$");
  (entries as unknown[]).forEach((e, i) => decodeEntry(e, `$[${i}]`));
  return entries as ServiceEntry[];
};

/** Decodes a prepared query execution (`Nodes` may be `null`). */
export const decodePreparedQuery: Decoder<PreparedQueryResult> = (v) => {
  const o = obj(v, "$");
  fields(o, "$", {}, { Service: "string", Datacenter: "string", Failovers: "number" });
  list(o, "Nodes", "$", true).forEach((e, i) => decodeEntry(e, `$.Nodes[${i}]`));
  return v as PreparedQueryResult;
};

/** Decodes `{Chain: CompiledDiscoveryChain}` and returns the chain. */
export const decodeChain: Decoder<CompiledDiscoveryChain> = (v) => {
  const chain = obj(obj(v, "$").Chain, "$.Chain");
  fields(chain, "$.Chain", {
    ServiceName: "string",
    StartNode: "string",
  }, { Protocol: "string", Datacenter: "string" });
  const nodes = map(chain, "Nodes", "$.Chain", true);
  const targets = map(chain, "Targets", "$.Chain", true);
  map(chain, "ServiceMeta", "$.Chain");
  list(chain, "AutoVirtualIPs", "$.Chain");
  list(chain, "ManualVirtualIPs", "$.Chain");
  // Own keys only: `"constructor" in nodes` is true for any object.
  if (!Object.hasOwn(nodes, chain.StartNode as string)) {
    throw new DecodeFailure(`$.Chain.StartNode: ${chain.StartNode} is not in Nodes`);
  }
  for (const [key, n] of Object.entries(nodes)) {
    const at = `$.Chain.Nodes[${key}]`;
    const node = obj(n, at);
    fields(node, at, { Type: "string" }, { Resolver: "object", LoadBalancer: "object" });
    list(node, "Routes", at);
    list(node, "Splits", at).forEach((s, i) =>
      fields(obj(s, `${at}.Splits[${i}]`), `${at}.Splits[${i}]`, {}, {
        Weight: "number",
        NextNode: "string",
      })
    );
    const resolver = node.Resolver as Record<string, unknown> | undefined;
    if (resolver) {
      fields(resolver, `${at}.Resolver`, {}, {
        ConnectTimeout: "string",
        RequestTimeout: "number",
        Target: "string",
        Failover: "object",
      });
      const failover = resolver.Failover as Record<string, unknown> | undefined;
      if (failover) list(failover, "Targets", `${at}.Resolver.Failover`);
    }
  }
  for (const [id, t] of Object.entries(targets)) {
    const at = `$.Chain.Targets[${id}]`;
    const target = obj(t, at);
    fields(target, at, {
      Service: "string",
      Datacenter: "string",
    }, { ConnectTimeout: "string", Namespace: "string", Subset: "object" });
  }
  return chain as unknown as CompiledDiscoveryChain;
};

/** Decodes one intention (`Permissions` and `Meta` may be `null`). */
export const decodeIntention: Decoder<Intention> = (v) => {
  const o = obj(v, "$");
  fields(o, "$", { SourceName: "string", DestinationName: "string" }, {
    Action: "string",
    Precedence: "number",
  });
  list(o, "Permissions", "$");
  map(o, "Meta", "$");
  return v as Intention;
};

/** Decodes a list of intentions (`null` is none). */
export const decodeIntentions: Decoder<Intention[]> = (v) => {
  const all = v === null ? [] : v;
  expect(all, "array", "$");
  (all as unknown[]).forEach((i, n) => {
    try {
      decodeIntention(i);
    } catch (err) {
      if (err instanceof DecodeFailure) throw new DecodeFailure(`$[${n}]${err.detail.slice(1)}`);
      throw err;
    }
  });
  return all as Intention[];
};

/**
 * Decodes `GET /v1/connect/intentions/match`: intentions by the names asked for. Consul 1.22.7
 * answers `{"db": null}` for a name nothing matches; that becomes `{"db": []}`.
 */
export const decodeIntentionMatch: Decoder<Record<string, Intention[]>> = (v) => {
  const o = obj(v, "$");
  for (const name of Object.keys(o)) {
    list(o, name, "$", true).forEach((i, n) => {
      try {
        decodeIntention(i);
      } catch (err) {
        if (err instanceof DecodeFailure) {
          throw new DecodeFailure(`$.${name}[${n}]${err.detail.slice(1)}`);
        }
        throw err;
      }
    });
  }
  return o as Record<string, Intention[]>;
};

/** Decodes `GET /v1/agent/self`. */
export const decodeAgentSelf: Decoder<AgentSelf> = (v) => {
  fields(obj(obj(v, "$").Config, "$.Config"), "$.Config", {
    Datacenter: "string",
    NodeName: "string",
  });
  return v as AgentSelf;
};

/** Decodes the CA configuration (`Config` may be `null`; `State` stays as sent). */
export const decodeCAConfig: Decoder<CAConfiguration> = (v) => {
  const o = obj(v, "$");
  fields(o, "$", { Provider: "string" }, { State: "object" });
  map(o, "Config", "$", true);
  return v as CAConfiguration;
};

/** Decodes a JSON boolean (`true` from intention writes). */
export const decodeBoolean: Decoder<boolean> = (v) => {
  expect(v, "boolean", "$");
  return v as boolean;
};

/** Accepts anything: for bodies meshgate only passes along. */
export const decodeAny: Decoder<unknown> = (v) => v;
