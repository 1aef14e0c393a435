/**
 * Catalog and health reads: `GET /v1/health/connect/:service`, the mesh endpoints of a service
 * (its sidecars or Connect-native instances), with `?passing`, `?tag`, `?filter` and blocking
 * as Consul 1.22 answers them (streaming backend for a blocking read, a server query otherwise).
 * @module
 */
import { Hono } from "hono";
import { topics } from "../catalog.ts";
import { compileFilter } from "../filter.ts";
import { BadRequest } from "../strict.ts";
import { endpoint, enterpriseMetaRefused, json, meta, pathParam } from "../http.ts";
import type { RouteContext } from "./context.ts";

/** `?passing` values Consul's `strconv.ParseBool` accepts (and the empty flag). */
const PASSING_VALUES = ["", "true", "false", "1", "0", "t", "f"];

/** The health route: `GET /v1/health/connect/:service`. */
export function healthRoutes(ctx: RouteContext): Hono {
  const { catalog, store, blocking, datacenter } = ctx;
  const app = new Hono();

  endpoint(
    app,
    "/v1/health/connect/:service{.+}",
    {
      GET: async (c) => {
        const name = pathParam(c, "service");
        const p = c.req.query("passing");
        if (p !== undefined && !PASSING_VALUES.includes(p)) {
          throw new BadRequest("Invalid value for ?passing");
        }
        const passing = p !== undefined && p !== "false" && p !== "0" && p !== "f";
        const dc = c.req.query("dc");
        if (dc && dc !== datacenter) throw new BadRequest(`No path to datacenter`, 500);
        // Subset filters (service-resolver `Subsets.*.Filter`) arrive here as `filter=`.
        const filter = c.req.query("filter");
        const matches = filter ? compileFilter(filter) : undefined;
        const topic = topics.health(name);
        // Consul's index for a service: its own while it has endpoints, else the catalog's
        // last-extinction index (which other services move). What a read arrives to stands
        // until this service changes: another service's extinction neither wakes a blocked
        // read nor shows in its answer when the wait ends (the streaming view's index).
        const answer = () =>
          catalog.hasMeshEndpoints(name) ? store.topicIndex(topic) : catalog.emptyHealthIndex(name);
        const arrived = { topic: store.topicIndex(topic), index: answer() };
        const index = await blocking.wait(
          c,
          () => store.topicIndex(topic) === arrived.topic ? arrived.index : answer(),
        );
        // Consul 1.22 answers a blocking read from its streaming backend (no leader to report) and
        // a plain read with a server query.
        const streaming = blocking.params(c).index > 0;
        meta(c, index, {
          consistency: true,
          backend: streaming ? "streaming" : "blocking-query",
          knownLeader: !streaming,
        });
        let entries = catalog.healthConnect(name, passing);
        // Only the streaming path filters by `tag`: the server's connect query ignores it.
        const tags = streaming ? c.req.queries("tag") ?? [] : [];
        if (tags.length) {
          entries = entries.filter((e) => tags.every((t) => e.Service.Tags.includes(t)));
        }
        if (matches) entries = entries.filter(matches);
        return json(c, entries);
      },
    },
    enterpriseMetaRefused,
    ctx.injectFaults,
  );

  return app;
}
