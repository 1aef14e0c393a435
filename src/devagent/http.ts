/**
 * What every route module of the double shares: Consul's way of answering (pretty JSON, plain
 * text errors, an empty body with a JSON content type, the `X-Consul-*` metadata), blocking
 * queries (`?index=` and `?wait=` as Consul's `parseWait` reads them), the endpoint helper that
 * gives a path its `OPTIONS` and `405` answers, and the middleware that refuses Enterprise
 * metadata on CE.
 * @module
 */
import type { Context, Hono, MiddlewareHandler } from "hono";
import { parseGoDuration } from "../agent/duration.ts";
import type { Store } from "./store.ts";
import { BadRequest, parseJsonBody } from "./strict.ts";

/** Consul's cap on `?wait=` (`MaxQueryTime`, 10 minutes). */
export const MAX_WAIT_MS = 600_000;

/** A JSON answer; an agent in `-dev` mode always pretty-prints (4 spaces). */
export function json(c: Context, value: unknown, status = 200): Response {
  return c.body(JSON.stringify(value, null, 4), status as 200, {
    "Content-Type": "application/json",
  });
}

/** A plain-text answer, as Consul writes its errors. */
export function text(c: Context, message: string, status: number): Response {
  return c.body(message, status as 400, { "Content-Type": "text/plain; charset=utf-8" });
}

/** A handler that returns nothing: Consul still sends its JSON content type. */
export function empty(c: Context): Response {
  return c.body(null, 200, { "Content-Type": "application/json; charset=utf-8" });
}

/** A path parameter of the matched route, decoded (`""` when the route has none of that name). */
export function pathParam(c: Context, name: string): string {
  return c.req.param(name) ?? "";
}

/** The request body as JSON; an empty body is `<prefix>: EOF`, as Go reports it. */
export async function readJson(c: Context, prefix?: string): Promise<unknown> {
  return parseJsonBody(await c.req.text(), prefix);
}

/** Options of {@linkcode meta}: what Consul's `setMeta` writes besides the index. */
export interface MetaOptions {
  /** `X-Consul-KnownLeader`; a streaming answer has none to report. @default {true} */
  knownLeader?: boolean;
  /** `X-Consul-Query-Backend`, set by endpoints that run a server query. */
  backend?: "blocking-query" | "streaming";
  /** `X-Consul-Effective-Consistency: leader`, set where the handler records the level. */
  consistency?: boolean;
}

/** Writes `X-Consul-Index` (never below 1) and the rest of Consul's query metadata. */
export function meta(c: Context, index: number, options: MetaOptions = {}): void {
  c.header("X-Consul-Index", String(Math.max(1, index)));
  c.header("X-Consul-KnownLeader", String(options.knownLeader ?? true));
  c.header("X-Consul-LastContact", "0");
  if (options.consistency) c.header("X-Consul-Effective-Consistency", "leader");
  if (options.backend) c.header("X-Consul-Query-Backend", options.backend);
}

/** Options of {@linkcode Blocking}. */
export interface BlockingOptions {
  /** `wait` when the request gives none (Consul's `DefaultQueryTime`). */
  defaultWaitMs: number;
  /** Add Consul's random wait/16 jitter. */
  jitter: boolean;
}

/** Blocking queries as Consul's HTTP layer runs them. */
export class Blocking {
  readonly #store: Store;
  readonly #options: BlockingOptions;

  /** Blocks on `store`'s writes; see {@linkcode BlockingOptions}. */
  constructor(store: Store, options: BlockingOptions) {
    this.#store = store;
    this.#options = options;
  }

  /**
   * `?index=` and `?wait=` as Consul's `parseWait` reads them (with `Query().Get`: an empty value
   * is no value). Bad values are 400s: `Invalid wait time`, `Invalid index`.
   */
  params(c: Context): { index: number; waitMs: number } {
    const q = c.req.query();
    let waitMs = this.#options.defaultWaitMs;
    if (q.wait) {
      try {
        waitMs = parseGoDuration(q.wait);
      } catch {
        throw new BadRequest("Invalid wait time");
      }
      if (waitMs <= 0) waitMs = this.#options.defaultWaitMs;
    }
    waitMs = Math.min(waitMs, MAX_WAIT_MS);
    if (this.#options.jitter) waitMs += Math.random() * (waitMs / 16);
    let index = 0;
    if (q.index) {
      if (!/^\d+$/.test(q.index)) throw new BadRequest("Invalid index");
      index = Number(q.index);
    }
    return { index, waitMs };
  }

  /**
   * Blocks while the resource's index is not above the requested one, then answers its index.
   * A resource no write ever touched (`seen` false) answers the raft index the request arrived
   * at, as Consul does (the table's index for a read, the snapshot's for a streaming one), not 1.
   */
  async wait(
    c: Context,
    current: () => number,
    seen: () => boolean = () => true,
  ): Promise<number> {
    const arrivedAt = this.#store.index;
    const { index, waitMs } = this.params(c);
    if (index > 0) {
      await this.#store.waitUntil(() => current() > index, waitMs, c.req.raw.signal);
    }
    return seen() ? current() : arrivedAt;
  }
}

/** A route handler of the double: it always answers (or throws a {@linkcode BadRequest}). */
export type Handler = (c: Context) => Response | Promise<Response>;

/** The handlers of one path, by method, in the order `Allow` lists them. */
export type Methods = Partial<Record<"GET" | "PUT" | "POST" | "DELETE", Handler>>;

/**
 * Registers one Consul endpoint on `app`: each method's handler behind `middleware`, then the
 * answers Consul's HTTP layer gives every registered path: `OPTIONS` with `Allow` (200, no
 * body) and any other method `405 method X not allowed` with `Allow`. A `HEAD` (which hono
 * routes to `GET`) is such another method. Register overlapping paths most specific first: the
 * first path registered that matches answers, as in Consul's mux.
 *
 * @example
 * ```ts
 * import { Hono } from "hono";
 * import { endpoint, json } from "./http.ts";
 * const app = new Hono();
 * endpoint(app, "/v1/ping", { GET: (c) => json(c, true) });
 * const r = await app.request("/v1/ping", { method: "PUT" });
 * console.log(r.status, r.headers.get("Allow")); // 405 OPTIONS,GET
 * ```
 */
export function endpoint(
  app: Hono,
  path: string,
  methods: Methods,
  ...middleware: MiddlewareHandler[]
): void {
  const allow = ["OPTIONS", ...Object.keys(methods)].join(",");
  const notAllowed = (c: Context) => {
    c.header("Allow", allow);
    return text(c, `method ${c.req.method} not allowed`, 405);
  };
  for (const [method, handler] of Object.entries(methods)) {
    const sameMethod: MiddlewareHandler = async (c, next) => {
      if (c.req.method !== method) return notAllowed(c);
      await next();
    };
    app.on(method, path, sameMethod, ...middleware, handler);
  }
  app.on("OPTIONS", path, (c) => {
    c.header("Allow", allow);
    return c.body(null, 200);
  });
  app.all(path, notAllowed);
}

/**
 * Refuses namespaces and partitions (even `default`) where Consul CE reads Enterprise metadata
 * (health, intentions, discovery chain, agent services and checks, config entries), as 1.22
 * does: `400 Invalid query parameter: "ns" - Namespaces are a Consul Enterprise feature`.
 */
export const enterpriseMetaRefused: MiddlewareHandler = async (c, next) => {
  if (c.req.query("ns") !== undefined || c.req.header("X-Consul-Namespace") !== undefined) {
    return text(
      c,
      `Invalid query parameter: "ns" - Namespaces are a Consul Enterprise feature`,
      400,
    );
  }
  if (c.req.query("partition") !== undefined || c.req.header("X-Consul-Partition") !== undefined) {
    return text(
      c,
      `Invalid query parameter: "partition" - Partitions are a Consul Enterprise feature`,
      400,
    );
  }
  await next();
};
