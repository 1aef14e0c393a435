/**
 * hono helpers for Connect-native servers. `svc.serve(app.fetch, …)` passes the request info as
 * hono's `env`; these read the verified caller from it.
 * @module
 */
import type { Caller } from "../inbound/gateway.ts";
import type { MeshRequestInfo } from "./http_server.ts";

/** The part of a hono `Context` these helpers use. */
export interface MeshContext {
  /** hono's `env`: {@linkcode MeshRequestInfo} when served by `svc.serve`. */
  env: unknown;
}

/** A hono middleware (structurally: hono's `MiddlewareHandler`). */
export type MeshMiddleware = (
  c: MeshContext,
  next: () => Promise<void>,
) => Promise<Response | void>;

/**
 * The verified caller of the current request, or `undefined` when the app is not served over
 * the mesh.
 *
 * @example
 * ```ts
 * import { Hono } from "hono";
 * import { callerOf } from "@meshgate/meshgate/native";
 * const app = new Hono();
 * app.get("/whoami", (c) => c.text(callerOf(c)?.id.service ?? "nobody"));
 * // Served with svc.serve(app.fetch, …), the caller's service; here, off the mesh:
 * console.log(await (await app.request("/whoami")).text()); // nobody
 * ```
 */
export function callerOf(c: MeshContext): Caller | undefined {
  return (c.env as Partial<MeshRequestInfo> | undefined)?.caller;
}

/**
 * Lets a route through only for the given calling services (authorization beyond intentions,
 * e.g. per method or path); others get `403` and never reach the handler. Also makes the caller
 * available as `c.get("caller")`.
 *
 * @example
 * ```ts
 * import { Hono } from "hono";
 * import { allowCallers } from "@meshgate/meshgate/native";
 * const app = new Hono();
 * app.post("/orders", allowCallers("web"), (c) => c.json({ ok: true }, 201));
 * console.log((await app.request("/orders", { method: "POST" })).status); // 403: not from web
 * ```
 */
export function allowCallers(...services: string[]): MeshMiddleware {
  const allowed = new Set(services.map((s) => s.toLowerCase()));
  return async (c, next) => {
    const caller = callerOf(c);
    if (!caller || !allowed.has(caller.id.service.toLowerCase())) {
      return Response.json({
        error: `caller ${caller?.spiffeId ?? "(not on the mesh)"} may not use this route`,
      }, { status: 403 });
    }
    (c as unknown as { set(key: string, value: unknown): void }).set("caller", caller);
    await next();
  };
}
