/**
 * Config entries and the discovery chain compiled from them: `PUT /v1/config`,
 * `GET|DELETE /v1/config/:kind/:name` and `GET|POST /v1/discovery-chain/:service` (blocking).
 * @module
 */
import { Hono } from "hono";
import type { Context } from "hono";
import { BadRequest, parseJsonBody } from "../strict.ts";
import { endpoint, enterpriseMetaRefused, json, meta, pathParam, text } from "../http.ts";
import type { RouteContext } from "./context.ts";

/** `OverrideMeshGateway.Mode` values Consul accepts in a discovery-chain POST. */
const MESH_GATEWAY_MODES = ["", "none", "local", "remote"];

/** The config entry and discovery chain routes. */
export function configEntryRoutes(ctx: RouteContext): Hono {
  const { config, blocking, datacenter } = ctx;
  const app = new Hono();
  const consul = [enterpriseMetaRefused, ctx.injectFaults];

  const chain = (method: "GET" | "POST") => async (c: Context) => {
    const name = pathParam(c, "service");
    if (!name) throw new BadRequest("Missing chain name");
    if (method === "POST") {
      const b = parseJsonBody(await c.req.text(), "Request decoding failed");
      if (b && typeof b === "object") {
        const mode = (b as { OverrideMeshGateway?: { Mode?: string } }).OverrideMeshGateway?.Mode;
        if (mode !== undefined && !MESH_GATEWAY_MODES.includes(mode)) {
          throw new BadRequest("Invalid OverrideMeshGateway.Mode parameter");
        }
      }
    }
    // Consul compiles for any `compile-dc` it is given (targets and SNIs in that dc).
    const dc = c.req.query("compile-dc") || datacenter;
    config.compile(name, dc);
    const index = await blocking.wait(c, () => config.chainIndex(name), () => config.anyWritten);
    meta(c, index, { backend: "blocking-query", consistency: true });
    return json(c, { Chain: config.compile(name, dc) });
  };
  endpoint(app, "/v1/discovery-chain/:service{.*}", {
    GET: chain("GET"),
    POST: chain("POST"),
  }, ...consul);

  endpoint(app, "/v1/config", {
    PUT: async (c) => {
      config.put(parseJsonBody(await c.req.text(), "Request decoding failed"));
      return json(c, true);
    },
  }, ...consul);

  endpoint(app, "/v1/config/:kind/:name{.+}", {
    GET: (c) => {
      const kind = pathParam(c, "kind");
      const name = pathParam(c, "name");
      const e = config.get(kind, name);
      meta(c, config.tableIndex, { backend: "blocking-query" });
      return e ? json(c, e) : text(c, `Config entry not found for "${kind}" / "${name}"`, 404);
    },
    DELETE: (c) => {
      config.delete(pathParam(c, "kind"), pathParam(c, "name"));
      // Consul answers `{}` (the `Deleted` boolean only for a `cas` delete).
      return json(c, {});
    },
  }, ...consul);

  return app;
}
