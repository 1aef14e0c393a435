/**
 * Fault injection for the double: latency, error statuses, dropped connections, malformed JSON,
 * indexes that go backwards and answers filtered by ACLs, matched by method and path prefix.
 * The rules live in {@linkcode Faults}; {@linkcode injectFaults} is the hono middleware every
 * Consul endpoint of the double runs (the `/v1/devagent/*` hooks do not).
 * @module
 */
import type { MiddlewareHandler } from "hono";
import { text } from "./http.ts";
import type { Store } from "./store.ts";

/** One fault rule. */
export interface Fault {
  /** Path prefix it applies to, e.g. `/v1/agent/connect/authorize`. */
  path: string;
  /** Only this method. */
  method?: string;
  /** Delay before answering. */
  latencyMs?: number;
  /** Answer this status (with `body` as plain text) instead of the real answer. */
  status?: number;
  /** Body for `status`. */
  body?: string;
  /** Break the connection instead of answering. */
  drop?: boolean;
  /** Answer the real status with a body that is not JSON. */
  malformed?: boolean;
  /** Answer with `X-Consul-Index: 1`, lower than any real index. */
  indexBackwards?: boolean;
  /**
   * Answer as Consul answers a token that may read none of a list (e.g. `/v1/health/connect/db`
   * without `node:read`): the real status and index, the list emptied (`[]`), and
   * `X-Consul-Results-Filtered-By-ACLs: true`. Answers that are not a JSON list only get the
   * header.
   */
  filteredByAcls?: boolean;
  /** Apply this many times, then remove. @default {Infinity} */
  times?: number;
}

/** The active fault rules. */
export class Faults {
  #rules: (Fault & { times: number })[] = [];
  /** How many requests each rule has hit, by path. */
  readonly hits: Map<string, number> = new Map();

  /** Adds a rule; returns a function that removes it. */
  add(fault: Fault): () => void {
    if (typeof fault?.path !== "string") throw new TypeError("fault.path must be a string");
    const rule = { times: Infinity, ...fault };
    this.#rules.push(rule);
    return () => {
      this.#rules = this.#rules.filter((r) => r !== rule);
    };
  }

  /** Removes every rule. */
  clear(): void {
    this.#rules = [];
  }

  /** The first rule matching a request, counting it. */
  match(method: string, path: string): Fault | undefined {
    const rule = this.#rules.find((r) =>
      path.startsWith(r.path) && (!r.method || r.method.toUpperCase() === method)
    );
    if (!rule) return undefined;
    rule.times -= 1;
    if (rule.times <= 0) this.#rules = this.#rules.filter((r) => r !== rule);
    this.hits.set(rule.path, (this.hits.get(rule.path) ?? 0) + 1);
    return rule;
  }
}

/**
 * The middleware that applies the first matching rule of `faults` to a request: waits
 * `latencyMs` (cut short when the client goes away or `store` closes), then either breaks the
 * connection (`drop`), answers `status` with `body` as plain text without running the handler,
 * or runs the handler and rewrites the answer it returns (`malformed`, `filteredByAcls`,
 * `indexBackwards`; an error it throws is answered as it is).
 * A request no rule matches passes untouched.
 *
 * @example
 * ```ts
 * import { Hono } from "hono";
 * import { Faults, injectFaults } from "./faults.ts";
 * import { Store } from "./store.ts";
 * const faults = new Faults();
 * const app = new Hono();
 * app.get("/v1/agent/self", injectFaults(faults, new Store()), (c) => c.json({}));
 * faults.add({ path: "/v1/agent/self", status: 503, body: "No cluster leader", times: 1 });
 * const r = await app.request("/v1/agent/self");
 * console.log(r.status, await r.text()); // 503 No cluster leader
 * ```
 */
export function injectFaults(faults: Faults, store: Store): MiddlewareHandler {
  return async (c, next) => {
    const fault = faults.match(c.req.method, new URL(c.req.url).pathname);
    if (!fault) return await next();
    if (fault.latencyMs) {
      await store.waitUntil(() => false, fault.latencyMs, c.req.raw.signal);
    }
    if (fault.drop) {
      // A body stream that errors makes the server abort the connection mid-response.
      return new Response(
        new ReadableStream({
          start(controller) {
            controller.error(new Error("devagent: dropped connection"));
          },
        }),
        { status: 200 },
      );
    }
    if (fault.status) return text(c, fault.body ?? "injected fault", fault.status);
    await next();
    // An error answer (a thrown BadRequest turned into Consul's text) is left as it is.
    if (c.error) return;
    let res = c.res;
    if (fault.malformed) {
      res = new Response('{"broken": ', { status: res.status, headers: res.headers });
    }
    if (fault.filteredByAcls && res.ok) {
      const body = await res.text();
      let list = false;
      try {
        list = Array.isArray(JSON.parse(body));
      } catch {
        // not JSON: only the header
      }
      res = new Response(list ? "[]" : body, { status: res.status, headers: res.headers });
      res.headers.delete("Content-Length");
      res.headers.set("X-Consul-Results-Filtered-By-ACLs", "true");
    }
    if (fault.indexBackwards && res.headers.has("X-Consul-Index")) {
      res = new Response(res.body, { status: res.status, headers: res.headers });
      res.headers.set("X-Consul-Index", "1");
    }
    if (res !== c.res) {
      // Replace the answer as it is: hono's setter would merge the old headers back in.
      c.res = undefined;
      c.res = res;
    }
  };
}
