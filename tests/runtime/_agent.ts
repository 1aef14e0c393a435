// A scripted agent for the runtime's feeds: roots and leaves signed by a real ConnectCA, answered
// as Consul answers blocking queries (a request with an index waits until the answer changes or
// its `wait` elapses, then answers). It runs in-process through AgentClient's `fetch` option, so
// that under fake time only the timers decide the order. The test sets each answer.
import { AgentClient } from "../../src/agent/client.ts";
import { parseGoDuration } from "../../src/agent/duration.ts";
import type { ConnectCA, IssuedLeaf } from "../../src/devagent/ca.ts";

/** One answer of a resource: a body, or an HTTP error with Consul's text. */
type Answer = { body: unknown } | { status: number; text: string };

interface Resource {
  index: number;
  answer?: Answer;
  wake: Set<() => void>;
}

/** A request the agent received. */
export interface SeenRequest {
  path: string;
  /** The blocking index, when the request blocks. */
  index?: string;
  /** `Date.now()` when it came (fake time in these tests). */
  at: number;
}

/** An agent answering roots and leaves as the test sets them. */
export function scriptedAgent(ca: ConnectCA) {
  const resources = new Map<string, Resource>();
  const requests: SeenRequest[] = [];
  const resource = (path: string): Resource => {
    let r = resources.get(path);
    if (!r) resources.set(path, r = { index: 0, wake: new Set() });
    return r;
  };
  const set = (path: string, answer: Answer) => {
    const r = resource(path);
    r.index++;
    r.answer = answer;
    for (const wake of r.wake) wake();
  };
  const setRoots = () =>
    set("/v1/agent/connect/ca/roots", {
      body: { ActiveRootID: ca.activeRoot.ID, TrustDomain: ca.trustDomain, Roots: ca.roots },
    });
  setRoots();

  const respond = (r: Resource): Response => {
    const answer = r.answer!;
    const headers = { "X-Consul-Index": String(r.index), "Content-Type": "application/json" };
    if ("body" in answer) {
      const body = answer.body as Record<string, unknown>;
      const withIndex = "SerialNumber" in body
        ? { ...body, CreateIndex: r.index, ModifyIndex: r.index }
        : body;
      return new Response(JSON.stringify(withIndex), { headers });
    }
    return new Response(answer.text, { status: answer.status, headers });
  };

  const fetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const signal = init?.signal ?? undefined;
    const index = url.searchParams.get("index") ?? undefined;
    requests.push({ path: url.pathname, index, at: Date.now() });
    const r = resources.get(url.pathname);
    if (!r?.answer) return new Response("not scripted", { status: 404 });
    if (index !== undefined && Number(index) >= r.index) {
      // Block until the answer changes, the wait elapses or the caller gives up.
      const waitMs = parseGoDuration(url.searchParams.get("wait") ?? "5m");
      const { promise, resolve, reject } = Promise.withResolvers<void>();
      const timer = setTimeout(resolve, waitMs);
      const onAbort = () => reject(signal!.reason);
      signal?.addEventListener("abort", onAbort, { once: true });
      r.wake.add(resolve);
      try {
        await promise;
      } finally {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        r.wake.delete(resolve);
      }
    }
    return respond(r);
  };

  const agent = new AgentClient({
    address: "http://agent.test:8500",
    watchDefaults: { minIntervalMs: 0, backoffBaseMs: 1000, backoffMaxMs: 1000 },
    fetch,
  });
  return {
    agent,
    requests,
    /** Requests for `path` that did not block: the first read, and every "ask again". */
    asks: (path: string) => requests.filter((q) => q.path === path && q.index === undefined),
    /** Answers the leaf of `service` with `leaf` from now on (waking blocked requests). */
    leaf: (service: string, leaf: IssuedLeaf) =>
      set(`/v1/agent/connect/ca/leaf/${service}`, { body: leaf.cert }),
    /** Answers the leaf of `service` with an HTTP error from now on. */
    leafError: (service: string, status: number, text: string) =>
      set(`/v1/agent/connect/ca/leaf/${service}`, { status, text }),
    /** Answers the CA's current roots (after a rotation). */
    roots: setRoots,
  };
}
