/**
 * The double's intentions (by-name API and `service-intentions` config entries) and the
 * authorize decision of Consul's §4: first match by precedence, L7 means deny, and a default
 * when nothing matches (decided by the double's own {@linkcode authorizeByIntentions}, not by
 * the proxy's code it is meant to check).
 *
 * As Consul CE does: a `namespace/name` or `partition/namespace/name` in an intention name is
 * read as `name` in the default namespace when written, and refused by reads unless the
 * namespace is `default`; L7 intentions (`Permissions`) need an HTTP-like protocol on their
 * destination.
 * @module
 */
import type { AuthorizeResult, Intention } from "../agent/types.ts";
import {
  authorizeByIntentions,
  compareByPrecedence,
  intentionPrecedence,
} from "./intention_decision.ts";
import { parseSpiffeId, SpiffeIdError } from "../trust/spiffe.ts";
import { BadRequest, type Schema, strictDecode } from "./strict.ts";
import type { Store } from "./store.ts";

const INTENTION_SCHEMA: Schema = {
  ID: true,
  Description: true,
  SourceNS: true,
  SourceName: true,
  DestinationNS: true,
  DestinationName: true,
  SourcePartition: true,
  DestinationPartition: true,
  SourcePeer: true,
  SourceSamenessGroup: true,
  SourceType: true,
  Action: true,
  Permissions: true,
  JWT: true,
  Meta: true,
  Precedence: true,
  CreateIndex: true,
  ModifyIndex: true,
  CreatedAt: true,
  UpdatedAt: true,
  Hash: true,
  LegacyID: true,
  LegacyMeta: true,
  LegacyCreateTime: true,
  LegacyUpdateTime: true,
  DefaultAddr: true,
  DefaultPort: true,
};
const AUTHORIZE_SCHEMA: Schema = {
  Target: true,
  ClientCertURI: true,
  ClientCertSerial: true,
  Namespace: true,
  Partition: true,
};

/** The store topic intentions bump. */
export const INTENTIONS_TOPIC = "intentions";

/** Protocols L7 intentions accept on their destination (`structs.IsProtocolHTTPLike`). */
const HTTP_LIKE = new Set(["http", "http2", "grpc"]);

/** One source of a `service-intentions` config entry, as the double reads it. */
export interface SourceInput {
  /** Source service or `*`. */
  Name?: string;
  /** The peer the source lives in (never matches a local caller). */
  Peer?: string;
  /** `allow` or `deny`; omitted when `Permissions` are given. */
  Action?: string;
  /** L7 permissions: authorize denies every caller such a source matches. */
  Permissions?: unknown[];
  /** Free text. */
  Description?: string;
  /** `consul` (the default). */
  Type?: string;
}

/** An intention name split as Consul's `parseIntentionStringComponent` splits it. */
interface ParsedName {
  peer: string;
  partition: string;
  namespace: string;
  name: string;
}

/**
 * Splits `[partition/][namespace/]name` (or `peer:<peer>/[namespace/]name` where a peer is
 * allowed). A missing value (`null`) is Consul's `required query parameter '<kind>' not set`;
 * the exact writes count an empty one as missing, the reads do not.
 */
function parseName(kind: string, input: string | null, allowPeer: boolean): ParsedName {
  if (input === null) throw new BadRequest(`required query parameter '${kind}' not set`, 500);
  const invalid = (why: string) => new BadRequest(`${kind} "${input}" is invalid: ${why}`, 500);
  const peered = input.startsWith("peer:");
  if (peered && !allowPeer) throw invalid("cannot specify a peer here");
  const parts = input.split("/");
  const none = { peer: "", partition: "", namespace: "" };
  switch (parts.length) {
    case 1:
      if (peered) throw invalid("need to specify the service name as well");
      return { ...none, name: parts[0]! };
    case 2:
      return peered
        ? { ...none, peer: parts[0]!.slice(5), name: parts[1]! }
        : { ...none, namespace: parts[0]!, name: parts[1]! };
    case 3:
      return peered
        ? { ...none, peer: parts[0]!.slice(5), namespace: parts[1]!, name: parts[2]! }
        : { ...none, partition: parts[0]!, namespace: parts[1]!, name: parts[2]! };
    default:
      throw invalid("input can contain at most two '/'");
  }
}

/** A read names a namespace: CE answers only for `default` (the empty one means it too). */
function requireDefault(what: string, value: string, feature = "Namespaces"): void {
  if (value !== "" && value !== "default") {
    throw new BadRequest(`${what} "${value}": ${feature} is a Consul Enterprise feature`, 500);
  }
}

const pairKey = (peer: string, source: string, destination: string) =>
  `${peer}\u0000${source}\u0000${destination}`;

/** A source's precedence toward `destination` (namespace `default` on both sides). */
function precedence(source: string, destination: string): number {
  return intentionPrecedence({
    SourceNS: "default",
    SourceName: source,
    DestinationNS: "default",
    DestinationName: destination,
  });
}

/** `Name: wildcard character '*' cannot be used with partial values` (`validateIntentionWildcards`). */
function partialWildcard(name: string): boolean {
  return name !== "*" && name.includes("*");
}

/** Copies permissions as Consul normalizes them (HTTP methods upper-cased). */
function normalizePermissions(permissions: unknown[]): unknown[] {
  return permissions.map((p) => {
    const perm = structuredClone(p) as { HTTP?: { Methods?: unknown[] } };
    const methods = perm?.HTTP?.Methods;
    if (Array.isArray(methods)) {
      perm.HTTP!.Methods = methods.map((m) => typeof m === "string" ? m.toUpperCase() : m);
    }
    return perm;
  });
}

/**
 * Consul's `ServiceIntentionsConfigEntry` normalize and validate for the sources of
 * `destination`: sorted by precedence (stable), then checked in order with Consul's texts
 * (`Sources[i]` counts in that order). Returns the sorted sources.
 * @throws {BadRequest} 500 with the first problem
 */
function validateSources(destination: string, sources: SourceInput[]): SourceInput[] {
  const fail = (message: string) => new BadRequest(message, 500);
  if (partialWildcard(destination)) {
    throw fail("Name: wildcard character '*' cannot be used with partial values");
  }
  if (!sources.length) throw fail("At least one source is required");
  const sorted = sources.map((s, i) => ({ s, i, p: precedence(s.Name ?? "", destination) }))
    .sort((a, b) => b.p - a.p || a.i - b.i).map((x) => x.s);
  const seen = new Set<string>();
  sorted.forEach((src, i) => {
    const at = `Sources[${i}]`;
    if (!src.Name) throw fail(`${at}.Name is required`);
    if (partialWildcard(src.Name)) {
      throw fail(`${at}.Name: wildcard character '*' cannot be used with partial values`);
    }
    const permissions = src.Permissions ?? [];
    if (!permissions.length && src.Action !== "allow" && src.Action !== "deny") {
      throw fail(`${at}.Action must be set to 'allow' or 'deny'`);
    }
    if (permissions.length && src.Action) {
      throw fail(`${at}.Action must be omitted if Permissions are specified`);
    }
    if (permissions.length && destination === "*") {
      throw fail(
        `${at}.Permissions cannot be specified on intentions with wildcarded destinations`,
      );
    }
    if ((src.Type || "consul") !== "consul") throw fail(`${at}.Type must be set to 'consul'`);
    permissions.forEach((raw, j) => validatePermission(raw, `${at}.Permissions[${j}]`));
    const key = pairKey(src.Peer ?? "", src.Name, "");
    if (seen.has(key)) {
      throw fail(
        src.Peer
          ? `${at} defines peer(${JSON.stringify(src.Peer)}) ${
            JSON.stringify(src.Name)
          } more than once`
          : `${at} defines ${JSON.stringify(src.Name)} more than once`,
      );
    }
    seen.add(key);
  });
  return sorted;
}

/** One L7 permission: an action and a non-empty `HTTP` match with at most one path rule. */
function validatePermission(raw: unknown, at: string): void {
  const fail = (message: string) => new BadRequest(message, 500);
  const perm = (raw && typeof raw === "object" ? raw : {}) as {
    Action?: unknown;
    HTTP?: Record<string, unknown> | null;
  };
  if (perm.Action !== "allow" && perm.Action !== "deny") {
    throw fail(`${at}.Action must be set to 'allow' or 'deny'`);
  }
  const http = perm.HTTP;
  if (!http || typeof http !== "object") throw fail(`${at}.HTTP is required`);
  let paths = 0;
  for (const field of ["PathExact", "PathPrefix", "PathRegex"]) {
    const value = http[field];
    if (typeof value !== "string" || value === "") continue;
    paths++;
    if (field !== "PathRegex" && !value.startsWith("/")) {
      throw fail(`${at}.HTTP.${field} doesn't start with '/': ${JSON.stringify(value)}`);
    }
  }
  if (paths > 1) {
    throw fail(`${at}.HTTP should only contain at most one of PathExact, PathPrefix, or PathRegex`);
  }
  const headers = Array.isArray(http.Header) ? http.Header.length : 0;
  const methods = Array.isArray(http.Methods) && http.Methods.length ? 1 : 0;
  if (paths + headers + methods === 0) throw fail(`${at}.HTTP should not be empty`);
}

/** Intentions and authorization of the double. */
export class Intentions {
  readonly #store: Store;
  /** By (peer, source, destination), in the order each destination's entry lists them. */
  readonly #byPair = new Map<string, Intention>();
  readonly #protocolOf: (service: string) => string;
  /** What authorize answers when no intention matches. */
  defaultAllow: boolean;

  /**
   * Creates it; see the class documentation.
   * @param protocolOf the protocol of a service's discovery chain (`tcp` unless config
   *   entries say otherwise), which L7 intentions need to be HTTP-like
   */
  constructor(
    store: Store,
    defaultAllow: boolean,
    protocolOf: (service: string) => string = () => "tcp",
  ) {
    this.#store = store;
    this.defaultAllow = defaultAllow;
    this.#protocolOf = protocolOf;
  }

  /** The intentions of `destination` as its config entry lists them (write order). */
  #sourcesOf(destination: string): Intention[] {
    return [...this.#byPair.values()].filter((i) => i.DestinationName === destination);
  }

  /** The state store's check: L7 permissions need an HTTP-like protocol on the destination. */
  #checkProtocol(destination: string, sources: SourceInput[]): void {
    if (destination === "*" || !sources.some((s) => s.Permissions?.length)) return;
    const protocol = this.#protocolOf(destination);
    if (!HTTP_LIKE.has(protocol)) {
      throw new BadRequest(
        `service "${destination}" has protocol "${protocol}", which is incompatible with L7 intentions permissions`,
        500,
      );
    }
  }

  /** Destinations that have an intention with L7 permissions. */
  l7Destinations(): string[] {
    const names = new Set<string>();
    for (const i of this.#byPair.values()) if (i.Permissions?.length) names.add(i.DestinationName);
    return [...names].sort();
  }

  #record(destination: string, src: SourceInput, index: number, existing?: Intention): Intention {
    const permissions = src.Permissions?.length ? normalizePermissions(src.Permissions) : [];
    return {
      ...(src.Description ? { Description: src.Description } : {}),
      SourceNS: "default",
      SourceName: src.Name!,
      DestinationNS: "default",
      DestinationName: destination,
      ...(src.Peer ? { SourcePeer: src.Peer } : {}),
      SourceType: "consul",
      ...(permissions.length
        ? { Permissions: permissions }
        : { Action: src.Action as "allow" | "deny" }),
      Precedence: precedence(src.Name!, destination),
      CreateIndex: existing?.CreateIndex ?? index,
      ModifyIndex: index,
    };
  }

  /**
   * `PUT /v1/connect/intentions/exact`: a namespace or partition in either name is dropped (CE).
   * The pair is validated as Consul validates the destination's entry it ends up in.
   */
  upsert(source: string | null, destination: string | null, rawBody: unknown): void {
    const src = parseName("source", source || null, false);
    const dst = parseName("destination", destination || null, false);
    const body = strictDecode(rawBody, INTENTION_SCHEMA) as Partial<Intention>;
    const key = pairKey("", src.name, dst.name);
    const input: SourceInput = {
      Name: src.name,
      Action: body.Action,
      Permissions: body.Permissions ?? undefined,
      Description: body.Description,
    };
    // The entry as it would be: this source replaces its own, or joins at the end.
    const sources: SourceInput[] = this.#sourcesOf(dst.name).map((i) =>
      i.SourceName === src.name && !i.SourcePeer ? input : {
        Name: i.SourceName,
        Peer: i.SourcePeer,
        Action: i.Action,
        Permissions: i.Permissions,
      }
    );
    if (!this.#byPair.has(key)) sources.push(input);
    validateSources(dst.name, sources);
    this.#checkProtocol(dst.name, [input]);
    // Store first, then bump: waiters re-check their condition during the bump.
    const index = this.#store.index + 1;
    this.#byPair.set(key, this.#record(dst.name, input, index, this.#byPair.get(key)));
    this.#store.bump(INTENTIONS_TOPIC);
  }

  /**
   * A `service-intentions` config entry: validated as Consul validates it, then replaces every
   * intention of `destination` with `sources` in one write, as Consul stores them.
   */
  replaceDestination(destination: string, sources: SourceInput[]): void {
    const sorted = validateSources(destination, sources);
    this.#checkProtocol(destination, sorted);
    const index = this.#store.index + 1;
    this.#removeDestination(destination);
    for (const s of sorted) {
      this.#byPair.set(
        pairKey(s.Peer ?? "", s.Name!, destination),
        this.#record(destination, s, index),
      );
    }
    this.#store.bump(INTENTIONS_TOPIC);
  }

  /** Deleting a `service-intentions` entry: every intention of `destination` goes (idempotent). */
  deleteDestination(destination: string): void {
    if (this.#removeDestination(destination)) this.#store.bump(INTENTIONS_TOPIC);
  }

  #removeDestination(destination: string): boolean {
    let removed = false;
    for (const [key, ixn] of this.#byPair) {
      if (ixn.DestinationName === destination) removed = this.#byPair.delete(key);
    }
    return removed;
  }

  /**
   * `GET …/exact`; `undefined` when missing. The source may name a peer; a namespace other than
   * `default` is a 500 (`Invalid SourceNS "x": Namespaces is a Consul Enterprise feature`).
   */
  get(source: string | null, destination: string | null): Intention | undefined {
    const src = parseName("source", source, true);
    const dst = parseName("destination", destination, false);
    requireDefault("Invalid SourceNS", src.namespace);
    requireDefault("Invalid DestinationNS", dst.namespace);
    return this.#byPair.get(pairKey(src.peer, src.name, dst.name));
  }

  /** `DELETE …/exact`: idempotent; a namespace or partition in either name is dropped (CE). */
  delete(source: string | null, destination: string | null): void {
    const src = parseName("source", source || null, false);
    const dst = parseName("destination", destination || null, false);
    if (this.#byPair.delete(pairKey("", src.name, dst.name))) this.#store.bump(INTENTIONS_TOPIC);
  }

  /** Every intention, highest precedence first, with Consul's tie-break (byte order of names). */
  list(): Intention[] {
    return [...this.#byPair.values()].sort(compareByPrecedence);
  }

  /**
   * `GET /v1/connect/intentions/match`: each name as given maps to the intentions whose source
   * (or destination) covers it, in evaluation order, or `null` when none does (a nil Go slice).
   * A name in another namespace or partition is a 500, as CE answers.
   */
  match(
    by: "source" | "destination",
    names: readonly string[],
  ): Record<string, Intention[] | null> {
    const parsed = names.map((n) => {
      const p = parseName("name", n, false);
      requireDefault("Invalid match entry namespace", p.namespace);
      requireDefault("Invalid match entry partition", p.partition, "Partitions");
      return [n, p.name] as const;
    });
    const all = this.list();
    const field = by === "source" ? "SourceName" : "DestinationName";
    return Object.fromEntries(parsed.map(([raw, name]) => {
      const matched = all.filter((i) => i[field] === "*" || i[field] === name);
      return [raw, matched.length ? matched : null];
    }));
  }

  /**
   * `GET /v1/connect/intentions/check`: would `source` reach `destination` (what authorize
   * answers)? A namespace other than `default` is a 500; a partition part is ignored (CE).
   */
  check(source: string | null, destination: string | null): boolean {
    const src = parseName("source", source, false);
    const dst = parseName("destination", destination, false);
    requireDefault("Invalid source namespace", src.namespace);
    requireDefault("Invalid destination namespace", dst.namespace);
    const party = (name: string) => ({ name, namespace: "default", partition: "default" });
    return authorizeByIntentions(this.list(), party(dst.name), party(src.name), this.defaultAllow)
      .Authorized;
  }

  /** `POST /v1/agent/connect/authorize`. */
  authorize(rawBody: unknown): AuthorizeResult {
    const body = strictDecode(rawBody, AUTHORIZE_SCHEMA) as {
      Target?: string;
      ClientCertURI?: string;
      Namespace?: string;
      Partition?: string;
    };
    if (body.Namespace !== undefined || body.Partition !== undefined) {
      throw new BadRequest(
        `Request decode failed: json: unknown field "${
          body.Namespace !== undefined ? "Namespace" : "Partition"
        }"`,
      );
    }
    if (!body.Target) throw new BadRequest("Target service must be specified");
    let id;
    try {
      id = parseSpiffeId(body.ClientCertURI ?? "");
    } catch (err) {
      if (err instanceof SpiffeIdError) {
        throw new BadRequest("ClientCertURI not a valid Connect identifier");
      }
      throw err;
    }
    if (id.kind !== "service") {
      throw new BadRequest("ClientCertURI not a valid Service identifier");
    }
    if (id.partition !== "default") {
      throw new BadRequest(`Mismatched partitions: "${id.partition}" != "default"`);
    }
    return authorizeByIntentions(
      this.list(),
      { name: body.Target, namespace: "default", partition: "default" },
      { name: id.service, namespace: id.namespace, partition: id.partition },
      this.defaultAllow,
    );
  }
}
