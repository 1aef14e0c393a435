/**
 * Fault injection for the double: latency, error statuses, dropped connections, malformed JSON,
 * indexes that go backwards and answers filtered by ACLs, matched by method and path prefix.
 * @module
 */

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
