/**
 * What the double's route modules share: its state, its blocking machinery and the middleware
 * every Consul endpoint runs. `createDevAgent` builds one and hands it to each module.
 * @module
 */
import type { MiddlewareHandler } from "hono";
import type { ConnectCA, RotationMaterial } from "../ca.ts";
import type { Catalog } from "../catalog.ts";
import type { ConfigEntries } from "../chain.ts";
import type { Faults } from "../faults.ts";
import type { Blocking } from "../http.ts";
import type { Intentions } from "../intentions.ts";
import type { Leaves } from "../leaves.ts";
import type { Store } from "../store.ts";

/** The double's state and shared machinery, as the route modules see it. */
export interface RouteContext {
  /** The agent's datacenter. */
  readonly datacenter: string;
  /** Index bookkeeping and waiting for change. */
  readonly store: Store;
  /** The Connect CA. */
  readonly ca: ConnectCA;
  /** Services and checks. */
  readonly catalog: Catalog;
  /** Intentions and authorize. */
  readonly intentions: Intentions;
  /** Config entries and chains. */
  readonly config: ConfigEntries;
  /** Leaf certificates. */
  readonly leaves: Leaves;
  /** Fault injection rules (the `/v1/devagent/faults` hook edits them). */
  readonly faults: Faults;
  /** `?index=` / `?wait=` parsing and waiting. */
  readonly blocking: Blocking;
  /** The fault middleware, last before the handler of every Consul endpoint. */
  readonly injectFaults: MiddlewareHandler;
  /** `ModifyIndex` of the CA configuration (a rotation or a configuration write moves it). */
  caConfigIndex: number;
  /** Rotates the CA root now (as a CA configuration change would). */
  rotateCA(material?: RotationMaterial): Promise<void>;
}
