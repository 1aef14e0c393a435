/**
 * `POST /v1/agent/connect/authorize`: the double's intentions decide (see `../intentions.ts`),
 * and the answer carries the cache headers of Consul's intention-match cache.
 * @module
 */
import { Hono } from "hono";
import { endpoint, json, readJson } from "../http.ts";
import type { RouteContext } from "./context.ts";

/** The authorize route: `POST /v1/agent/connect/authorize`. */
export function authorizeRoutes(ctx: RouteContext): Hono {
  const app = new Hono();
  /** Authorize targets asked about before: Consul's intention-match cache then hits. */
  const cached = new Set<string>();

  endpoint(app, "/v1/agent/connect/authorize", {
    POST: async (c) => {
      const raw = await readJson(c);
      const result = ctx.intentions.authorize(raw);
      // Consul answers from its intention-match cache: the first question about a target
      // fetches (MISS), later ones hit the background-refreshed entry (HIT, Age 0). Errors come
      // before the cache and carry neither header.
      const target = String(
        Object.entries(raw as object).find(([k]) => k.toLowerCase() === "target")?.[1],
      );
      if (cached.has(target)) {
        c.header("X-Cache", "HIT");
        c.header("Age", "0");
      } else {
        cached.add(target);
        c.header("X-Cache", "MISS");
      }
      return json(c, result);
    },
  }, ctx.injectFaults);

  return app;
}
