/**
 * Consul's authorize decision from a list of intentions (spec §4, steps 5–7): the first
 * intention, by precedence, whose destination and source match decides; an L7 intention denies
 * an L4 connection. Used to re-check open connections the moment intentions change (the agent's
 * own authorize answers from a cache that can lag behind), and by the test double.
 * @module
 */
import type { Intention } from "../agent/types.ts";
import type { ServiceSpiffeId } from "../trust/spiffe.ts";

/** What the matching intention says. */
export interface IntentionDecision {
  /** Whether the connection is allowed. */
  authorized: boolean;
  /** Consul's reason text. */
  reason: string;
  /** The intention that decided. */
  intention: Intention;
}

/**
 * Decides from `intentions` (highest precedence first), or `undefined` when none matches (the
 * agent's default policy decides then).
 *
 * @example
 * ```ts
 * import { decideByIntentions } from "./decide.ts";
 * import { parseSpiffeId, type ServiceSpiffeId } from "@meshgate/meshgate";
 * const web = parseSpiffeId("spiffe://1111.consul/ns/default/dc/dc1/svc/web") as ServiceSpiffeId;
 * const d = decideByIntentions([], "db", web);
 * console.log(d); // undefined: no intention matches
 * ```
 */
export function decideByIntentions(
  intentions: readonly Intention[],
  destination: string,
  client: ServiceSpiffeId,
): IntentionDecision | undefined {
  for (const ixn of intentions) {
    if (ixn.DestinationName !== "*" && ixn.DestinationName !== destination) continue;
    if (ixn.SourcePeer) continue; // peer intentions never match local certificates
    if ((ixn.SourcePartition || "default") !== client.partition) continue;
    if (ixn.SourceNS !== "*" && ixn.SourceNS !== client.namespace) continue;
    if (ixn.SourceName !== "*" && ixn.SourceName !== client.service) continue;
    const text = `${ixn.SourceNS}/${ixn.SourceName} => ${ixn.DestinationNS}/${ixn.DestinationName}`;
    if (ixn.Permissions?.length) {
      return {
        authorized: false,
        reason:
          `Matched L7 intention: ${text} (Precedence: ${ixn.Precedence}, Permissions: ${ixn.Permissions.length})`,
        intention: ixn,
      };
    }
    return {
      authorized: ixn.Action === "allow",
      reason:
        `Matched L4 intention: ${text} (Precedence: ${ixn.Precedence}, Action: ${ixn.Action?.toUpperCase()})`,
      intention: ixn,
    };
  }
  return undefined;
}
