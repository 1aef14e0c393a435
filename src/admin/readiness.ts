/**
 * When a proxy is ready to serve, and why not: for `GET /ready` and `meshgate_ready`.
 * @module
 */
import { leafExpiryMargin } from "../trust/material.ts";
import type { AdminSubject } from "./subject.ts";

/** Readiness tuning. */
export interface ReadinessOptions {
  /**
   * Not ready when the leaf expires within this and no renewal came (see
   * {@linkcode leafExpiryMargin}); 0 or unset is the default.
   * @default {10 % of the leaf's lifetime, at most 1 hour}
   */
  leafExpiryMarginMs?: number;
}

/**
 * Why the proxy is not ready, or an empty list when it is.
 *
 * @example
 * ```ts
 * import { AgentClient, connect } from "@meshgate/meshgate";
 * import { readinessProblems } from "@meshgate/meshgate/admin";
 * import { startDevAgent } from "@meshgate/meshgate/devagent";
 *
 * await using dev = await startDevAgent(); // the Consul test double; any agent will do
 * await using agent = new AgentClient({ address: dev.address });
 * await using api = await connect({ service: "api", agent }); // or a Proxy from startProxy()
 * const problems = readinessProblems(api);
 * console.log(problems.length ? `not ready: ${problems.join("; ")}` : "ready"); // ready
 * ```
 */
export function readinessProblems(
  proxy: AdminSubject,
  now: number = Date.now(),
  options: ReadinessOptions = {},
): string[] {
  const problems: string[] = [];
  if (proxy.phase !== "ready") problems.push(`phase is ${proxy.phase}`);
  const leaf = proxy.material.leaf;
  if (!leaf) problems.push("no leaf certificate yet");
  else if (leaf.info.notAfter.getTime() <= now) problems.push("leaf certificate has expired");
  else {
    // Not ready *before* expiry when no renewal came (agent down).
    const left = leaf.info.notAfter.getTime() - now;
    if (left <= leafExpiryMargin(leaf.info, options.leafExpiryMarginMs)) {
      problems.push(
        `leaf certificate expires in ${Math.round(left / 1000)} s and has not been renewed`,
      );
    }
  }
  if (!proxy.material.roots) problems.push("no CA roots yet");
  else if (proxy.material.leafTrusted === false) {
    problems.push("leaf certificate does not chain to any current CA root (renewal due)");
  }
  // What the subject itself says it waits for or refused (a proxy's configuration and
  // listeners, the agent's answer, a failed bind).
  for (const problem of proxy.problems) problems.push(problem);
  return problems;
}
