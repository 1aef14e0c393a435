/**
 * Intentions that bite on open connections (hashicorp/consul#5277, #6454): watch the intentions
 * that apply to our service and, on every change, re-check each distinct caller among the open
 * inbound connections; close the connections of callers that are now denied.
 *
 * The decision comes from the fresh intention list itself when an intention matches (the agent's
 * authorize answers from a cache that can lag behind a change by tens of seconds); when none
 * matches, the agent's authorize decides (its default policy). An agent that cannot answer
 * closes nothing: a control-plane outage must not cut healthy connections.
 * @module
 */
import type { AgentClient } from "../agent/client.ts";
import type { Intention } from "../agent/types.ts";
import type { Logger } from "../net/log.ts";
import { parseSpiffeId, type ServiceSpiffeId } from "../trust/spiffe.ts";
import { decideByIntentions } from "../intentions/decide.ts";
import type { InboundGateway } from "./gateway.ts";
import type { ConnectionEvent } from "../events/connection.ts";
import type { ReauthorizeRound } from "../events/lifecycle.ts";
import { sleep } from "../net/timers.ts";

/** Options of {@linkcode reauthorizeOnChange}. */
export interface ReauthorizeOptions {
  /** The agent (intention watch, authorize). */
  agent: AgentClient;
  /** Our service: the destination whose intentions matter. */
  service: string;
  /** The listeners whose open connections are re-checked. */
  gateways: () => Iterable<InboundGateway>;
  /** Wait this long before closing a denied caller's connections. @default {0} */
  graceMs?: number;
  /** Authorize deadline per caller. @default {5000} */
  authorizeTimeoutMs?: number;
  /** Stops the watch. */
  signal: AbortSignal;
  /** Log sink. */
  log: Logger;
  /**
   * `revoked` events, and one `reauthorized` event per round once its callers are decided (before
   * the grace period and the closes).
   */
  emit: (event: ConnectionEvent | ({ type: "reauthorized" } & ReauthorizeRound)) => void;
  /**
   * Receives every intention list the watch delivers, the first one included (for the
   * gateways' `intentions` option), before the open connections are re-checked.
   */
  onIntentions?: (intentions: readonly Intention[]) => void;
}

/**
 * Re-checks the callers of open connections against `intentions` (highest precedence first)
 * and closes the denied ones. Exported for tests and for callers with their own trigger.
 */
export async function reauthorize(
  o: Omit<ReauthorizeOptions, "signal"> & { signal?: AbortSignal },
  intentions: readonly Intention[],
): Promise<ReauthorizeRound> {
  const peers = new Set<string>();
  for (const gw of o.gateways()) {
    gw.forgetAuthorizations(); // cached answers predate this change
    for (const c of gw.connections) peers.add(c.peer);
  }
  const round: ReauthorizeRound = { checked: [...peers], denied: [], failed: [] };
  await Promise.all([...peers].map(async (peer) => {
    let id: ServiceSpiffeId;
    try {
      const parsed = parseSpiffeId(peer);
      if (parsed.kind !== "service") return;
      id = parsed;
    } catch {
      return; // accepted connections always carry a service identity
    }
    const local = decideByIntentions(intentions, o.service, id);
    let allowed = local?.authorized;
    let reason = local?.reason ?? "";
    if (!local) {
      try {
        const r = await o.agent.authorize(
          { Target: o.service, ClientCertURI: peer },
          { timeoutMs: o.authorizeTimeoutMs ?? 5000, signal: o.signal },
        );
        allowed = r.Authorized;
        reason = r.Reason;
      } catch (err) {
        o.log.log("warn", "re-authorization failed; keeping the caller's connections", {
          peer,
          error: String(err),
        });
        round.failed.push(peer);
        return;
      }
    }
    if (!allowed) round.denied.push({ peer, reason });
  }));
  o.emit({ type: "reauthorized", ...round });
  if (round.denied.length === 0) return round;
  // Stopping (the owner closes) ends the grace at once: the drain decides about open connections.
  if (o.graceMs && !(await sleep(o.graceMs, o.signal))) return round;
  const denied = new Map(round.denied.map((d) => [d.peer, d.reason]));
  for (const gw of o.gateways()) {
    for (const c of [...gw.connections]) {
      const why = denied.get(c.peer);
      if (why === undefined) continue;
      o.log.log("info", "closing a connection whose caller is no longer authorized", {
        peer: c.peer,
        remote: c.remote,
        reason: why,
      });
      o.emit({
        type: "revoked",
        direction: "inbound",
        listener: `inbound:${o.service}`,
        peer: c.peer,
        remote: c.remote,
        reason: why,
      });
      c.pipe.destroy(new Error(`authorization revoked: ${why}`));
    }
  }
  return round;
}

/**
 * Watches the intentions of `service` until `signal` aborts and re-authorizes open connections
 * on every change. Changes that arrive during a round are coalesced into one more round.
 */
export async function reauthorizeOnChange(o: ReauthorizeOptions): Promise<void> {
  let latest: readonly Intention[] | undefined;
  let running: Promise<void> | undefined;
  let again = false;
  const run = () => {
    if (running) {
      again = true;
      return;
    }
    running = (async () => {
      do {
        again = false;
        await reauthorize(o, latest ?? []);
      } while (again && !o.signal.aborted);
    })().finally(() => (running = undefined));
  };
  let first = true;
  try {
    for await (
      const { value } of o.agent.watchIntentionMatch(o.service, {
        onError: (err) =>
          o.log.log("warn", "intentions watch failed; open connections are kept", {
            error: String(err),
          }),
      }).subscribe(o.signal)
    ) {
      latest = value;
      o.onIntentions?.(value);
      // Answers given before this change are forgotten now, not when the next round starts (one
      // may still be running): until then, new connections would be served from them.
      for (const gw of o.gateways()) gw.forgetAuthorizations();
      // The first answer is the state the open connections were authorized under.
      if (first) {
        first = false;
        continue;
      }
      run();
    }
  } catch (err) {
    if (!o.signal.aborted) {
      o.log.log("error", "intentions watch stopped", { error: String(err) });
    }
  }
  await running;
}
