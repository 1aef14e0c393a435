/**
 * The double's own copy of Consul's authorize decision, written from Consul 1.22's source rather
 * than from the proxy's `src/intentions/decide.ts`, so that a bug in one shows up as a
 * disagreement with the other instead of being shared by both:
 *
 * - precedence: `structs.Intention.UpdatePrecedence` (9 down to 1 by how many of the
 *   destination's and the source's namespace and name are exact);
 * - order: `structs.IntentionPrecedenceSorter` (precedence, highest first, then the byte order of
 *   source namespace, source name, destination namespace, destination name);
 * - match: the intention-match query by destination, then `connect.IntentionMatch` by source,
 *   first match wins (`agent_endpoint.go`, `AgentConnectAuthorize`);
 * - decide: an L4 intention answers its `Action`, an L7 one (with `Permissions`) denies, and
 *   nothing matching answers the ACL default, with Consul's reason texts.
 * @module
 */
import type { AuthorizeResult, Intention } from "../agent/types.ts";

/** Consul's wildcard (`structs.WildcardSpecifier`). */
const WILDCARD = "*";

/** The fields an intention's precedence depends on. */
export type IntentionNames = Pick<
  Intention,
  "SourceNS" | "SourceName" | "DestinationNS" | "DestinationName"
>;

/** Who asks (the client certificate's service) or what is asked for (the target). */
export interface IntentionParty {
  /** Service name. */
  name: string;
  /** Namespace (`default` on CE). */
  namespace: string;
  /** Admin partition (`default` on CE; empty counts as `default`). */
  partition: string;
}

/** `countExact`: a wildcard namespace counts 0, a wildcard name 1, both exact 2. */
function countExact(namespace: string, name: string): number {
  if (namespace === WILDCARD) return 0;
  if (name === WILDCARD) return 1;
  return 2;
}

/**
 * Consul's `UpdatePrecedence`: 9, 6 or 3 by the destination's exact parts, minus what the source
 * lacks. On CE (namespace `default`) only 9 (web→db), 8 (*→db), 6 (web→*) and 5 (*→*) occur.
 *
 * @example
 * ```ts
 * import { intentionPrecedence } from "./intention_decision.ts";
 * const p = intentionPrecedence({
 *   SourceNS: "default",
 *   SourceName: "*",
 *   DestinationNS: "default",
 *   DestinationName: "db",
 * });
 * console.log(p); // 8
 * ```
 */
export function intentionPrecedence(ixn: IntentionNames): number {
  const max = [3, 6, 9][countExact(ixn.DestinationNS, ixn.DestinationName)] ?? 0;
  return max - (2 - countExact(ixn.SourceNS, ixn.SourceName));
}

/** Go's string `<`: byte order of the UTF-8 encoding, which is code point order. */
function compareGoStrings(a: string, b: string): number {
  if (a === b) return 0;
  const x = [...a];
  const y = [...b];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i]!.codePointAt(0)! - y[i]!.codePointAt(0)!;
    if (d !== 0) return d;
  }
  return x.length - y.length;
}

/**
 * Consul's `IntentionPrecedenceSorter` as a comparator: higher precedence first, ties broken by
 * the byte order of (SourceNS, SourceName, DestinationNS, DestinationName).
 *
 * @example
 * ```ts
 * import { compareByPrecedence } from "./intention_decision.ts";
 * const ixn = (src: string, dst: string, p: number) => ({
 *   SourceNS: "default",
 *   SourceName: src,
 *   DestinationNS: "default",
 *   DestinationName: dst,
 *   Precedence: p,
 * });
 * const sorted = [ixn("*", "db", 8), ixn("b", "db", 9), ixn("B", "db", 9)].sort(
 *   compareByPrecedence,
 * );
 * console.log(sorted.map((i) => i.SourceName)); // ["B", "b", "*"]
 * ```
 */
export function compareByPrecedence(
  a: IntentionNames & { Precedence: number },
  b: IntentionNames & { Precedence: number },
): number {
  return b.Precedence - a.Precedence ||
    compareGoStrings(a.SourceNS, b.SourceNS) ||
    compareGoStrings(a.SourceName, b.SourceName) ||
    compareGoStrings(a.DestinationNS, b.DestinationNS) ||
    compareGoStrings(a.DestinationName, b.DestinationName);
}

const orDefault = (partition: string | undefined) => partition || "default";

/** The intention-match query by destination: would this intention apply to `target`? */
function coversDestination(ixn: Intention, target: IntentionParty): boolean {
  return orDefault(ixn.DestinationPartition) === orDefault(target.partition) &&
    (ixn.DestinationNS === WILDCARD || ixn.DestinationNS === target.namespace) &&
    (ixn.DestinationName === WILDCARD || ixn.DestinationName === target.name);
}

/**
 * `connect.IntentionMatch` by source, with the empty peer a local certificate has: a peer's
 * intention never matches it.
 */
function coversSource(ixn: Intention, source: IntentionParty): boolean {
  return (ixn.SourcePeer ?? "") === "" &&
    orDefault(ixn.SourcePartition) === orDefault(source.partition) &&
    (ixn.SourceNS === WILDCARD || ixn.SourceNS === source.namespace) &&
    (ixn.SourceName === WILDCARD || ixn.SourceName === source.name);
}

/**
 * `Intention.String()` as Consul 1.22 writes it into the reason: partitions or peer only when
 * set, the ID only when there is one, then the precedence and the action, or the number of
 * permissions for an L7 intention.
 *
 * @example
 * ```ts
 * import { intentionText } from "./intention_decision.ts";
 * const text = intentionText({
 *   SourceNS: "default",
 *   SourceName: "web",
 *   DestinationNS: "default",
 *   DestinationName: "*",
 *   SourceType: "consul",
 *   Action: "deny",
 *   Precedence: 6,
 *   CreateIndex: 1,
 *   ModifyIndex: 1,
 * });
 * console.log(text); // default/web => default/* (Precedence: 6, Action: DENY)
 * ```
 */
export function intentionText(ixn: Intention): string {
  const source = ixn.SourcePeer
    ? `peer(${ixn.SourcePeer})/`
    : ixn.SourcePartition
    ? `${ixn.SourcePartition}/`
    : "";
  const destination = ixn.DestinationPartition ? `${ixn.DestinationPartition}/` : "";
  const id = ixn.ID ? `ID: ${ixn.ID}, ` : "";
  const detail = ixn.Permissions?.length
    ? `Permissions: ${ixn.Permissions.length}`
    : `Action: ${(ixn.Action ?? "").toUpperCase()}`;
  return `${source}${ixn.SourceNS}/${ixn.SourceName} => ${destination}${ixn.DestinationNS}/${ixn.DestinationName} (${id}Precedence: ${ixn.Precedence}, ${detail})`;
}

/**
 * Consul's authorize decision over every intention the agent knows: those covering `target`,
 * in precedence order; the first whose source covers `source` decides (an L7 intention denies,
 * as the endpoint cannot evaluate HTTP); none matching answers `defaultAllow` with the reason
 * of an agent whose ACL default decides.
 *
 * @example
 * ```ts
 * import { authorizeByIntentions } from "./intention_decision.ts";
 * const party = (name: string) => ({ name, namespace: "default", partition: "default" });
 * const r = authorizeByIntentions([], party("db"), party("web"), true);
 * console.log(r); // { Authorized: true, Reason: "Default behavior configured by ACLs" }
 * ```
 */
export function authorizeByIntentions(
  intentions: readonly Intention[],
  target: IntentionParty,
  source: IntentionParty,
  defaultAllow: boolean,
): AuthorizeResult {
  const matches = intentions.filter((ixn) => coversDestination(ixn, target))
    .sort(compareByPrecedence);
  const match = matches.find((ixn) => coversSource(ixn, source));
  if (!match) return { Authorized: defaultAllow, Reason: "Default behavior configured by ACLs" };
  if (match.Permissions?.length) {
    return { Authorized: false, Reason: `Matched L7 intention: ${intentionText(match)}` };
  }
  return {
    Authorized: match.Action === "allow",
    Reason: `Matched L4 intention: ${intentionText(match)}`,
  };
}
