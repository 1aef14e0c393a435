/**
 * An in-process Consul test double speaking Consul's HTTP contract (blocking queries included),
 * with a real Connect CA: roots, leaf certificates, authorize by intentions, catalog and health,
 * config entries and compiled discovery chains, prepared queries, and injectable faults. For
 * tests and demos: {@linkcode startDevAgent} listens on loopback; {@linkcode createDevAgent} gives
 * the hono app without a socket (`app.request()`). `deno task dev-agent` runs it standalone.
 *
 * @example
 * ```ts
 * import { startDevAgent } from "@meshgate/meshgate/devagent";
 *
 * await using dev = await startDevAgent();
 * const res = await fetch(`http://${dev.address}/v1/agent/connect/ca/roots`);
 * console.log((await res.json()).TrustDomain);
 * ```
 * @module
 */

export { createDevAgent, type DevAgent, type DevAgentApp, type DevAgentOptions } from "./app.ts";
export { type RunningDevAgent, startDevAgent, type StartDevAgentOptions } from "./server.ts";
export { ConnectCA, type ConnectCAOptions, type IssuedLeaf, type RotationMaterial } from "./ca.ts";
export { type Fault, Faults } from "./faults.ts";
// The double's state, reachable from a DevAgent for tests that arrange a scenario directly.
export type { Catalog, CatalogOptions } from "./catalog.ts";
export type { ConfigEntries } from "./chain.ts";
export type { Intentions, SourceInput } from "./intentions.ts";
export type { Leaves, LeavesOptions } from "./leaves.ts";
export type { Store } from "./store.ts";
