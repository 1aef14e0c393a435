/**
 * The Connect CA: roots (the agent's cached view and the server's), leaf certificates with the
 * leaf manager's blocking and cache headers, and the CA configuration (reading it, and writing
 * it: a new TTL, or a new key that rotates the root).
 * @module
 */
import { Hono } from "hono";
import type { Context } from "hono";
import type { CAConfiguration, LeafCert } from "../../agent/types.ts";
import { parseGoDuration } from "../../agent/duration.ts";
import { BadRequest, strictDecode } from "../strict.ts";
import { empty, endpoint, json, MAX_WAIT_MS, meta, pathParam, readJson } from "../http.ts";
import type { RouteContext } from "./context.ts";

/** The store topic a root change bumps. */
export const ROOTS_TOPIC = "roots";

/** A duration in its largest whole unit, as Consul's configuration shows its defaults (`72h`). */
function shortDuration(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  return `${ms / 1000}s`;
}

/**
 * The CA routes: `GET /v1/agent/connect/ca/roots` and `GET /v1/connect/ca/roots` (blocking),
 * `GET /v1/agent/connect/ca/leaf/:service` (blocking on the leaf's index) and
 * `GET|PUT /v1/connect/ca/configuration`.
 */
export function connectCaRoutes(ctx: RouteContext): Hono {
  const { ca, leaves, store, blocking } = ctx;
  const app = new Hono();
  /** When each service's leaf was last fetched (issued or revalidated), for `Age`. */
  const leafFetchedAt = new Map<string, number>();

  const roots = (agentCache: boolean) => async (c: Context) => {
    const index = await blocking.wait(c, () => store.topicIndex(ROOTS_TOPIC));
    meta(c, index, { backend: "blocking-query" });
    // The agent's roots cache refreshes in the background: a read hits it (Age 0); a blocking
    // read waits for the next fetch (MISS).
    if (agentCache && blocking.params(c).index > 0) c.header("X-Cache", "MISS");
    else if (agentCache) c.header("X-Cache", "HIT"), c.header("Age", "0");
    return json(c, {
      ActiveRootID: ca.activeRoot.ID,
      TrustDomain: ca.trustDomain,
      Roots: ca.roots,
    });
  };
  endpoint(app, "/v1/agent/connect/ca/roots", { GET: roots(true) }, ctx.injectFaults);
  endpoint(app, "/v1/connect/ca/roots", { GET: roots(false) }, ctx.injectFaults);

  endpoint(app, "/v1/agent/connect/ca/leaf/:service{.+}", {
    GET: async (c) => {
      const service = pathParam(c, "service");
      const q = c.req.query();
      let waitMs = MAX_WAIT_MS;
      if (q.wait) {
        try {
          waitMs = Math.min(parseGoDuration(q.wait), MAX_WAIT_MS) || MAX_WAIT_MS;
        } catch {
          throw new BadRequest("Invalid wait time");
        }
      }
      if (q.index && !/^\d+$/.test(q.index)) throw new BadRequest("Invalid index");
      const minIndex = Number(q.index ?? 0);
      let cert: LeafCert;
      // Consul's leaf manager: a read without an index revalidates (a MISS, no Age); a blocking
      // read whose index is already behind is served from the cache at once (a HIT with the Age
      // of the last fetch); one that has to wait is a MISS.
      if (minIndex > 0 && leaves.index(service) > minIndex) {
        cert = await leaves.current(service);
        const age = (Date.now() - (leafFetchedAt.get(service) ?? Date.now())) / 1000;
        c.header("X-Cache", "HIT");
        c.header("Age", age.toFixed(0));
      } else if (minIndex > 0) {
        if (leaves.index(service) === 0) await leaves.current(service);
        await store.waitUntil(() => leaves.index(service) > minIndex, waitMs, c.req.raw.signal);
        cert = await leaves.current(service);
        leafFetchedAt.set(service, Date.now());
        c.header("X-Cache", "MISS");
      } else {
        cert = await leaves.current(service);
        leafFetchedAt.set(service, Date.now());
        c.header("X-Cache", "MISS");
      }
      c.header("X-Consul-Index", String(Math.max(1, cert.ModifyIndex)));
      return json(c, cert);
    },
  }, ctx.injectFaults);

  endpoint(app, "/v1/connect/ca/configuration", {
    GET: (c) =>
      json(c, {
        Provider: "consul",
        Config: {
          LeafCertTTL: shortDuration(ca.leafTtlMs),
          IntermediateCertTTL: "8760h",
          RootCertTTL: "87600h",
        },
        State: null,
        ForceWithoutCrossSigning: false,
        CreateIndex: 12,
        ModifyIndex: ctx.caConfigIndex,
      }),
    PUT: async (c) => {
      const b = strictDecode(await readJson(c), {
        Provider: true,
        Config: true,
        ForceWithoutCrossSigning: true,
        State: true,
        CreateIndex: true,
        ModifyIndex: true,
      }) as Partial<CAConfiguration>;
      const cfg = (b.Config ?? {}) as Record<string, unknown>;
      if (cfg.LeafCertTTL !== undefined) {
        try {
          ca.leafTtlMs = parseGoDuration(String(cfg.LeafCertTTL));
        } catch {
          throw new BadRequest(`Invalid LeafCertTTL: ${cfg.LeafCertTTL}`, 500);
        }
      }
      const newKey = typeof cfg.PrivateKey === "string" && typeof cfg.RootCert === "string";
      const keyChange = (cfg.PrivateKeyType !== undefined &&
        cfg.PrivateKeyType !== ca.activeRoot.PrivateKeyType) ||
        (cfg.PrivateKeyBits !== undefined &&
          Number(cfg.PrivateKeyBits) !== ca.activeRoot.PrivateKeyBits);
      if (newKey) {
        await ctx.rotateCA({
          privateKeyPem: cfg.PrivateKey as string,
          rootCertPem: cfg.RootCert as string,
        });
      } else if (keyChange) {
        await ctx.rotateCA({ keyBits: Number(cfg.PrivateKeyBits ?? 256) });
      } else {
        ctx.caConfigIndex = store.bump("ca-config");
      }
      return empty(c);
    },
  }, ctx.injectFaults);

  return app;
}
