/**
 * The intentions API by name: list (blocking, `?filter=` on one field), exact read/write/delete,
 * match by source or destination (blocking), and check.
 * @module
 */
import { Hono } from "hono";
import { INTENTIONS_TOPIC } from "../intentions.ts";
import { BadRequest } from "../strict.ts";
import { endpoint, enterpriseMetaRefused, json, meta, readJson, text } from "../http.ts";
import type { RouteContext } from "./context.ts";

/**
 * The intention routes: `GET|PUT|DELETE /v1/connect/intentions/exact`,
 * `GET /v1/connect/intentions/match`, `GET /v1/connect/intentions/check` and
 * `GET /v1/connect/intentions`.
 */
export function intentionRoutes(ctx: RouteContext): Hono {
  const { intentions, store, blocking } = ctx;
  const app = new Hono();
  const consul = [enterpriseMetaRefused, ctx.injectFaults];
  const changed = () => store.topicIndex(INTENTIONS_TOPIC);
  const written = () => store.seen(INTENTIONS_TOPIC);

  endpoint(app, "/v1/connect/intentions/exact", {
    GET: (c) => {
      const ixn = intentions.get(c.req.query("source") ?? null, c.req.query("destination") ?? null);
      return ixn ? json(c, ixn) : text(c, "Intention not found", 404);
    },
    PUT: async (c) => {
      intentions.upsert(
        c.req.query("source") ?? null,
        c.req.query("destination") ?? null,
        await readJson(c),
      );
      return json(c, true);
    },
    DELETE: (c) => {
      intentions.delete(c.req.query("source") ?? null, c.req.query("destination") ?? null);
      return json(c, true);
    },
  }, ...consul);

  endpoint(app, "/v1/connect/intentions/match", {
    GET: async (c) => {
      const by = c.req.queries("by") ?? [];
      if (by.length !== 1) throw new BadRequest("required query parameter 'by' not set", 500);
      if (by[0] !== "source" && by[0] !== "destination") {
        throw new BadRequest(`'by' parameter must be one of 'source' or 'destination'`, 500);
      }
      const names = c.req.queries("name") ?? [];
      if (!names.length) throw new BadRequest("required query parameter 'name' not set", 500);
      // Names are checked before the query blocks, as Consul parses them first.
      intentions.match(by[0], names);
      const index = await blocking.wait(c, changed, written);
      meta(c, index, { backend: "blocking-query", consistency: true });
      return json(c, intentions.match(by[0], names));
    },
  }, ...consul);

  endpoint(app, "/v1/connect/intentions/check", {
    GET: (c) =>
      json(c, {
        Allowed: intentions.check(
          c.req.query("source") ?? null,
          c.req.query("destination") ?? null,
        ),
      }),
  }, ...consul);

  endpoint(app, "/v1/connect/intentions", {
    GET: async (c) => {
      const index = await blocking.wait(c, changed, written);
      meta(c, index, { backend: "blocking-query" });
      let list = intentions.list();
      const filter = c.req.query("filter");
      const m = filter && /^(\w+)\s*==\s*["`]([^"`]*)["`]$/.exec(filter.trim());
      if (m) {
        const [, field, value] = m;
        list = list.filter((i) => (i as unknown as Record<string, unknown>)[field!] === value);
      }
      return json(c, list);
    },
  }, ...consul);

  return app;
}
