/**
 * Prepared queries, as far as a Connect proxy uses them: create (`POST /v1/query`), delete
 * (`DELETE /v1/query/:id`) and execute with `?connect` (`GET /v1/query/:idOrName/execute`), with
 * the errors of Consul's `PreparedQuery.Apply` and `Execute`.
 * @module
 */
import { Hono } from "hono";
import { BadRequest } from "../strict.ts";
import { empty, endpoint, json, meta, pathParam, readJson, text } from "../http.ts";
import type { RouteContext } from "./context.ts";

/** What the double keeps of a prepared query. */
interface PreparedQuery {
  Name: string;
  Service: { Service: string; OnlyPassing: boolean };
}

/** The prepared query routes; the queries live as long as the app. */
export function preparedQueryRoutes(ctx: RouteContext): Hono {
  const { catalog, store, datacenter } = ctx;
  const app = new Hono();
  const queries = new Map<string, PreparedQuery>();

  endpoint(app, "/v1/query", {
    POST: async (c) => {
      const b = await readJson(c) as {
        Name?: string;
        Session?: string;
        Service?: { Service?: string; OnlyPassing?: boolean };
      };
      // Consul's PreparedQuery.Apply: parseQuery's checks, then the state store's.
      const name = b.Name ?? "";
      if (!name && !b.Session) {
        throw new BadRequest("Invalid prepared query: Must be bound to a session", 500);
      }
      if (!b.Service?.Service) {
        throw new BadRequest("Invalid prepared query: Must provide a Service name to query", 500);
      }
      if (name && [...queries.values()].some((q) => q.Name === name)) {
        throw new BadRequest(
          `raft apply failed: name '${name}' aliases an existing query name`,
          500,
        );
      }
      if (queries.has(name)) {
        throw new BadRequest(`raft apply failed: name '${name}' aliases an existing query ID`, 500);
      }
      const id = crypto.randomUUID();
      queries.set(id, {
        Name: name,
        Service: { Service: b.Service.Service, OnlyPassing: b.Service.OnlyPassing === true },
      });
      store.bump("queries");
      return json(c, { ID: id });
    },
  }, ctx.injectFaults);

  endpoint(app, "/v1/query/:id", {
    DELETE: (c) => {
      const id = pathParam(c, "id");
      if (id.length !== 36) {
        throw new BadRequest(
          "Prepared Query lookup failed: failed prepared query lookup: index error: UUID must be 36 characters",
          500,
        );
      }
      if (!queries.delete(id)) {
        throw new BadRequest(`Cannot modify non-existent prepared query: '${id}'`, 500);
      }
      store.bump("queries");
      return empty(c);
    },
  }, ctx.injectFaults);

  endpoint(app, "/v1/query/:id/execute", {
    GET: (c) => {
      const key = pathParam(c, "id");
      // Consul's execute answers index 1 (the RPC sets none) and, failing, knows no leader.
      const dc = c.req.query("dc");
      if (dc && dc !== datacenter) {
        meta(c, 1, { knownLeader: false, backend: "blocking-query" });
        throw new BadRequest("No path to datacenter", 500);
      }
      const q = queries.get(key) ?? [...queries.values()].find((x) => x.Name === key);
      if (!q) {
        meta(c, 1, { knownLeader: false, backend: "blocking-query" });
        return text(c, "Query not found", 404);
      }
      const service = q.Service.Service;
      const connect = c.req.query("connect");
      const entries = connect !== undefined && connect !== "false"
        ? catalog.healthConnect(service, false)
        : [];
      meta(c, 1, { consistency: true, backend: "blocking-query" });
      return json(c, {
        Service: service,
        // Unlike the health endpoint, execute leaves Go's nil slices as null.
        Nodes: entries.filter((e) =>
          e.Checks.every((ch) =>
            ch.Status !== "critical" && !(q.Service.OnlyPassing && ch.Status === "warning")
          )
        ).map((e) => ({
          ...e,
          Service: { ...e.Service, Tags: e.Service.Tags.length ? e.Service.Tags : null },
          Checks: e.Checks.map((ch) => ({
            ...ch,
            ServiceTags: ch.ServiceTags.length ? ch.ServiceTags : null,
          })),
        })),
        DNS: { TTL: "" },
        Datacenter: datacenter,
        PeerName: "",
        Failovers: 0,
        // The embedded QueryMeta.
        Index: 1,
        LastContact: 0,
        KnownLeader: true,
        ConsistencyLevel: "leader",
        NotModified: false,
        Backend: 0,
        ResultsFilteredByACLs: false,
      });
    },
  }, ctx.injectFaults);

  return app;
}
