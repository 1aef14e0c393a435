/**
 * The double's test hooks (not part of Consul's API, never faulted): `POST|DELETE
 * /v1/devagent/faults` to add or clear fault rules, for proxies in other processes, and
 * `POST /v1/devagent/rotate` to rotate the CA root now.
 * @module
 */
import { Hono } from "hono";
import type { Fault } from "../faults.ts";
import { endpoint, json, readJson } from "../http.ts";
import type { RouteContext } from "./context.ts";

/** The test hook routes. */
export function devagentRoutes(ctx: RouteContext): Hono {
  const app = new Hono();

  endpoint(app, "/v1/devagent/faults", {
    POST: async (c) => {
      ctx.faults.add(await readJson(c) as Fault);
      return json(c, true);
    },
    DELETE: (c) => {
      ctx.faults.clear();
      return json(c, true);
    },
  });

  endpoint(app, "/v1/devagent/rotate", {
    POST: async (c) => {
      await ctx.rotateCA();
      return json(c, { ActiveRootID: ctx.ca.activeRoot.ID });
    },
  });

  return app;
}
