/**
 * The agent's own endpoints: `/v1/agent/self`, local services (list, register, deregister, one
 * service with hash blocking) and check updates (TTL pass/warn/fail/update).
 * @module
 */
import { Hono } from "hono";
import { contentHash } from "../store.ts";
import { BadRequest, strictDecode } from "../strict.ts";
import {
  empty,
  endpoint,
  enterpriseMetaRefused,
  json,
  pathParam,
  readJson,
  text,
} from "../http.ts";
import type { RouteContext } from "./context.ts";

/**
 * The agent routes: `GET /v1/agent/self`, `GET /v1/agent/services`,
 * `PUT /v1/agent/service/register`, `PUT /v1/agent/service/deregister/:id`,
 * `GET /v1/agent/service/:id` (`?hash=` blocks until the service changes) and
 * `PUT /v1/agent/check/(pass|warn|fail|update)/:id`.
 */
export function agentRoutes(ctx: RouteContext): Hono {
  const { catalog, datacenter, store, blocking } = ctx;
  const app = new Hono();
  const consul = [enterpriseMetaRefused, ctx.injectFaults];

  /** The service as `/v1/agent/service/:id` shows it, with its content hash. */
  const serviceView = (id: string) => {
    const svc = catalog.get(id);
    if (!svc) return undefined;
    const { Datacenter: _dc, ...hashed } = svc;
    const hash = contentHash(hashed);
    return { body: { ...svc, ContentHash: hash }, hash };
  };

  endpoint(app, "/v1/agent/self", {
    GET: (c) =>
      json(c, {
        Config: {
          Datacenter: datacenter,
          PrimaryDatacenter: datacenter,
          NodeName: catalog.node.Node,
          NodeID: catalog.node.ID,
          Revision: "meshgate",
          Server: true,
          Version: "1.22.7",
          BuildDate: "2026-04-22T00:00:00Z",
          BindAddr: catalog.node.Address,
        },
        DebugConfig: {
          ConnectEnabled: true,
          ConnectSidecarMinPort: 21000,
          ConnectSidecarMaxPort: 21255,
          DefaultQueryTime: "5m0s",
          MaxQueryTime: "10m0s",
        },
        Coord: { Vec: [0, 0, 0, 0, 0, 0, 0, 0], Error: 1.5, Adjustment: 0, Height: 0.00001 },
        Member: {
          Name: catalog.node.Node,
          Addr: catalog.node.Address,
          Port: 8301,
          Tags: { dc: datacenter, role: "consul" },
          Status: 1,
        },
        Stats: {},
        Meta: {},
      }),
  }, ctx.injectFaults);

  endpoint(app, "/v1/agent/services", {
    GET: (c) => {
      const filter = c.req.query("filter");
      let list = catalog.all();
      // Only the filter proxies use is understood: Kind == `connect-proxy`.
      const kind = filter && /Kind\s*==\s*[`"]([^`"]+)[`"]/.exec(filter)?.[1];
      if (kind) list = list.filter((s) => s.Kind === kind);
      return json(c, Object.fromEntries(list.map((s) => [s.ID, s])));
    },
  }, ...consul);

  endpoint(app, "/v1/agent/service/register", {
    PUT: async (c) => {
      const q = c.req.query("replace-existing-checks");
      catalog.register(await readJson(c), {
        replaceExistingChecks: q !== undefined && q !== "false",
      });
      return empty(c);
    },
  }, ...consul);

  endpoint(app, "/v1/agent/service/deregister/:id{.+}", {
    PUT: (c) => {
      catalog.deregister(pathParam(c, "id"));
      return empty(c);
    },
  }, ...consul);

  endpoint(app, "/v1/agent/service/:id{.+}", {
    GET: async (c) => {
      const id = pathParam(c, "id");
      // Consul parses `wait` and `index` first, with or without `hash`: `?wait=zz` is a 400.
      const { waitMs } = blocking.params(c);
      let view = serviceView(id);
      if (!view) return text(c, `unknown service ID: ${id}`, 404);
      const hash = c.req.query("hash");
      if (hash && hash === view.hash) {
        await store.waitUntil(() => serviceView(id)?.hash !== hash, waitMs, c.req.raw.signal);
        view = serviceView(id);
        if (!view) return text(c, `unknown service ID: ${id}`, 404);
      }
      c.header("X-Consul-ContentHash", view.hash);
      return json(c, view.body);
    },
  }, ...consul);

  endpoint(app, "/v1/agent/check/:action{pass|warn|fail|update}/:id{.+}", {
    PUT: async (c) => {
      const id = pathParam(c, "id");
      const action = pathParam(c, "action");
      if (action === "update") {
        const b = strictDecode(await readJson(c), { Status: true, Output: true }) as {
          Status?: string;
          Output?: string;
        };
        if (!["passing", "warning", "critical"].includes(b.Status ?? "")) {
          throw new BadRequest(`Invalid check status: '${b.Status ?? ""}'`);
        }
        catalog.updateCheck(id, b.Status as "passing", b.Output ?? "");
      } else {
        const status = action === "pass" ? "passing" : action === "warn" ? "warning" : "critical";
        catalog.updateCheck(id, status, c.req.query("note") ?? "");
      }
      return empty(c);
    },
  }, ...consul);

  return app;
}
