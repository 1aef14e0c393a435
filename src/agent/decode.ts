/**
 * Checks the agent's JSON before the rest of the proxy touches it. A body with a field of the
 * wrong type becomes one clear {@linkcode DecodeFailure} naming the field, never a `TypeError`
 * deep inside the data plane. Only the fields meshgate reads are checked; the rest pass through.
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

function isPem(v: unknown): boolean {
  return typeof v === "string" && v.includes("-----BEGIN ");
}

/** Decodes `IndexedCARoots`. */
export const decodeRoots: Decoder<CARootList> = (v) => {
  const o = obj(v, "$");
  fields(o, "$", { ActiveRootID: "string", TrustDomain: "string", Roots: "array" });
  (o.Roots as unknown[]).forEach((r, i) => {
    const root = obj(r, `$.Roots[${i}]`);
    fields(root, `$.Roots[${i}]`, {
      ID: "string",
      RootCert: "string",
      Active: "boolean",
    }, {
      SigningKeyID: "string",
      IntermediateCerts: "array",
      NotAfter: "string",
      NotBefore: "string",
    });
    if (!isPem(root.RootCert)) throw new DecodeFailure(`$.Roots[${i}].RootCert: not a PEM`);
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

function decodeUpstreams(p: Record<string, unknown>, path: string): void {
  if (p.Upstreams === undefined || p.Upstreams === null) return;
  expect(p.Upstreams, "array", `${path}.Upstreams`);
  (p.Upstreams as unknown[]).forEach((u, i) => {
    fields(obj(u, `${path}.Upstreams[${i}]`), `${path}.Upstreams[${i}]`, {
      DestinationName: "string",
    }, {
      DestinationType: "string",
      Datacenter: "string",
      LocalBindAddress: "string",
      LocalBindPort: "number",
      LocalBindSocketPath: "string",
      Config: "object",
    });
  });
}

/** Decodes an `AgentService`. */
export const decodeAgentService: Decoder<AgentService> = (v) => {
  const o = obj(v, "$");
  fields(o, "$", { ID: "string", Service: "string", Port: "number" }, {
    Kind: "string",
    Address: "string",
    ContentHash: "string",
    Proxy: "object",
    Tags: "array",
    Meta: "object",
  });
  if (o.Proxy) {
    const p = o.Proxy as Record<string, unknown>;
    fields(p, "$.Proxy", {}, {
      DestinationServiceName: "string",
      DestinationServiceID: "string",
      LocalServiceAddress: "string",
      LocalServicePort: "number",
      LocalServiceSocketPath: "string",
      Config: "object",
    });
    decodeUpstreams(p, "$.Proxy");
  }
  return v as AgentService;
};

/** Decodes the map of `GET /v1/agent/services`. */
export const decodeAgentServices: Decoder<Record<string, AgentService>> = (v) => {
  const o = obj(v, "$");
  for (const [id, svc] of Object.entries(o)) {
    try {
      decodeAgentService(svc);
    } catch (err) {
      if (err instanceof DecodeFailure) throw new DecodeFailure(`$[${id}]${err.detail.slice(1)}`);
      throw err;
    }
  }
  return v as Record<string, AgentService>;
};

function decodeEntry(e: unknown, path: string): void {
  const o = obj(e, path);
  fields(obj(o.Node, `${path}.Node`), `${path}.Node`, { Node: "string", Address: "string" }, {
    Datacenter: "string",
  });
  fields(obj(o.Service, `${path}.Service`), `${path}.Service`, {
    ID: "string",
    Service: "string",
  }, { Address: "string", Port: "number", Kind: "string", Proxy: "object", Weights: "object" });
  expect(o.Checks, "array", `${path}.Checks`);
  (o.Checks as unknown[]).forEach((c, i) =>
    fields(obj(c, `${path}.Checks[${i}]`), `${path}.Checks[${i}]`, { Status: "string" })
  );
}

/** Decodes the list of `GET /v1/health/connect/:service`. */
export const decodeServiceEntries: Decoder<ServiceEntry[]> = (v) => {
  expect(v, "array", "$");
  (v as unknown[]).forEach((e, i) => decodeEntry(e, `$[${i}]`));
  return v as ServiceEntry[];
};

/** Decodes a prepared query execution. */
export const decodePreparedQuery: Decoder<PreparedQueryResult> = (v) => {
  const o = obj(v, "$");
  fields(o, "$", { Nodes: "array" }, { Service: "string", Datacenter: "string" });
  (o.Nodes as unknown[]).forEach((e, i) => decodeEntry(e, `$.Nodes[${i}]`));
  return v as PreparedQueryResult;
};

/** Decodes `{Chain: CompiledDiscoveryChain}` and returns the chain. */
export const decodeChain: Decoder<CompiledDiscoveryChain> = (v) => {
  const chain = obj(obj(v, "$").Chain, "$.Chain");
  fields(chain, "$.Chain", {
    ServiceName: "string",
    StartNode: "string",
    Nodes: "object",
    Targets: "object",
  }, { Protocol: "string", Datacenter: "string" });
  const nodes = chain.Nodes as Record<string, unknown>;
  if (!(chain.StartNode as string in nodes)) {
    throw new DecodeFailure(`$.Chain.StartNode: ${chain.StartNode} is not in Nodes`);
  }
  for (const [key, node] of Object.entries(nodes)) {
    fields(obj(node, `$.Chain.Nodes[${key}]`), `$.Chain.Nodes[${key}]`, { Type: "string" }, {
      Resolver: "object",
      Splits: "array",
    });
  }
  for (const [id, t] of Object.entries(chain.Targets as Record<string, unknown>)) {
    fields(obj(t, `$.Chain.Targets[${id}]`), `$.Chain.Targets[${id}]`, {
      Service: "string",
      Datacenter: "string",
    }, { ConnectTimeout: "string", Namespace: "string" });
  }
  return chain as unknown as CompiledDiscoveryChain;
};

/** Decodes one intention. */
export const decodeIntention: Decoder<Intention> = (v) => {
  fields(obj(v, "$"), "$", { SourceName: "string", DestinationName: "string" }, {
    Action: "string",
    Precedence: "number",
  });
  return v as Intention;
};

/** Decodes a list of intentions. */
export const decodeIntentions: Decoder<Intention[]> = (v) => {
  expect(v, "array", "$");
  (v as unknown[]).forEach((i) => decodeIntention(i));
  return v as Intention[];
};

/** Decodes `GET /v1/connect/intentions/match`: intentions by the names asked for. */
export const decodeIntentionMatch: Decoder<Record<string, Intention[]>> = (v) => {
  for (const [name, list] of Object.entries(obj(v, "$"))) {
    expect(list, "array", `$.${name}`);
    (list as unknown[]).forEach((i) => decodeIntention(i));
  }
  return v as Record<string, Intention[]>;
};

/** Decodes `GET /v1/agent/self`. */
export const decodeAgentSelf: Decoder<AgentSelf> = (v) => {
  fields(obj(obj(v, "$").Config, "$.Config"), "$.Config", {
    Datacenter: "string",
    NodeName: "string",
  });
  return v as AgentSelf;
};

/** Decodes the CA configuration. */
export const decodeCAConfig: Decoder<CAConfiguration> = (v) => {
  fields(obj(v, "$"), "$", { Provider: "string", Config: "object" });
  return v as CAConfiguration;
};

/** Decodes a JSON boolean (`true` from intention writes). */
export const decodeBoolean: Decoder<boolean> = (v) => {
  expect(v, "boolean", "$");
  return v as boolean;
};

/** Accepts anything: for bodies meshgate only passes along. */
export const decodeAny: Decoder<unknown> = (v) => v;
