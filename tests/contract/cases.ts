/**
 * The contract suite: independent cases that pin the Consul agent HTTP contract meshgate relies
 * on, run against every agent we test with (hono's `common.case.test.ts` shape). The in-process
 * test double runs them always (`tests/contract/devagent_test.ts`), a real `consul agent -dev`
 * in the integration suite (`tests/integration/contract_test.ts`). Each case sets up what it
 * needs under names no other case uses, cleans up after itself, and can run alone (a fresh
 * double) or after any other case (one shared real agent). {@linkcode SKIPS} says, per case and
 * agent, why a case cannot run there.
 *
 * The intention cases also check the proxy's own decision code (`src/intentions/decide.ts`)
 * against what the agent answers, so a precedence bug cannot hide behind a double that decides
 * with the same code.
 * @module
 */
import assert from "node:assert/strict";
import { AgentClient } from "../../src/agent/client.ts";
import { AgentError } from "../../src/agent/errors.ts";
import { OperatorClient } from "../../src/agent/operator.ts";
import type { AuthorizeResult, ConfigEntry, Intention } from "../../src/agent/types.ts";
import { decideByIntentions } from "../../src/intentions/decide.ts";
import { parseCertificate } from "../../src/trust/certificate.ts";
import { verifyChain } from "../../src/trust/chain.ts";
import { parseSpiffeId, type ServiceSpiffeId } from "../../src/trust/spiffe.ts";
import { next } from "../_helpers.ts";

// ---- the harness -------------------------------------------------------------------------

/** Which agent a case runs against: the in-process double or a real Consul agent. */
export type AgentKind = "double" | "consul";

/** An agent the suite can talk to. */
export interface ContractAgent {
  /** The double or a real Consul. */
  kind: AgentKind;
  /** `http://127.0.0.1:<port>`. */
  url: string;
  /** `127.0.0.1:<port>`, for {@linkcode AgentClient}. */
  address: string;
  /** Sent as `X-Consul-Token` on every request (an ACL agent's management token). */
  token?: string;
  /**
   * What authorize answers when no intention matches ("Default behavior configured by ACLs"):
   * `true` for `consul agent -dev` and the double's default, `false` for an ACL agent with
   * `default_policy = "deny"` and a double started with `defaultAllow: false`.
   */
  defaultAllow: boolean;
  /** What the agent printed so far (a real agent's log), shown when a case fails. */
  logs?(): string;
}

/** A running agent the runner stops when done with it. */
export type StartedAgent = ContractAgent & AsyncDisposable;

/** An HTTP answer, read to the end. */
export interface RawAnswer {
  /** HTTP status. */
  status: number;
  /** The body as text. */
  text: string;
  /** The body as JSON, or `undefined` when it is empty or not JSON. */
  // deno-lint-ignore no-explicit-any
  json: any;
  /** The response headers. */
  headers: Headers;
  /** `X-Consul-Index` as a number, when sent. */
  index?: number;
}

/** What a case gets: clients on the agent, names of its own, and cleanup. */
export interface CaseContext {
  /** The agent under test. */
  agent: ContractAgent;
  /** meshgate's client on it (fast watch defaults). */
  client: AgentClient;
  /** meshgate's operator client on it (intentions, config entries, CA, queries). */
  operator: OperatorClient;
  /** The agent's trust domain (`<cluster-id>.consul`). */
  trustDomain: string;
  /** A name no other case uses on this agent: `<base>-<n>`. */
  name(base: string): string;
  /** The SPIFFE ID of `service` in dc1's default namespace. */
  uri(service: string): string;
  /** {@linkcode uri} parsed. */
  id(service: string): ServiceSpiffeId;
  /** One request with the agent's token, the body sent as given (string) or as JSON. */
  call(path: string, init?: { method?: string; body?: unknown }): Promise<RawAnswer>;
  /** Runs `fn` when the case ends, pass or fail, last registered first. */
  defer(fn: () => unknown): void;
  /** Registers a service and deregisters it at the end of the case. */
  register(service: Record<string, unknown>): Promise<void>;
  /** Writes a config entry and deletes it at the end of the case. */
  putEntry(entry: ConfigEntry): Promise<void>;
  /**
   * Polls `check` until it returns something other than `undefined`/`false` (a real agent
   * syncs its catalog and refreshes its caches in the background), failing after `ms` with
   * `what` and the last error `check` threw. @default {45_000} (see `SYNC_MS`)
   */
  until<T>(what: string, check: () => Promise<T | undefined | false>, ms?: number): Promise<T>;
}

/** One case of the contract. */
export interface ContractCase {
  /** What the agent does, as a sentence. */
  name: string;
  /**
   * The case reads {@linkcode ContractAgent.defaultAllow} and holds under either default, so
   * the runners also run it on their default-deny agents.
   */
  anyDefaultPolicy?: boolean;
  /** The case. */
  fn(ctx: CaseContext): Promise<void>;
}

/** A case that cannot run on one kind of agent, and why. */
export interface Skip {
  /** The case's name. */
  case: string;
  /** The agent it cannot run on. */
  agent: AgentKind;
  /** Why: what the agent cannot do (or does differently, with the plan to fix it). */
  reason: string;
}

/**
 * How long a case waits for a real agent to sync its catalog. A sync that fails (seen when a
 * check is written while its service is being deregistered) makes Consul's anti-entropy retry
 * a full sync after 15 s plus a random stagger of up to 15 s; until then no change reaches the
 * catalog.
 */
const SYNC_MS = 45_000;

let counter = 0;

/** Names unique within this process: cases never see each other's services or intentions. */
function uniqueName(base: string): string {
  return `${base}-${++counter}`;
}

/** {@linkcode uniqueName} for several bases at once, as a tuple to destructure. */
function names<const T extends readonly string[]>(...bases: T): { [K in keyof T]: string } {
  return bases.map(uniqueName) as { [K in keyof T]: string };
}

async function readAnswer(res: Response): Promise<RawAnswer> {
  const text = await res.text();
  let json: unknown;
  try {
    json = text === "" ? undefined : JSON.parse(text);
  } catch {
    // plain text
  }
  const header = res.headers.get("X-Consul-Index");
  return {
    status: res.status,
    text,
    json,
    headers: res.headers,
    index: header === null ? undefined : Number(header),
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function runCase(agent: ContractAgent, c: ContractCase): Promise<void> {
  const client = new AgentClient({
    address: agent.address,
    token: agent.token,
    watchDefaults: { minIntervalMs: 0, backoffBaseMs: 50, backoffMaxMs: 500 },
  });
  const operator = new OperatorClient(client);
  const deferred: (() => unknown)[] = [];
  const call = async (path: string, init: { method?: string; body?: unknown } = {}) =>
    readAnswer(
      await fetch(`${agent.url}${path}`, {
        method: init.method ?? "GET",
        headers: agent.token ? { "X-Consul-Token": agent.token } : {},
        body: init.body === undefined
          ? undefined
          : typeof init.body === "string"
          ? init.body
          : JSON.stringify(init.body),
      }),
    );
  let outcome: { failed: false } | { failed: true; error: unknown } = { failed: false };
  try {
    const trustDomain = (await client.roots()).value.TrustDomain;
    const uri = (svc: string) => `spiffe://${trustDomain}/ns/default/dc/dc1/svc/${svc}`;
    const ctx: CaseContext = {
      agent,
      client,
      operator,
      trustDomain,
      name: uniqueName,
      uri,
      id: (svc) => parseSpiffeId(uri(svc)) as ServiceSpiffeId,
      call,
      defer: (fn) => void deferred.push(fn),
      async register(service) {
        await client.register(service as unknown as Parameters<AgentClient["register"]>[0]);
        const id = String(service.ID ?? service.Name);
        // The case may have deregistered it itself: a 404 then.
        deferred.push(() =>
          client.deregister(id).catch((e) => {
            if (!(e instanceof AgentError && e.status === 404)) throw e;
          })
        );
      },
      async putEntry(entry) {
        await operator.putConfigEntry(entry);
        deferred.push(() => operator.deleteConfigEntry(entry.Kind, entry.Name));
      },
      async until<T>(
        what: string,
        check: () => Promise<T | undefined | false>,
        ms = SYNC_MS,
      ): Promise<T> {
        const deadline = Date.now() + ms;
        let last = "";
        while (true) {
          try {
            const v = await check();
            if (v !== undefined && v !== false) return v as T;
          } catch (err) {
            last = err instanceof Error ? err.message : String(err);
          }
          if (Date.now() > deadline) {
            throw new Error(`timed out after ${ms} ms waiting for ${what}${last && `: ${last}`}`);
          }
          await sleep(50);
        }
      },
    };
    await c.fn(ctx);
  } catch (error) {
    outcome = { failed: true, error };
  }
  // Cleanup runs even when the case failed; a failing cleanup fails a case that passed.
  for (const fn of deferred.reverse()) {
    try {
      await fn();
    } catch (error) {
      if (!outcome.failed) outcome = { failed: true, error };
    }
  }
  await client.close();
  if (outcome.failed) throw outcome.error;
}

/** Runs `fn`; when it fails, the agent's log tail joins the error message. */
async function withLogs(agent: ContractAgent, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    const tail = agent.logs?.().slice(-4000).trim();
    if (tail && err instanceof Error) err.message += `\n--- the agent's log (tail) ---\n${tail}`;
    throw err;
  }
}

/** How a runner file runs the suite against one kind of agent. */
export interface RunContractOptions {
  /** The test's name: `contract (<label>)`. */
  label: string;
  /** The kind of agent {@linkcode start} starts (which skips apply). */
  kind: AgentKind;
  /** Starts the agent. */
  start: () => Promise<StartedAgent>;
  /**
   * `"per-case"`: a fresh agent for every case (the double: cheap, and it proves each case
   * sets up what it needs); `"shared"`: one agent for the whole run (a real Consul takes
   * seconds to start; it proves each case cleans up after itself).
   */
  lifetime: "per-case" | "shared";
  /** Only the cases that hold under either default policy (for a default-deny agent). */
  onlyAnyDefaultPolicy?: boolean;
  /** Skips the whole test (no Consul binary). */
  ignore?: boolean;
  /** Runs only the cases whose name matches (env `MESHGATE_CONTRACT_CASE`, for debugging). */
  only?: RegExp;
}

/**
 * `MESHGATE_CONTRACT_RUN_SKIPPED=1` runs the skipped cases too: to see whether a skip still
 * holds (a skipped case that passes should leave {@linkcode SKIPS}).
 */
const RUN_SKIPPED = Deno.env.get("MESHGATE_CONTRACT_RUN_SKIPPED") === "1";

/**
 * Registers one `Deno.test` that runs every case as a step against agents from `start`,
 * honouring {@linkcode SKIPS}. A failing case fails its step; the others still run.
 */
export function runContract(options: RunContractOptions): void {
  const env = Deno.env.get("MESHGATE_CONTRACT_CASE");
  const only = options.only ?? (env ? new RegExp(env) : undefined);
  const selected = CASES.filter((c) =>
    (!options.onlyAnyDefaultPolicy || c.anyDefaultPolicy) && (!only || only.test(c.name))
  );
  Deno.test({
    name: `contract (${options.label})`,
    ignore: options.ignore,
    // A real agent is a child process with pipes, kept across steps.
    sanitizeResources: options.kind === "double",
    async fn(t) {
      const shared = options.lifetime === "shared" ? await options.start() : undefined;
      try {
        for (const c of selected) {
          const skip = RUN_SKIPPED
            ? undefined
            : SKIPS.find((s) => s.case === c.name && s.agent === options.kind);
          await t.step({
            name: skip ? `${c.name} (skipped: ${skip.reason})` : c.name,
            ignore: !!skip,
            async fn() {
              if (shared) return await withLogs(shared, () => runCase(shared, c));
              await using agent = await options.start();
              await withLogs(agent, () => runCase(agent, c));
            },
          });
        }
      } finally {
        await shared?.[Symbol.asyncDispose]();
      }
    },
  });
}

// ---- shared checks -----------------------------------------------------------------------

const DEFAULT_REASON = "Default behavior configured by ACLs";

/** The answer authorize must give `caller` → `destination`, from the spec's precedence rules. */
type Expected = { by: string; precedence: number; action: "ALLOW" | "DENY" } | {
  by: string;
  precedence: number;
  permissions: number;
} | "default";

function expectedAnswer(expected: Expected, allowByDefault: boolean): AuthorizeResult {
  if (expected === "default") return { Authorized: allowByDefault, Reason: DEFAULT_REASON };
  if ("permissions" in expected) {
    return {
      Authorized: false,
      Reason: `Matched L7 intention: ${expected.by} (Precedence: ${expected.precedence}, ` +
        `Permissions: ${expected.permissions})`,
    };
  }
  return {
    Authorized: expected.action === "ALLOW",
    Reason: `Matched L4 intention: ${expected.by} (Precedence: ${expected.precedence}, ` +
      `Action: ${expected.action})`,
  };
}

/**
 * For each `[caller, destination, expected]`: authorize answers `expected` (polled: a real
 * agent's intention cache refreshes in the background), `/v1/connect/intentions/check` agrees,
 * and the proxy's `decideByIntentions` over `/v1/connect/intentions/match` gives the same
 * answer, or `undefined` where authorize fell back to the default.
 */
async function checkDecisions(
  ctx: CaseContext,
  table: [caller: string, destination: string, expected: Expected][],
): Promise<void> {
  const problems: string[] = [];
  for (const [caller, destination, expected] of table) {
    const want = expectedAnswer(expected, ctx.agent.defaultAllow);
    const ask = () =>
      ctx.client.authorize({
        Target: destination,
        ClientCertURI: ctx.uri(caller),
        ClientCertSerial: "01",
      });
    let got: AuthorizeResult | undefined;
    // The double answers at once; a real agent's cache may take a moment.
    const ms = ctx.agent.kind === "double" ? 0 : 15_000;
    await ctx.until(`${caller} → ${destination}: ${want.Reason}`, async () => {
      got = await ask();
      return got.Authorized === want.Authorized && got.Reason === want.Reason;
    }, ms).catch(() => {});
    if (got?.Authorized !== want.Authorized || got?.Reason !== want.Reason) {
      problems.push(
        `${caller} → ${destination}: authorize ${JSON.stringify(got)}, want ${
          JSON.stringify(want)
        }`,
      );
      continue;
    }
    const match = (await ctx.client.intentionMatch("destination", destination)).value;
    const decided = decideByIntentions(match, destination, ctx.id(caller));
    const mine = decided && { Authorized: decided.authorized, Reason: decided.reason };
    if (expected === "default" ? mine !== undefined : !isDeepEqual(mine, got)) {
      problems.push(
        `${caller} → ${destination}: decideByIntentions ${JSON.stringify(mine)}, ` +
          `authorize ${JSON.stringify(got)}`,
      );
    }
    const check = await ctx.call(
      `/v1/connect/intentions/check?source=${caller}&destination=${destination}`,
    );
    if (check.json?.Allowed !== got.Authorized) {
      problems.push(`${caller} → ${destination}: intentions/check ${check.text.trim()}`);
    }
  }
  assert.deepEqual(problems, []);
}

function isDeepEqual(a: unknown, b: unknown): boolean {
  try {
    assert.deepEqual(a, b);
    return true;
  } catch {
    return false;
  }
}

/** `default/<src> => default/<dst>` as authorize's reason names an intention. */
const pair = (src: string, dst: string) => `default/${src} => default/${dst}`;

/** Waits for `path` to list `n` mesh endpoints (the real agent syncs its catalog later). */
function healthCount(ctx: CaseContext, service: string, n: number, query = ""): Promise<RawAnswer> {
  return ctx.until(`${n} endpoints of ${service}${query}`, async () => {
    const a = await ctx.call(`/v1/health/connect/${service}${query}`);
    return a.status === 200 && a.json?.length === n ? a : undefined;
  });
}

/** Starts a blocking read and resolves once it has surely reached the agent and parked. */
async function parked<T>(read: () => Promise<T>): Promise<{ pending: Promise<T> }> {
  const pending = read();
  pending.catch(() => {}); // awaited by the caller; not an unhandled rejection meanwhile
  await sleep(300);
  return { pending };
}

// ---- the cases ---------------------------------------------------------------------------

/** Every case, in the order the runners run them (CA rotation last: it changes the roots). */
const wire: ContractCase[] = [
  {
    name: "wire: a 405 names the allowed methods, OPTIONS lists them, an unknown path is a 404",
    async fn({ call }) {
      const put = await call("/v1/agent/connect/authorize", { method: "PUT", body: "{}" });
      assert.equal(put.status, 405);
      assert.equal(put.headers.get("Allow"), "OPTIONS,POST");
      const opt = await call("/v1/connect/intentions/exact", { method: "OPTIONS" });
      assert.deepEqual([opt.status, opt.text], [200, ""]);
      assert.equal(opt.headers.get("Allow"), "OPTIONS,GET,PUT,DELETE");
      const unknown = await call("/v1/nope");
      assert.equal(unknown.status, 404);
      assert.match(unknown.headers.get("Content-Type") ?? "", /^text\/plain/);
      const self = await call("/v1/agent/self");
      assert.equal(self.headers.get("X-Consul-Default-ACL-Policy"), "allow");
      assert.match(self.text, /^\{\n {4}"Config"/, "dev mode pretty-prints with 4 spaces");
    },
  },
  {
    name: "wire: bodies decode strictly (EOF, unknown fields) and field names match in any case",
    async fn({ call, name, uri, defer }) {
      const post = (path: string, body: string, method = "POST") =>
        call(path, { method, body }).then((a) => [a.status, a.text]);
      assert.deepEqual(await post("/v1/agent/connect/authorize", ""), [
        400,
        "Request decode failed: EOF",
      ]);
      assert.deepEqual(await post("/v1/agent/connect/authorize", '{"target":"db","Extra":1}'), [
        400,
        'Request decode failed: json: unknown field "Extra"',
      ]);
      assert.deepEqual(
        await post("/v1/agent/service/register", '{"Name":"web","Namespace":"x"}', "PUT"),
        [400, 'Request decode failed: json: unknown field "Namespace"'],
      );
      assert.deepEqual(await post("/v1/agent/service/register", "{}", "PUT"), [
        400,
        "Missing service name",
      ]);
      // Go's encoding/json matches field names case-insensitively.
      const ok = await post(
        "/v1/agent/connect/authorize",
        JSON.stringify({ target: name("db"), clientcerturi: uri("web") }),
      );
      assert.equal(ok[0], 200);
      const svc = name("plain");
      const reg = await call("/v1/agent/service/register", {
        method: "PUT",
        body: { Name: svc, Port: 1 },
      });
      defer(() => call(`/v1/agent/service/deregister/${svc}`, { method: "PUT" }));
      assert.deepEqual([reg.status, reg.text, reg.headers.get("Content-Type")], [
        200,
        "",
        "application/json; charset=utf-8",
      ], "a handler with no result answers an empty body with Consul's JSON content type");
    },
  },
  {
    name:
      "wire: CE refuses ns and partition where an endpoint reads them and ignores them elsewhere",
    async fn({ call, name }) {
      const ns = await call(`/v1/health/connect/${name("db")}?ns=default`);
      assert.deepEqual([ns.status, ns.text], [
        400,
        `Invalid query parameter: "ns" - Namespaces are a Consul Enterprise feature`,
      ]);
      const part = await call("/v1/agent/services?partition=default");
      assert.equal(part.status, 400);
      assert.match(part.text, /Partitions are a Consul Enterprise feature/);
      // Consul 1.22.7 ignores it where nothing reads it (the spec expected a 400 everywhere).
      assert.equal((await call("/v1/agent/connect/ca/roots?ns=team")).status, 200);
    },
  },
  {
    name: "blocking: a bad wait or index is a 400, an empty wait= or index= is ignored",
    async fn({ call, name, register }) {
      for (const q of ["index=1&wait=forever", "wait=zz"]) {
        const r = await call(`/v1/agent/connect/ca/roots?${q}`);
        assert.deepEqual([r.status, r.text], [400, "Invalid wait time"], q);
      }
      for (const q of ["index=abc", "index=x"]) {
        const r = await call(`/v1/agent/connect/ca/roots?${q}`);
        assert.deepEqual([r.status, r.text], [400, "Invalid index"], q);
      }
      const web = name("web");
      await register({ ID: `${web}-1`, Name: web, Port: 1, Connect: { SidecarService: {} } });
      for (
        const path of [
          "/v1/agent/connect/ca/roots?wait=&index=",
          `/v1/health/connect/${web}?wait=&index=`,
          `/v1/discovery-chain/${web}?wait=&index=`,
          `/v1/connect/intentions/match?by=destination&name=${web}&wait=&index=`,
          `/v1/agent/connect/ca/leaf/${web}?wait=&index=`,
          `/v1/agent/service/${web}-1-sidecar-proxy?wait=&index=&hash=`,
        ]
      ) {
        const r = await call(path);
        assert.equal(r.status, 200, `${path}: ${r.text}`);
      }
      // /v1/agent/service/:id parses wait and index even without hash, before the ID.
      const bad = await call(`/v1/agent/service/${web}-1?wait=zz`);
      assert.deepEqual([bad.status, bad.text], [400, "Invalid wait time"]);
      const badIndex = await call(`/v1/agent/service/${web}-1?index=x`);
      assert.deepEqual([badIndex.status, badIndex.text], [400, "Invalid index"]);
      assert.equal((await call(`/v1/agent/service/${name("nope")}?wait=zz`)).status, 400);
    },
  },
  {
    name: "headers: each endpoint sets the metadata headers Consul's setMeta writes",
    async fn(ctx) {
      const { call, name, register } = ctx;
      const db = name("db");
      await register({ ID: `${db}-1`, Name: db, Port: 2, Connect: { SidecarService: {} } });
      await healthCount(ctx, db, 1);
      const roots = await call("/v1/agent/connect/ca/roots");
      assert.equal(roots.headers.get("X-Consul-Query-Backend"), "blocking-query");
      assert.deepEqual([roots.headers.get("X-Cache"), roots.headers.get("Age")], ["HIT", "0"]);
      const rootsWait = await call(`/v1/agent/connect/ca/roots?index=${roots.index}&wait=50ms`);
      assert.deepEqual([rootsWait.headers.get("X-Cache"), rootsWait.headers.get("Age")], [
        "MISS",
        null,
      ]);
      for (
        const path of [
          `/v1/health/connect/${db}`,
          `/v1/discovery-chain/${db}`,
          `/v1/connect/intentions/match?by=destination&name=${db}`,
        ]
      ) {
        const h = (await call(path)).headers;
        assert.equal(h.get("X-Consul-Effective-Consistency"), "leader", path);
        assert.equal(h.get("X-Consul-Query-Backend"), "blocking-query", path);
        assert.equal(h.get("X-Consul-KnownLeader"), "true", path);
      }
      const list = (await call("/v1/connect/intentions")).headers;
      assert.equal(list.get("X-Consul-Effective-Consistency"), null);
      assert.equal(list.get("X-Consul-Query-Backend"), "blocking-query");
      // A blocking health read is the streaming backend's: no leader to report.
      const healthIndex = (await call(`/v1/health/connect/${db}`)).index;
      const streamed = (await call(`/v1/health/connect/${db}?index=${healthIndex}&wait=50ms`))
        .headers;
      assert.equal(streamed.get("X-Consul-Query-Backend"), "streaming");
      assert.equal(streamed.get("X-Consul-KnownLeader"), "false");
      assert.equal(streamed.get("X-Consul-Effective-Consistency"), "leader");
      // Config entry reads carry the table's index, found or not.
      const missing = await call(`/v1/config/service-resolver/${name("nope")}`);
      assert.equal(missing.status, 404);
      assert.ok(missing.index! > 1, `index ${missing.index}`);
      assert.equal(missing.headers.get("X-Consul-Query-Backend"), "blocking-query");
    },
  },
];

const services: ContractCase[] = [
  {
    name: "register: Connect.SidecarService registers the proxy as Consul does",
    async fn(ctx) {
      const { client, name, register, call } = ctx;
      const web = name("web");
      const id = `${web}-1`;
      const sidecar = `${id}-sidecar-proxy`;
      await register({
        ID: id,
        Name: web,
        Port: 8080,
        Tags: ["v2"],
        Check: { Name: "web alive", TTL: "30s", Status: "passing" },
        Connect: {
          SidecarService: {
            Proxy: {
              Config: { local_connect_timeout_ms: 2000 },
              Upstreams: [{ DestinationName: "db", LocalBindPort: 9191 }],
            },
          },
        },
      });
      const res = await client.service(sidecar);
      const s = res.value;
      assert.equal(res.hash, s.ContentHash);
      assert.match(s.ContentHash ?? "", /^[0-9a-f]{1,16}$/);
      assert.equal(s.Kind, "connect-proxy");
      assert.equal(s.ID, sidecar);
      assert.equal(s.Service, `${web}-sidecar-proxy`);
      assert.ok(s.Port >= 21000 && s.Port <= 21255, `port ${s.Port}`);
      assert.deepEqual(s.Tags, ["v2"]);
      assert.deepEqual(s.Meta, {});
      assert.deepEqual(s.Weights, { Passing: 1, Warning: 1 });
      assert.equal(s.Datacenter, "dc1");
      assert.equal(s.Proxy?.DestinationServiceName, web);
      assert.equal(s.Proxy?.DestinationServiceID, id);
      assert.equal(s.Proxy?.LocalServiceAddress, "127.0.0.1");
      assert.equal(s.Proxy?.LocalServicePort, 8080);
      assert.deepEqual(s.Proxy?.Config, { local_connect_timeout_ms: 2000 });
      assert.deepEqual(s.Proxy?.Upstreams, [{
        DestinationType: "service",
        DestinationName: "db",
        LocalBindPort: 9191,
        MeshGateway: {},
      }]);
      assert.deepEqual(s.Proxy?.MeshGateway, {});
      assert.deepEqual(s.Proxy?.Expose, {});
      assert.equal(s.Connect, undefined, "a SidecarService is never echoed back");
      const proxies = await client.services({
        filter: `Kind == "connect-proxy" and Service == "${web}-sidecar-proxy"`,
      });
      assert.deepEqual(Object.keys(proxies), [sidecar]);
      // The sidecar gets Consul's two default checks; its parent keeps its own.
      const [entry] = (await healthCount(ctx, web, 1)).json;
      assert.deepEqual(
        // deno-lint-ignore no-explicit-any
        entry.Checks.map((c: any) => [c.CheckID, c.Name, c.Type]),
        [
          ["serfHealth", "Serf Health Status", ""],
          [`service:${sidecar}:1`, "Connect Sidecar Listening", "tcp"],
          [`service:${sidecar}:2`, `Connect Sidecar Aliasing ${id}`, "alias"],
        ],
      );
      // A second service's sidecar gets another port from the range.
      const api = name("api");
      await register({ ID: `${api}-1`, Name: api, Port: 9000, Connect: { SidecarService: {} } });
      const other = (await client.service(`${api}-1-sidecar-proxy`)).value.Port;
      assert.ok(other !== s.Port && other >= 21000 && other <= 21255, `port ${other}`);
      // Deregistering the parent removes its sidecar.
      await client.deregister(id);
      const gone = await call(`/v1/agent/service/${sidecar}`);
      assert.deepEqual([gone.status, gone.text], [404, `unknown service ID: ${sidecar}`]);
      const again = await call(`/v1/agent/service/deregister/${id}`, { method: "PUT" });
      assert.equal(again.status, 404);
      assert.match(again.text, new RegExp(`^Unknown service ID "${id}"`));
    },
  },
  {
    name: "register: a connect-proxy without port or destination fails with Consul's multi-error",
    async fn({ call, name }) {
      const r = await call("/v1/agent/service/register", {
        method: "PUT",
        body: { Kind: "connect-proxy", Name: name("p"), Proxy: {} },
      });
      assert.equal(r.status, 400);
      assert.match(
        r.text,
        /^Validation failed: 2 errors occurred:\n\t\* Port or SocketPath must be set/,
      );
    },
  },
  {
    name: "agent service: hash blocking waits for a change, any other hash answers at once, " +
      "deregistration answers 404",
    async fn(ctx) {
      const { client, name, register } = ctx;
      const web = name("web");
      const id = `${web}-1`;
      const sidecar = `${id}-sidecar-proxy`;
      const registration = (tags: string[]) => ({
        ID: id,
        Name: web,
        Port: 8080,
        Tags: tags,
        Connect: { SidecarService: {} },
      });
      await register(registration(["v2"]));
      // `consul agent -dev` is a server: the virtual IP the catalog assigns lands in the
      // agent's own copy of the sidecar some moments after registration (a new hash). Wait for
      // the registration to settle before timing a wait on its hash.
      await healthCount(ctx, web, 1);
      const r0 = await ctx.until("a settled sidecar registration", async () => {
        const a = await client.service(sidecar);
        await sleep(500);
        const b = await client.service(sidecar);
        return a.hash === b.hash ? b : undefined;
      });
      assert.match(r0.hash ?? "", /^[0-9a-f]{1,16}$/);
      for (const hash of ["0", "zzz"]) {
        const started = Date.now();
        const other = await client.service(sidecar, { hash, waitMs: 20_000 });
        assert.equal(other.hash, r0.hash, "any other hash answers at once");
        assert.ok(Date.now() - started < 5000);
      }
      const started = Date.now();
      const same = await client.service(sidecar, { hash: r0.hash, waitMs: 1000 });
      assert.ok(Date.now() - started >= 900, "the current hash blocks");
      assert.equal(same.hash, r0.hash);
      const blocked = await parked(() =>
        client.service(sidecar, { hash: r0.hash, waitMs: 20_000 })
      );
      await client.register(registration(["v3"]));
      let changed = await blocked.pending;
      assert.notEqual(changed.hash, r0.hash);
      // A wake-up is not proof of the change we made (the agent re-syncs in steps).
      for (let i = 0; i < 5 && changed.value.Tags[0] !== "v3"; i++) {
        changed = await client.service(sidecar, { hash: changed.hash, waitMs: 5000 });
      }
      assert.deepEqual(changed.value.Tags, ["v3"]);
      const gone = await parked(() =>
        client.service(sidecar, { hash: changed.hash, waitMs: 20_000 }).catch((e) => e)
      );
      await client.deregister(id);
      const err = await gone.pending;
      assert.ok(err instanceof AgentError, String(err));
      assert.deepEqual([err.status, err.consulMessage], [404, `unknown service ID: ${sidecar}`]);
    },
  },
  {
    name: "checks: unknown service and check IDs are 404s, a bad status is refused, a TTL " +
      "check that expires turns critical with Consul's output",
    async fn(ctx) {
      const { client, call, name, register } = ctx;
      const nope = name("nope");
      const unknown = await client.deregister(nope).catch((e) => e);
      assert.equal(unknown.status, 404);
      assert.match(unknown.consulMessage, new RegExp(`^Unknown service ID "${nope}"`));
      const badCheck = await client.setCheck(nope, "pass").catch((e) => e);
      assert.equal(badCheck.status, 404);
      assert.match(badCheck.consulMessage, new RegExp(`^Unknown check ID "${nope}"`));
      const web = name("web");
      const checkId = `service:${web}-1-sidecar-proxy`;
      await register({
        ID: `${web}-1`,
        Name: web,
        Port: 1,
        Connect: { SidecarService: { Check: { TTL: "1s", Status: "passing" } } },
      });
      const bad = await call(`/v1/agent/check/update/${checkId}`, {
        method: "PUT",
        body: { Status: "fine" },
      });
      assert.deepEqual([bad.status, bad.text], [400, "Invalid check status: 'fine'"]);
      const missing = await call(`/v1/agent/check/update/${nope}`, {
        method: "PUT",
        body: { Status: "passing" },
      });
      assert.equal(missing.status, 404);
      assert.match(missing.text, new RegExp(`Unknown check ID "${nope}"`));
      await call(`/v1/agent/check/pass/${checkId}?note=ok`, { method: "PUT" });
      const check = await ctx.until("the TTL check to expire", async () => {
        const a = await call(`/v1/health/connect/${web}`);
        // deno-lint-ignore no-explicit-any
        const c = a.json?.[0]?.Checks.find((c: any) => c.CheckID === checkId);
        if (c?.Status === "critical") return c;
        throw new Error(`the catalog has ${JSON.stringify(c ?? a.json)}`);
      });
      assert.equal(check.Output, "TTL expired (last output before timeout follows): ok");
    },
  },
];

const health: ContractCase[] = [
  {
    name: "health/connect: lists only mesh endpoints; ?passing follows the check; a blocked " +
      "read wakes on the change",
    async fn(ctx) {
      const { client, name, register } = ctx;
      const plain = name("plain");
      await register({ ID: `${plain}-1`, Name: plain, Port: 80 });
      const db = name("db");
      const sidecar = `${db}-1-sidecar-proxy`;
      await register({
        ID: `${db}-1`,
        Name: db,
        Port: 5432,
        Connect: {
          SidecarService: { Port: 21900, Check: { TTL: "60s", Status: "critical" } },
        },
      });
      const [e] = (await healthCount(ctx, db, 1)).json;
      assert.equal(e.Service.ID, sidecar);
      assert.equal(e.Service.Port, 21900);
      assert.equal(e.Service.Proxy.DestinationServiceName, db);
      assert.equal(e.Node.Datacenter, "dc1");
      assert.equal(e.Node.Address, "127.0.0.1");
      // deno-lint-ignore no-explicit-any
      assert.ok(e.Checks.some((c: any) => c.CheckID === "serfHealth"));
      assert.equal(e.Service.TaggedAddresses?.["consul-virtual"]?.Port, 21900);
      assert.deepEqual((await client.healthConnect(db, { passing: true })).value, []);
      // A service without a sidecar has no mesh endpoints.
      assert.deepEqual((await client.healthConnect(plain, {})).value, []);
      const before = await client.healthConnect(db, { passing: true });
      const blocked = await parked(() =>
        client.healthConnect(db, { passing: true, index: before.index, waitMs: 20_000 })
      );
      await client.setCheck(`service:${sidecar}`, "pass");
      let woke = await blocked.pending;
      // The real agent's catalog sync may answer an intermediate state first.
      for (let i = 0; woke.value.length === 0 && i < 5; i++) {
        woke = await client.healthConnect(db, {
          passing: true,
          index: woke.index,
          waitMs: 20_000,
        });
      }
      assert.equal(woke.value.length, 1);
      assert.ok(woke.index! > before.index!);
    },
  },
  {
    name: "health/connect: a blocked read wakes for its own service only",
    async fn(ctx) {
      const { call, name, register, operator, defer } = ctx;
      const db = name("db");
      const first = await call(`/v1/health/connect/${db}`);
      const started = Date.now();
      const blocked = await parked(() =>
        call(`/v1/health/connect/${db}?index=${first.index}&wait=2s`)
      );
      // A change to another service and to intentions must not wake it.
      const web = name("web");
      await register({ ID: `${web}-1`, Name: web, Port: 1, Connect: { SidecarService: {} } });
      const [a, b] = [name("a"), name("b")];
      await operator.upsertIntention(a, b, { Action: "allow" });
      defer(() => operator.deleteIntention(a, b));
      const r = await blocked.pending;
      assert.equal(r.index, first.index, "a timeout returns the same index");
      assert.ok(Date.now() - started >= 1900, "it blocked for the whole wait");
      assert.deepEqual(r.json, []);
      // A change to db wakes it.
      const again = await parked(() =>
        call(`/v1/health/connect/${db}?index=${first.index}&wait=10s`)
      );
      await register({ ID: `${db}-1`, Name: db, Port: 2, Connect: { SidecarService: {} } });
      let woke = await again.pending;
      assert.ok(woke.index! > first.index!);
      for (let i = 0; woke.json?.length !== 1 && i < 5; i++) {
        woke = await call(`/v1/health/connect/${db}?index=${woke.index}&wait=10s`);
      }
      assert.equal(woke.json.length, 1);
    },
  },
  {
    name: "health/connect: a never-seen service answers the index at which a service last " +
      "left the catalog, and keeps it when a wait ends",
    async fn(ctx) {
      const { call, client, name, register } = ctx;
      const ghost = name("ghost");
      const [web, api] = names("web", "api");
      const ghostIndex = async () => {
        const a = await call(`/v1/health/connect/${ghost}`);
        assert.deepEqual(a.json, []);
        return a.index!;
      };
      // Consul answers a service it has no instances of with its "service last extinction"
      // index: it moves when a service's last instance leaves, not when one arrives.
      await register({ ID: `${web}-1`, Name: web, Port: 1, Connect: { SidecarService: {} } });
      await healthCount(ctx, web, 1);
      await client.deregister(`${web}-1`);
      await healthCount(ctx, web, 0);
      const extinct = await ghostIndex();
      assert.ok(extinct > 1, `index ${extinct}`);
      await register({ ID: `${api}-1`, Name: api, Port: 1, Connect: { SidecarService: {} } });
      const arrived = await healthCount(ctx, api, 1);
      assert.ok(arrived.index! > extinct);
      assert.equal(await ghostIndex(), extinct, "a service arriving does not move it");
      await client.deregister(`${api}-1`);
      await healthCount(ctx, api, 0);
      const latest = await ghostIndex();
      assert.ok(latest > arrived.index!, `${latest} <= ${arrived.index}: a service left`);
      // A blocking read that times out keeps it, though the catalog moved meanwhile.
      const blocked = await parked(() =>
        call(`/v1/health/connect/${ghost}?index=${latest}&wait=1s`)
      );
      const other = name("other");
      await register({ ID: other, Name: other, Port: 1 });
      const r = await blocked.pending;
      assert.equal(r.index, latest);
      assert.deepEqual(r.json, []);
    },
  },
  {
    name: "health/connect: ?tag filters only on the streaming (blocking) path",
    async fn(ctx) {
      const { call, name, register } = ctx;
      const db = name("db");
      await register({
        ID: `${db}-1`,
        Name: db,
        Port: 2,
        Tags: ["a"],
        Connect: { SidecarService: {} },
      });
      const one = await healthCount(ctx, db, 1);
      const plain = await call(`/v1/health/connect/${db}?tag=nope`);
      assert.equal(plain.json.length, 1, "the server's connect query ignores ?tag");
      const streamed = await call(`/v1/health/connect/${db}?tag=nope&index=${one.index! - 1}`);
      assert.deepEqual(streamed.json, []);
    },
  },
];

const ca: ContractCase[] = [
  {
    name: "roots and leaf: Consul's fields and SPIFFE URIs; the leaf chains to the active root",
    async fn({ client, operator, name, uri }) {
      const roots = (await client.roots()).value;
      assert.match(roots.TrustDomain, /^[0-9a-f-]{36}\.consul$/);
      const active = roots.Roots.find((r) => r.Active);
      assert.ok(active, "an active root");
      assert.equal(active.ID, roots.ActiveRootID);
      assert.equal(active.ID.length, 59);
      assert.equal(active.Name, "Consul CA Primary Cert");
      assert.equal(active.ExternalTrustDomain, roots.TrustDomain.replace(".consul", ""));
      const cfg = await operator.caConfiguration();
      assert.equal(active.PrivateKeyType, cfg.Config.PrivateKeyType ?? "ec");
      assert.equal(active.PrivateKeyBits, cfg.Config.PrivateKeyBits ?? 256);
      const rootInfo = await parseCertificate(active.RootCert);
      assert.equal(rootInfo.sha1Fingerprint, active.ID);
      assert.equal(rootInfo.subjectKeyId, active.SigningKeyID);
      assert.deepEqual(rootInfo.uris, [`spiffe://${roots.TrustDomain}`]);
      assert.match(rootInfo.subject, /^CN=pri-[a-z0-9]+\.consul\.ca\.[0-9a-f]{8}\.consul$/);
      // A leaf for a service that is registered nowhere is still issued.
      const svc = name("web");
      const leaf = await client.leaf(svc);
      assert.ok(leaf.index! >= 1n);
      assert.equal(leaf.value.Service, svc);
      assert.equal(leaf.value.ServiceURI, uri(svc));
      assert.equal(leaf.value.CreateIndex, leaf.value.ModifyIndex);
      assert.match(leaf.value.SerialNumber, /^[0-9a-f]{2}(:[0-9a-f]{2})*$/);
      assert.match(leaf.value.PrivateKeyPEM, /^-----BEGIN EC PRIVATE KEY-----/);
      const info = await parseCertificate(leaf.value.CertPEM);
      assert.equal(info.subject, "");
      assert.deepEqual(info.uris, [uri(svc)]);
      assert.equal(info.serial, leaf.value.SerialNumber);
      assert.equal(info.authorityKeyId, active.SigningKeyID);
      assert.equal(
        Date.parse(leaf.value.ValidBefore) - Date.parse(leaf.value.ValidAfter),
        72 * 3600_000,
      );
      await verifyChain(info, [], [rootInfo]);
      const id = parseSpiffeId(leaf.value.ServiceURI);
      assert.equal(id.kind === "service" && id.datacenter, "dc1");
    },
  },
  {
    name: "leaf: a plain read revalidates (MISS, same certificate); an index already behind is " +
      "served from the cache (HIT with an Age)",
    async fn({ client, name }) {
      const svc = name("web");
      const first = await client.leaf(svc);
      assert.equal(first.headers.get("X-Cache"), "MISS");
      // Consul 1.22.7 revalidates on every read without an index: a MISS, the same certificate.
      const again = await client.leaf(svc);
      assert.equal(again.headers.get("X-Cache"), "MISS");
      assert.equal(again.headers.get("Age"), null);
      assert.equal(again.value.SerialNumber, first.value.SerialNumber);
      const stale = await client.leaf(svc, { index: first.index! - 1n, waitMs: 10_000 });
      assert.equal(stale.headers.get("X-Cache"), "HIT");
      // The leaf manager's Age is the seconds since the fetch.
      assert.match(stale.headers.get("Age") ?? "", /^[0-2]$/);
      assert.equal(stale.value.SerialNumber, first.value.SerialNumber);
    },
  },
  {
    name: "blocking: a wait that ends without a change answers the same index",
    async fn({ client, name }) {
      const r0 = await client.roots();
      let started = Date.now();
      const r1 = await client.roots({ index: r0.index, waitMs: 1000 });
      assert.ok(Date.now() - started >= 900, "roots blocked");
      assert.equal(r1.index, r0.index);
      const svc = name("web");
      const l0 = await client.leaf(svc);
      started = Date.now();
      const l1 = await client.leaf(svc, { index: l0.index, waitMs: 1000 });
      assert.ok(Date.now() - started >= 900, "the leaf blocked");
      assert.equal(l1.index, l0.index);
      assert.equal(l1.value.SerialNumber, l0.value.SerialNumber);
    },
  },
  {
    name: "CA configuration and agent/self: the fields meshgate reads",
    async fn({ client, operator, call }) {
      const cfg = await operator.caConfiguration();
      assert.equal(cfg.Provider, "consul");
      assert.equal(cfg.Config.LeafCertTTL, "72h");
      const self = await client.self();
      assert.equal(self.Config.Datacenter, "dc1");
      assert.equal(typeof self.Config.NodeName, "string");
      assert.equal((await call("/v1/agent/self")).json.Config.BindAddr, "127.0.0.1");
    },
  },
];

const rotation: ContractCase = {
  name: "CA rotation: the roots watch delivers both roots; new leaves chain to both",
  async fn({ client, operator, name }) {
    const before = (await client.roots()).value;
    const ac = new AbortController();
    const it = client.watchRoots().subscribe(ac.signal);
    try {
      await it.next();
      const cfg = await operator.caConfiguration();
      assert.equal(cfg.Provider, "consul");
      const bits = cfg.Config.PrivateKeyBits === 384 ? 256 : 384;
      await operator.setCAConfiguration({
        Provider: "consul",
        Config: { ...cfg.Config, PrivateKeyType: "ec", PrivateKeyBits: bits },
      });
      // The roots may arrive in more than one step: wait for the settled state.
      const settled = (r: typeof before) =>
        r.ActiveRootID !== before.ActiveRootID &&
        r.Roots.some((x) => x.ID === before.ActiveRootID) &&
        r.Roots.find((x) => x.ID === r.ActiveRootID)?.Active === true;
      let after = (await next(it, 30_000)).value;
      while (!settled(after)) after = (await next(it, 30_000)).value;
      // Consul 1.22.7 lists roots sorted by ID, not "the most recently activated last" as the
      // spec read it: find them by ID.
      assert.deepEqual(after.Roots.map((r) => r.ID), after.Roots.map((r) => r.ID).sort());
      const fresh = after.Roots.find((r) => r.ID === after.ActiveRootID);
      const old = after.Roots.find((r) => r.ID === before.ActiveRootID);
      assert.ok(fresh && old);
      assert.equal(old.Active, false);
      assert.equal(fresh.PrivateKeyBits, bits);
      assert.equal(fresh.IntermediateCerts?.length, 1);
      const oldRoot = await parseCertificate(old.RootCert);
      const newRoot = await parseCertificate(fresh.RootCert);
      const cross = await parseCertificate(fresh.IntermediateCerts[0]!);
      assert.equal(cross.subjectKeyId, newRoot.subjectKeyId);
      assert.equal(cross.authorityKeyId, oldRoot.subjectKeyId);
      // A plain read revalidates against the new active root.
      const svc = name("web");
      await client.leaf(svc);
      let leafPem = "";
      for (const deadline = Date.now() + 45_000; Date.now() < deadline;) {
        leafPem = (await client.leaf(svc)).value.CertPEM;
        if ((await parseCertificate(leafPem)).authorityKeyId === fresh.SigningKeyID) break;
        await sleep(200);
      }
      const leafInfo = await parseCertificate(leafPem);
      assert.equal(leafInfo.authorityKeyId, fresh.SigningKeyID, "a leaf signed by the new root");
      await verifyChain(leafInfo, [], [newRoot]);
      await verifyChain(leafInfo, [cross], [oldRoot]);
    } finally {
      ac.abort();
      await it.return?.();
    }
  },
};

const authorize: ContractCase[] = [
  {
    name: "authorize: bad requests are 400s with Consul's text, without X-Cache",
    async fn({ call, trustDomain, name, uri }) {
      const target = name("db");
      const ask = (body: unknown) => call("/v1/agent/connect/authorize", { method: "POST", body });
      const cases: [unknown, string][] = [
        [
          { Target: target, ClientCertURI: "https://x" },
          "ClientCertURI not a valid Connect identifier",
        ],
        [
          { Target: target, ClientCertURI: `spiffe://${trustDomain}/agent/client/dc/dc1/id/n1` },
          "ClientCertURI not a valid Service identifier",
        ],
        [
          {
            Target: target,
            ClientCertURI: `spiffe://${trustDomain}/ap/team/ns/default/dc/dc1/svc/web`,
          },
          'Mismatched partitions: "team" != "default"',
        ],
        [{ Target: "", ClientCertURI: uri("web") }, "Target service must be specified"],
        [
          { Target: target, ClientCertURI: uri("web"), Namespace: "default" },
          'Request decode failed: json: unknown field "Namespace"',
        ],
      ];
      for (const [body, message] of cases) {
        const r = await ask(body);
        assert.deepEqual([r.status, r.text], [400, message]);
        assert.deepEqual([r.headers.get("X-Cache"), r.headers.get("Age")], [null, null]);
      }
    },
  },
  {
    name: "authorize: answers from an intention-match cache (MISS, then HIT with Age 0)",
    async fn({ call, name, uri }) {
      const body = { Target: name("db"), ClientCertURI: uri("web") };
      const ask = () => call("/v1/agent/connect/authorize", { method: "POST", body });
      const first = await ask();
      assert.deepEqual(first.json, { Authorized: true, Reason: DEFAULT_REASON });
      assert.deepEqual([first.headers.get("X-Cache"), first.headers.get("Age")], ["MISS", null]);
      const again = await ask();
      assert.deepEqual([again.headers.get("X-Cache"), again.headers.get("Age")], ["HIT", "0"]);
    },
  },
  // On the real agent (1.22.7) authorize answers from an intention-match cache that, seen here,
  // can stay stale for 40 s and more after a destination's entry is modified, and for a target
  // first asked about before its entry existed. So every destination below is written once,
  // before anything asks about it, under a name no other case uses.
  {
    name: "intention precedence: exact beats a wildcard source beats a wildcard destination " +
      "(L4); nothing matching falls to the default",
    anyDefaultPolicy: true,
    async fn(ctx) {
      const [web, api, batch, cron] = names("web", "api", "batch", "cron");
      const [pay, ledger, audit] = names("pay", "ledger", "audit");
      await ctx.putEntry({
        Kind: "service-intentions",
        Name: "*",
        Sources: [{ Name: api, Action: "deny" }, { Name: batch, Action: "allow" }],
      });
      await ctx.putEntry({
        Kind: "service-intentions",
        Name: pay,
        Sources: [{ Name: web, Action: "allow" }, { Name: batch, Action: "deny" }],
      });
      await ctx.putEntry({
        Kind: "service-intentions",
        Name: ledger,
        Sources: [{ Name: web, Action: "deny" }, { Name: "*", Action: "allow" }],
      });
      // The match list is in evaluation order: precedence, then names.
      const order = (await ctx.client.intentionMatch("destination", pay)).value.map((i) =>
        `${i.SourceName}>${i.DestinationName}:${i.Precedence}`
      );
      assert.deepEqual(order, [
        `${batch}>${pay}:9`,
        `${web}>${pay}:9`,
        `${api}>*:6`,
        `${batch}>*:6`,
      ]);
      await checkDecisions(ctx, [
        [web, pay, { by: pair(web, pay), precedence: 9, action: "ALLOW" }],
        [batch, pay, { by: pair(batch, pay), precedence: 9, action: "DENY" }], // 9 beats 6
        [api, pay, { by: pair(api, "*"), precedence: 6, action: "DENY" }],
        [cron, pay, "default"],
        [web, ledger, { by: pair(web, ledger), precedence: 9, action: "DENY" }],
        [api, ledger, { by: pair("*", ledger), precedence: 8, action: "ALLOW" }], // 8 beats 6
        [batch, ledger, { by: pair("*", ledger), precedence: 8, action: "ALLOW" }],
        [cron, ledger, { by: pair("*", ledger), precedence: 8, action: "ALLOW" }],
        [api, audit, { by: pair(api, "*"), precedence: 6, action: "DENY" }],
        [batch, audit, { by: pair(batch, "*"), precedence: 6, action: "ALLOW" }],
        [web, audit, "default"],
      ]);
    },
  },
  {
    name: "intention precedence: a wildcard-to-wildcard intention decides where nothing else " +
      "matches (written through the exact API)",
    anyDefaultPolicy: true,
    async fn(ctx) {
      const { operator, defer } = ctx;
      const [web, cron] = names("web", "cron");
      const [db, solo] = names("db", "solo");
      // The opposite of the default, so that the intention is what decides.
      const everyone = ctx.agent.defaultAllow ? "deny" : "allow";
      const upsert = async (src: string, dst: string, action: "allow" | "deny") => {
        assert.equal(await operator.upsertIntention(src, dst, { Action: action }), true);
        defer(() => operator.deleteIntention(src, dst));
      };
      await upsert("*", "*", everyone);
      await upsert(web, "*", everyone === "deny" ? "allow" : "deny");
      await upsert(web, db, everyone);
      const loud = (a: string) => a.toUpperCase() as "ALLOW" | "DENY";
      await checkDecisions(ctx, [
        [web, db, { by: pair(web, db), precedence: 9, action: loud(everyone) }],
        [cron, db, { by: pair("*", "*"), precedence: 5, action: loud(everyone) }],
        [
          web,
          solo,
          { by: pair(web, "*"), precedence: 6, action: everyone === "deny" ? "ALLOW" : "DENY" },
        ],
        [cron, solo, { by: pair("*", "*"), precedence: 5, action: loud(everyone) }],
      ]);
    },
  },
  {
    name: "intention precedence: an L7 intention denies every caller it matches; an L4 one " +
      "beside it decides for its own caller",
    anyDefaultPolicy: true,
    async fn(ctx) {
      const [web, api, cron] = names("web", "api", "cron");
      const [shop, tcp] = names("shop", "tcp");
      const l7 = (...rules: [string, string][]) =>
        rules.map(([Action, PathPrefix]) => ({ Action, HTTP: { PathPrefix } }));
      // Permissions need an HTTP-like protocol on the destination.
      const refused = await ctx.operator.putConfigEntry({
        Kind: "service-intentions",
        Name: tcp,
        Sources: [{ Name: web, Permissions: l7(["allow", "/"]) }],
      }).catch((e) => e);
      assert.ok(refused instanceof AgentError, String(refused));
      assert.equal(refused.status, 500);
      assert.equal(
        refused.consulMessage,
        `service "${tcp}" has protocol "tcp", which is incompatible with L7 intentions permissions`,
      );
      await ctx.putEntry({ Kind: "service-defaults", Name: shop, Protocol: "http" });
      await ctx.putEntry({
        Kind: "service-intentions",
        Name: shop,
        Sources: [
          { Name: web, Permissions: l7(["allow", "/"]) },
          { Name: api, Action: "allow" },
          { Name: "*", Permissions: l7(["deny", "/admin"], ["allow", "/"]) },
        ],
      });
      await checkDecisions(ctx, [
        [web, shop, { by: pair(web, shop), precedence: 9, permissions: 1 }],
        [api, shop, { by: pair(api, shop), precedence: 9, action: "ALLOW" }],
        [cron, shop, { by: pair("*", shop), precedence: 8, permissions: 2 }],
      ]);
    },
  },
  {
    name: "intention names: CE reads a namespace part (ns/name, */name) as the default namespace",
    async fn(ctx) {
      const { operator, call, defer } = ctx;
      const [web, api] = names("web", "api");
      const [db, pay] = names("db", "pay");
      const put = await call(
        `/v1/connect/intentions/exact?source=*/${web}&destination=${db}`,
        { method: "PUT", body: { Action: "deny" } },
      );
      defer(() => operator.deleteIntention(web, db));
      assert.deepEqual([put.status, put.json], [200, true]);
      const put2 = await call(
        `/v1/connect/intentions/exact?source=${api}&destination=default/${pay}`,
        { method: "PUT", body: { Action: "allow" } },
      );
      defer(() => operator.deleteIntention(api, pay));
      assert.deepEqual([put2.status, put2.json], [200, true]);
      const stored = await operator.intention(web, db);
      assert.deepEqual(
        [stored?.SourceNS, stored?.SourceName, stored?.DestinationName, stored?.Precedence],
        ["default", web, db, 9],
      );
      // A service-intentions entry refuses a namespace outright.
      const entry = await call("/v1/config", {
        method: "PUT",
        body: {
          Kind: "service-intentions",
          Name: ctx.name("x"),
          Sources: [{ Name: web, Namespace: "*", Action: "allow" }],
        },
      });
      assert.equal(entry.status, 400);
      assert.match(
        entry.text,
        /invalid config key "Sources\[0\]\.Namespace", namespaces are a consul enterprise feature/,
      );
      await checkDecisions(ctx, [
        [web, db, { by: pair(web, db), precedence: 9, action: "DENY" }],
        [api, pay, { by: pair(api, pay), precedence: 9, action: "ALLOW" }],
      ]);
    },
  },
];

const intentions: ContractCase[] = [
  {
    name: "intentions: exact CRUD, list order, 404 without an index, idempotent delete, " +
      "missing or malformed names are 500s",
    async fn({ operator, client, call, defer }) {
      const [web, db, nobody] = names("web", "db", "nobody");
      assert.equal(await operator.upsertIntention(web, db, { Action: "allow" }), true);
      defer(() => operator.deleteIntention(web, db));
      await operator.upsertIntention("*", db, { Action: "deny" });
      defer(() => operator.deleteIntention("*", db));
      const ixn = await operator.intention(web, db);
      assert.equal(ixn?.Action, "allow");
      assert.equal(ixn?.Precedence, 9);
      assert.equal(ixn?.SourceNS, "default");
      assert.equal(ixn?.DestinationNS, "default");
      assert.equal(ixn?.SourceType, "consul");
      assert.equal(ixn?.ID ?? "", "");
      // 1.22.7 leaves out CreatedAt/UpdatedAt for intentions created by name.
      assert.equal(ixn?.CreatedAt, undefined);
      assert.equal(await operator.intention(nobody, db), undefined);
      const missing = await call(`/v1/connect/intentions/exact?source=${nobody}&destination=${db}`);
      assert.deepEqual([missing.status, missing.text], [404, "Intention not found"]);
      assert.equal(missing.headers.get("X-Consul-Index"), null);
      const mine = async () =>
        (await client.intentions({ filter: `DestinationName == "${db}"` })).value.map((i) =>
          `${i.SourceName}>${i.DestinationName}:${i.Precedence}:${i.Action}`
        );
      assert.deepEqual(await mine(), [`${web}>${db}:9:allow`, `*>${db}:8:deny`]);
      // A second write to the same pair replaces it.
      await operator.upsertIntention(web, db, { Action: "deny" });
      assert.deepEqual(await mine(), [`${web}>${db}:9:deny`, `*>${db}:8:deny`]);
      await operator.deleteIntention(web, db);
      await operator.deleteIntention(web, db);
      await operator.deleteIntention("*", db);
      assert.deepEqual(await mine(), []);
      const noSource = await call(`/v1/connect/intentions/exact?destination=${db}`, {
        method: "PUT",
        body: { Action: "allow" },
      });
      assert.deepEqual([noSource.status, noSource.text], [
        500,
        "required query parameter 'source' not set",
      ]);
      const slashes = await call(`/v1/connect/intentions/exact?source=a/b/c/d&destination=${db}`, {
        method: "PUT",
        body: { Action: "allow" },
      });
      assert.deepEqual([slashes.status, slashes.text], [
        500,
        `source "a/b/c/d" is invalid: input can contain at most two '/'`,
      ]);
    },
  },
  {
    name: "intentions/match: evaluation order; a name nothing matches maps to null; a blocked " +
      "read wakes on a change; no 'by' is a 500",
    async fn({ client, call, putEntry, operator }) {
      const [pay, web, billing, ghost] = names("pay", "web", "billing", "ghost");
      await putEntry({
        Kind: "service-intentions",
        Name: pay,
        Sources: [
          { Name: web, Action: "allow" },
          { Name: billing, Action: "deny" },
          { Name: "*", Action: "deny" },
        ],
      });
      const first = await client.intentionMatch("destination", pay);
      assert.deepEqual(first.value.map((i) => [i.SourceName, i.Action, i.Precedence]), [
        [billing, "deny", 9],
        [web, "allow", 9],
        ["*", "deny", 8],
      ]);
      assert.ok(first.index! > 0n);
      // Consul maps a name nothing matches to null, not [] (the client's decoder makes it []).
      const both = await call(
        `/v1/connect/intentions/match?by=destination&name=${ghost}&name=${pay}`,
      );
      assert.equal(both.json[ghost], null);
      assert.equal(both.json[pay].length, 3);
      assert.deepEqual((await client.intentionMatch("destination", ghost)).value, []);
      const waiting = await parked(() =>
        client.intentionMatch("destination", pay, { index: first.index, waitMs: 20_000 })
      );
      await operator.putConfigEntry({
        Kind: "service-intentions",
        Name: pay,
        Sources: [{ Name: web, Action: "deny" }, { Name: "*", Action: "deny" }],
      });
      const changed = await waiting.pending;
      assert.ok(changed.index! > first.index!);
      assert.deepEqual(changed.value.map((i) => [i.SourceName, i.Action]), [
        [web, "deny"],
        ["*", "deny"],
      ]);
      const missingBy = await call(`/v1/connect/intentions/match?name=${pay}`);
      assert.equal(missingBy.status, 500);
      assert.match(missingBy.text, /'by' not set/);
    },
  },
  {
    name: "intentions: a blocked list read wakes on a write",
    async fn({ client, operator, defer }) {
      const [web, cache] = names("web", "cache");
      const i0 = await client.intentions();
      const blocked = await parked(() => client.intentions({ index: i0.index, waitMs: 20_000 }));
      await operator.upsertIntention(web, cache, { Action: "allow" });
      defer(() => operator.deleteIntention(web, cache));
      const i1 = await blocked.pending;
      assert.ok(i1.index! > i0.index!);
      assert.ok(
        i1.value.some((i: Intention) => i.SourceName === web && i.DestinationName === cache),
      );
    },
  },
  {
    name: "intentions: L7 permissions on a tcp destination are refused through the exact API",
    async fn({ call }) {
      const [web, db] = names("web", "db");
      const r = await call(`/v1/connect/intentions/exact?source=${web}&destination=${db}`, {
        method: "PUT",
        body: { Permissions: [{ Action: "allow", HTTP: { PathPrefix: "/" } }] },
      });
      assert.deepEqual([r.status, r.text], [
        500,
        `service "${db}" has protocol "tcp", which is incompatible with L7 intentions permissions`,
      ]);
    },
  },
];

const chains: ContractCase[] = [
  {
    name: "discovery chain: the default chain, with Consul's names",
    async fn({ client, call, name, trustDomain }) {
      const db = name("db");
      const chain = (await client.discoveryChain(db)).value;
      assert.equal(chain.Default, true);
      assert.equal(chain.Protocol, "tcp");
      assert.equal(chain.StartNode, `resolver:${db}.default.default.dc1`);
      const target = chain.Targets[`${db}.default.default.dc1`];
      assert.equal(target?.SNI, `${db}.default.dc1.internal.${trustDomain}`);
      assert.equal(target?.Name, target?.SNI);
      assert.equal(target?.ConnectTimeout, "5s");
      const node = chain.Nodes[chain.StartNode];
      assert.equal(node?.Resolver?.ConnectTimeout, "5s");
      assert.equal(node?.Resolver?.Default, true);
      assert.equal(node?.LoadBalancer, undefined);
      // Consul sends null for a service without a virtual IP; the client's decoder makes it [].
      const raw = (await call(`/v1/discovery-chain/${db}`)).json.Chain;
      assert.equal(raw.AutoVirtualIPs, null);
      assert.equal(raw.ManualVirtualIPs, null);
      assert.equal(raw.Nodes[raw.StartNode].Resolver.RequestTimeout, undefined);
      assert.deepEqual(chain.AutoVirtualIPs, []);
    },
  },
  {
    name: "discovery chain: a resolver's timeouts, failover and redirect; a blocked read wakes " +
      "on the change",
    async fn({ client, call, putEntry }) {
      const [db, backup, legacy] = names("db", "db-backup", "legacy");
      const dbTarget = `${db}.default.default.dc1`;
      const backupTarget = `${backup}.default.default.dc1`;
      const before = await client.discoveryChain(db);
      const blocked = await parked(() =>
        client.discoveryChain(db, { index: before.index, waitMs: 20_000 })
      );
      await putEntry({
        Kind: "service-resolver",
        Name: db,
        ConnectTimeout: "3s",
        RequestTimeout: "2s",
        Failover: { "*": { Service: backup } },
      });
      const after = await blocked.pending;
      assert.ok(after.index! > before.index!);
      const chain = after.value;
      assert.equal(chain.Default, undefined);
      const node = chain.Nodes[`resolver:${dbTarget}`];
      assert.equal(node?.Resolver?.ConnectTimeout, "3s");
      assert.equal(node?.Resolver?.Default ?? false, false);
      assert.deepEqual(node?.Resolver?.Failover, { Targets: [backupTarget] });
      assert.equal(chain.Targets[dbTarget]?.ConnectTimeout, "3s");
      // The failover service keeps its own (default) timeout; it is a target, not a node.
      assert.equal(chain.Targets[backupTarget]?.Service, backup);
      assert.equal(chain.Targets[backupTarget]?.ConnectTimeout, "5s");
      assert.equal(Object.keys(chain.Nodes).length, 1);
      const raw = (await call(`/v1/discovery-chain/${db}`)).json.Chain;
      assert.equal(
        raw.Nodes[`resolver:${dbTarget}`].Resolver.RequestTimeout,
        2_000_000_000,
        "Go's time.Duration: nanoseconds",
      );
      await putEntry({ Kind: "service-resolver", Name: legacy, Redirect: { Service: db } });
      const redirected = (await client.discoveryChain(legacy)).value;
      assert.equal(redirected.StartNode, `resolver:${dbTarget}`);
      assert.deepEqual(Object.keys(redirected.Targets).sort(), [backupTarget, dbTarget].sort());
      // The failover service's own resolver decides its timeout and default subset.
      await putEntry({
        Kind: "service-resolver",
        Name: backup,
        ConnectTimeout: "7s",
        DefaultSubset: "v1",
        Subsets: { v1: { Filter: "Service.Meta.version == v1" } },
      });
      const again = (await client.discoveryChain(db)).value;
      assert.deepEqual(again.Nodes[`resolver:${dbTarget}`]?.Resolver?.Failover?.Targets, [
        `v1.${backupTarget}`,
      ]);
      assert.equal(again.Targets[`v1.${backupTarget}`]?.ConnectTimeout, "7s");
    },
  },
  {
    name: "discovery chain: compile-dc compiles the chain for that datacenter",
    async fn({ client, name, trustDomain }) {
      const db = name("db");
      const chain = (await client.discoveryChain(db, { compileDc: "dc2" })).value;
      assert.equal(chain.Datacenter, "dc2");
      assert.equal(chain.StartNode, `resolver:${db}.default.default.dc2`);
      const target = chain.Targets[`${db}.default.default.dc2`];
      assert.equal(target?.Datacenter, "dc2");
      assert.equal(target?.SNI, `${db}.default.dc2.internal.${trustDomain}`);
    },
  },
  {
    name: "discovery chain: a resolver's load-balancer policy travels in its node",
    async fn({ client, name, putEntry }) {
      const lb = name("lb");
      await putEntry({
        Kind: "service-resolver",
        Name: lb,
        LoadBalancer: { Policy: "least_request" },
      });
      const chain = (await client.discoveryChain(lb)).value;
      const node = chain.Nodes[`resolver:${lb}.default.default.dc1`];
      assert.equal(
        (node?.LoadBalancer as { Policy?: string } | undefined)?.Policy,
        "least_request",
      );
    },
  },
  {
    name: "discovery chain: a splitter needs an L7 protocol shared by every service it names",
    async fn({ client, operator, putEntry }) {
      const [api, canary] = names("api", "api-canary");
      const splitter = {
        Kind: "service-splitter",
        Name: api,
        Splits: [{ Weight: 90 }, { Weight: 10, Service: canary }],
      };
      const tcp = await operator.putConfigEntry(splitter).catch((e) => e);
      assert.ok(tcp instanceof AgentError, String(tcp));
      assert.match(tcp.consulMessage, /does not permit advanced routing or splitting/);
      await putEntry({ Kind: "service-defaults", Name: api, Protocol: "http" });
      const mixed = await operator.putConfigEntry(splitter).catch((e) => e);
      assert.ok(mixed instanceof AgentError, String(mixed));
      assert.match(mixed.consulMessage, /uses inconsistent protocols/);
      await putEntry({ Kind: "service-defaults", Name: canary, Protocol: "http" });
      await putEntry(splitter);
      const chain = (await client.discoveryChain(api)).value;
      assert.equal(chain.Protocol, "http");
      assert.equal(chain.StartNode, `splitter:${api}.default.default`);
      assert.deepEqual(chain.Nodes[chain.StartNode]?.Splits?.map((s) => [s.Weight, s.NextNode]), [
        [90, `resolver:${api}.default.default.dc1`],
        [10, `resolver:${canary}.default.default.dc1`],
      ]);
    },
  },
  {
    name: "config entries: reads carry Hash and an index; DELETE answers {} whether or not the " +
      "entry exists; an unknown kind is a 400",
    async fn({ call, operator, name }) {
      const db = name("db");
      await operator.putConfigEntry({ Kind: "service-resolver", Name: db, ConnectTimeout: "3s" });
      const entry = await call(`/v1/config/service-resolver/${db}`);
      assert.equal(entry.status, 200);
      // A uint64 hash: beyond 2^53 as often as not, so JSON.parse rounds it (meshgate never
      // reads it).
      assert.ok(typeof entry.json.Hash === "number" && entry.json.Hash > 0, entry.text);
      assert.equal(entry.json.ConnectTimeout, "3s");
      assert.ok(entry.index! > 1);
      for (let i = 0; i < 2; i++) {
        const del = await call(`/v1/config/service-resolver/${db}`, { method: "DELETE" });
        assert.deepEqual([del.status, del.json], [200, {}]);
      }
      assert.equal((await call(`/v1/config/service-resolver/${db}`)).status, 404);
      const bad = await call(`/v1/config/nonsense/${db}`, { method: "DELETE" });
      assert.deepEqual([bad.status, bad.text], [400, "invalid config entry kind: nonsense"]);
    },
  },
  {
    name: "virtual IPs: one per mesh service, in the chain and in health; freed with the last " +
      "instance",
    async fn(ctx) {
      const { call, name, register, client } = ctx;
      const [web, db, plain] = names("web", "db", "plain");
      const chain = async (svc: string) => (await call(`/v1/discovery-chain/${svc}`)).json.Chain;
      const none = await chain(web);
      assert.equal(none.AutoVirtualIPs, null);
      assert.equal(none.ManualVirtualIPs, null);
      await register({ ID: `${web}-1`, Name: web, Port: 1, Connect: { SidecarService: {} } });
      await register({ ID: `${db}-1`, Name: db, Port: 2, Connect: { SidecarService: {} } });
      await register({ ID: `${plain}-1`, Name: plain, Port: 3 });
      const vip = (svc: string) =>
        ctx.until(`a virtual IP for ${svc}`, async () => {
          const c = await chain(svc);
          return c.AutoVirtualIPs?.length === 1 ? c : undefined;
        });
      const webChain = await vip(web);
      const dbChain = await vip(db);
      assert.match(webChain.AutoVirtualIPs[0], /^240\.\d+\.\d+\.\d+$/);
      assert.deepEqual(webChain.ManualVirtualIPs, []);
      assert.notEqual(dbChain.AutoVirtualIPs[0], webChain.AutoVirtualIPs[0]);
      await healthCount(ctx, db, 1);
      assert.equal((await chain(plain)).AutoVirtualIPs, null, "not in the mesh: no virtual IP");
      const [entry] = (await call(`/v1/health/connect/${db}`)).json;
      assert.deepEqual(entry.Service.TaggedAddresses["consul-virtual"], {
        Address: dbChain.AutoVirtualIPs[0],
        Port: entry.Service.Port,
      });
      // Freed when the last instance named so is gone, and handed out again before any
      // address never used (Consul takes the lowest from its table of freed addresses).
      await client.deregister(`${web}-1`);
      await ctx.until(
        `${web}'s virtual IP freed`,
        async () => (await chain(web)).AutoVirtualIPs === null,
      );
      const api = name("api");
      await register({ ID: `${api}-1`, Name: api, Port: 4, Connect: { SidecarService: {} } });
      const apiChain = await vip(api);
      const asNumber = (ip: string) => ip.split(".").reduce((n, part) => n * 256 + Number(part), 0);
      assert.ok(
        asNumber(apiChain.AutoVirtualIPs[0]) <= asNumber(webChain.AutoVirtualIPs[0]),
        `${api} got ${apiChain.AutoVirtualIPs[0]}, not a freed address up to ` +
          webChain.AutoVirtualIPs[0],
      );
    },
  },
];

const queries: ContractCase[] = [
  {
    name: "prepared queries: execute with connect=true lists the sidecars that pass, with " +
      "Consul's QueryMeta and Go's nil slices",
    async fn(ctx) {
      const { client, operator, call, register, defer } = ctx;
      const [db, q] = names("db", "db-query");
      const sidecar = `${db}-1-sidecar-proxy`;
      await register({
        ID: `${db}-1`,
        Name: db,
        Port: 5432,
        Connect: { SidecarService: { Port: 21900, Check: { TTL: "60s", Status: "passing" } } },
      });
      await healthCount(ctx, db, 1, "?passing");
      const id = await operator.createPreparedQuery({
        Name: q,
        Service: { Service: db, OnlyPassing: true },
      });
      defer(() => operator.deletePreparedQuery(id).catch(() => {}));
      assert.match(id, /^[0-9a-f-]{36}$/);
      for (const key of [q, id]) {
        const r = await client.preparedQuery(key);
        assert.equal(r.Service, db);
        assert.equal(r.Datacenter, "dc1");
        assert.equal(r.Failovers, 0);
        assert.deepEqual(r.Nodes.map((e) => e.Service.ID), [sidecar]);
        assert.equal(r.Nodes[0]?.Service.Port, 21900);
      }
      const raw = await call(`/v1/query/${q}/execute?connect=true`);
      assert.equal(raw.headers.get("X-Consul-Index"), "1", "execute sets no index: Consul sends 1");
      assert.equal(raw.headers.get("X-Consul-Effective-Consistency"), "leader");
      const body = raw.json;
      assert.deepEqual(
        {
          PeerName: body.PeerName,
          Index: body.Index,
          KnownLeader: body.KnownLeader,
          ConsistencyLevel: body.ConsistencyLevel,
          NotModified: body.NotModified,
          Backend: body.Backend,
          ResultsFilteredByACLs: body.ResultsFilteredByACLs,
        },
        {
          PeerName: "",
          Index: 1,
          KnownLeader: true,
          ConsistencyLevel: "leader",
          NotModified: false,
          Backend: 0,
          ResultsFilteredByACLs: false,
        },
      );
      const node = body.Nodes[0];
      assert.equal(node.Service.Tags, null);
      assert.equal(node.Service.Meta, null);
      // deno-lint-ignore no-explicit-any
      assert.ok(node.Checks.every((c: any) => c.ServiceTags === null));
      // The health endpoint replaces them with [] (Consul's "use empty list instead of nil").
      assert.deepEqual((await call(`/v1/health/connect/${db}`)).json[0].Service.Tags, []);
      await client.setCheck(`service:${sidecar}`, "warn");
      await ctx.until(
        "the warning sidecar dropped",
        async () => (await client.preparedQuery(q)).Nodes.length === 0,
      );
      await client.setCheck(`service:${sidecar}`, "pass");
      await ctx.until(
        "the passing sidecar back",
        async () => (await client.preparedQuery(q)).Nodes.length === 1,
      );
      await operator.deletePreparedQuery(id);
      const gone = await client.preparedQuery(q).catch((e) => e);
      assert.ok(gone instanceof AgentError, String(gone));
      assert.equal(gone.status, 404);
      assert.match(gone.message, /Query not found/);
    },
  },
  {
    name: "prepared queries: failures as Consul's PreparedQuery.Apply and Execute answer them",
    async fn({ call, name, defer }) {
      const [db, q] = names("db", "q");
      const post = (body: unknown) => call("/v1/query", { method: "POST", body });
      const created = await post({ Name: q, Service: { Service: db } });
      const id: string = created.json.ID;
      defer(() => call(`/v1/query/${id}`, { method: "DELETE" }));
      const duplicate = await post({ Name: q, Service: { Service: db } });
      assert.deepEqual([duplicate.status, duplicate.text], [
        500,
        `raft apply failed: name '${q}' aliases an existing query name`,
      ]);
      assert.equal(
        (await post({ Name: name("x"), Service: {} })).text,
        "Invalid prepared query: Must provide a Service name to query",
      );
      assert.equal(
        (await post({ Service: { Service: db } })).text,
        "Invalid prepared query: Must be bound to a session",
      );
      const dc9 = await call(`/v1/query/${q}/execute?connect=true&dc=dc9`);
      assert.deepEqual([dc9.status, dc9.text], [500, "No path to datacenter"]);
      assert.equal(dc9.headers.get("X-Consul-KnownLeader"), "false");
      const unknown = await call(`/v1/query/${name("nope")}/execute?connect=true`);
      assert.equal(unknown.status, 404);
      assert.match(unknown.text, /Query not found/);
      const none = await call(`/v1/query/${q}/execute?connect=true`);
      assert.deepEqual(none.json.Nodes, []);
      const del = await call(`/v1/query/${id}`, { method: "DELETE" });
      assert.deepEqual([del.status, del.text], [200, ""]);
      const again = await call(`/v1/query/${id}`, { method: "DELETE" });
      assert.deepEqual([again.status, again.text], [
        500,
        `Cannot modify non-existent prepared query: '${id}'`,
      ]);
      const byName = await call(`/v1/query/${q}`, { method: "DELETE" });
      assert.equal(byName.status, 500);
      assert.match(byName.text, /UUID must be 36 characters$/);
    },
  },
];

/** Every case, in the order the runners run them (the CA rotation last: it changes the roots). */
export const CASES: readonly ContractCase[] = [
  ...wire,
  ...services,
  ...health,
  ...authorize,
  ...intentions,
  ...chains,
  ...queries,
  ...ca,
  rotation,
];

/** The cases that cannot run on one kind of agent, and why. */
export const SKIPS: readonly Skip[] = [];

for (const skip of SKIPS) {
  if (!CASES.some((c) => c.name === skip.case)) {
    throw new Error(`SKIPS names a case that does not exist: ${skip.case}`);
  }
}
for (const [i, c] of CASES.entries()) {
  if (CASES.findIndex((x) => x.name === c.name) !== i) {
    throw new Error(`two contract cases are named "${c.name}"`);
  }
}
