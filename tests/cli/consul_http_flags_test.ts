// Consul's HTTP API flags as they act, not only as they parse: -stale and -datacenter on the
// wire (in-process and through the proxy command), -ca-path against an HTTPS front.
import assert from "node:assert/strict";
import { AgentClient } from "../../src/agent/client.ts";
import { AgentConfigError } from "../../src/agent/errors.ts";
import { parseFlags } from "../../src/cli/flags.ts";
import { createDenoAgentClient } from "../../src/transport/agent_client.ts";
import { devAgent, eventually, nth, spawnLogged } from "../_helpers.ts";
import { pki, pkiFiles, tlsFront } from "../transport/_pki.ts";

const MAIN = new URL("../../src/cli/main.ts", import.meta.url).pathname;

/** A fetch that records each URL and answers `[]` with an index, as the agent would. */
function recordingFetch() {
  const urls: URL[] = [];
  const fetch = (input: RequestInfo | URL, init?: RequestInit) => {
    urls.push(new URL(String(input)));
    init?.signal?.throwIfAborted();
    const body = new URL(String(input)).pathname.startsWith("/v1/agent/service/") ? "{}" : "[]";
    return Promise.resolve(new Response(body, { headers: { "X-Consul-Index": "7" } }));
  };
  return { urls, fetch: fetch as typeof globalThis.fetch };
}

Deno.test("-stale adds ?stale to the reads the servers answer, not to agent-local ones or writes", async () => {
  const { urls, fetch } = recordingFetch();
  const flags = parseFlags(["-sidecar-for", "web-1", "-stale"]);
  const agent = new AgentClient({ ...flags.agent, address: "127.0.0.1:1", fetch });
  // Only the request lines matter here; the canned answers need not decode.
  const ignore = () => {};
  await agent.healthConnect("db", { passing: true, index: 5n, waitMs: 1000 });
  await agent.intentions();
  await agent.services().catch(ignore);
  await agent.deregister("x").catch(ignore);
  const byPath = new Map(urls.map((u) => [u.pathname, u.searchParams]));
  assert.equal(byPath.get("/v1/health/connect/db")?.get("stale"), "", "health: blocking + stale");
  assert.equal(byPath.get("/v1/health/connect/db")?.get("index"), "5");
  assert.equal(byPath.get("/v1/connect/intentions")?.has("stale"), true);
  assert.equal(byPath.get("/v1/agent/services")?.has("stale"), false, "answered by the agent");
  assert.equal(byPath.get("/v1/agent/service/deregister/x")?.has("stale"), false, "a write");
  await agent.close();

  // Without the flag, nothing changes.
  const plain = recordingFetch();
  const off = new AgentClient({
    ...parseFlags(["-sidecar-for", "a"]).agent,
    address: "127.0.0.1:1",
    fetch: plain.fetch,
  });
  await off.healthConnect("db");
  assert.equal(nth(plain.urls, 0, "request").searchParams.has("stale"), false);
  await off.close();
});

Deno.test("-datacenter is ?dc= on every request (as Consul's client); an upstream's own dc wins", async () => {
  const { urls, fetch } = recordingFetch();
  const flags = parseFlags(["-sidecar-for", "web-1", "-datacenter", "dc2"]);
  const agent = new AgentClient({ ...flags.agent, address: "127.0.0.1:1", fetch });
  await agent.healthConnect("db");
  await agent.healthConnect("db", { dc: "dc3" });
  await agent.discoveryChain("db").catch(() => {}); // only the request line matters
  await agent.roots().catch(() => {});
  assert.deepEqual(
    urls.map((u) => `${u.pathname} ${u.searchParams.get("dc")}`),
    [
      "/v1/health/connect/db dc2",
      "/v1/health/connect/db dc3",
      "/v1/discovery-chain/db dc2",
      "/v1/agent/connect/ca/roots dc2",
    ],
  );
  await agent.close();
  const plain = recordingFetch();
  const off = new AgentClient({ address: "127.0.0.1:1", fetch: plain.fetch });
  await off.healthConnect("db");
  assert.equal(
    nth(plain.urls, 0, "request").searchParams.has("dc"),
    false,
    "no flag: the agent's datacenter",
  );
  await off.close();
});

/** An HTTP front of the double that records every request line. */
function recordingFront(target: string) {
  const seen: URL[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const url = new URL(req.url);
    seen.push(url);
    return fetch(`http://${target}${url.pathname}${url.search}`, {
      method: req.method,
      headers: req.headers,
      body: req.body,
      signal: req.signal,
    }).catch(() => new Response("front: upstream gone", { status: 502 }));
  });
  return { seen, address: `127.0.0.1:${server.addr.port}`, close: () => server.shutdown() };
}

Deno.test({
  name: "proxy command: -stale and -datacenter reach the agent; -pprof-addr serves V8 profiles",
  sanitizeResources: false,
  async fn() {
    await using dev = await devAgent();
    const front = recordingFront(dev.address);
    const p = spawnLogged(Deno.execPath(), [
      "run",
      "-A",
      MAIN,
      "-service",
      "web",
      "-upstream",
      "db:21711", // this helper's port range
      "-http-addr",
      front.address,
      "-stale",
      "-datacenter",
      "dc1",
      "-pprof-addr",
      "127.0.0.1:0",
      "-admin-bind",
      "",
      "-log-json",
    ]);
    try {
      await eventually(
        () => front.seen.some((u) => u.pathname === "/v1/health/connect/db"),
        20_000,
        "the upstream's health watch",
      );
      const health = front.seen.find((u) => u.pathname === "/v1/health/connect/db")!;
      assert.equal(health.searchParams.has("stale"), true, health.search);
      assert.equal(health.searchParams.get("dc"), "dc1", health.search);
      const chain = front.seen.find((u) => u.pathname === "/v1/discovery-chain/db");
      assert.ok(chain?.searchParams.has("stale"), chain?.search);
      for (const u of front.seen) {
        assert.equal(u.searchParams.get("dc"), "dc1", `${u.pathname}${u.search}`);
        if (u.pathname.startsWith("/v1/agent/")) {
          assert.ok(!u.searchParams.has("stale"), `${u.pathname}${u.search}`);
        }
      }
      await eventually(() => p.logs().includes("pprof listening"), 20_000, "pprof");
      const line = p.logs().split("\n").find((l) => l.includes("pprof listening"))!;
      const url = JSON.parse(line).url as string;
      const index = await fetch(url);
      assert.equal(index.status, 200);
      assert.match(await index.text(), /\/debug\/pprof\/profile\?seconds=N/);
      const profile = await fetch(`${url}profile?seconds=1`);
      assert.equal(profile.status, 200);
      const cpu = await profile.json();
      assert.ok(Array.isArray(cpu.nodes) && cpu.nodes.length > 0, "a V8 .cpuprofile");
    } finally {
      p.child.kill("SIGTERM");
      assert.equal(await p.exited(), 0, p.logs());
      await front.close();
    }
  },
});

/** An error's message and those of its causes, for matching. */
function causes(err: unknown): string {
  const out: string[] = [];
  for (let e = err; e instanceof Error; e = e.cause) out.push(e.message);
  return out.join(" <- ");
}

Deno.test({
  name: "-ca-path trusts every CA under a directory (recursively); -ca-file wins over it",
  sanitizeResources: false, // keep-alive sockets of node:https close asynchronously
  async fn() {
    await using dev = await devAgent();
    const p = await pki({ withLoopback: true });
    const other = await pki();
    const front = await tlsFront(dev.address, p.server);
    const dir = await Deno.makeTempDir({ prefix: "meshgate-capath-" });
    const otherFiles = await pkiFiles(other);
    try {
      // An unrelated CA first, ours in a subdirectory, beside a key (skipped, as Go skips it).
      await Deno.writeTextFile(`${dir}/a-other.pem`, other.ca);
      await Deno.mkdir(`${dir}/nested`);
      await Deno.writeTextFile(`${dir}/nested/consul-agent-ca.pem`, p.server.key + p.ca);
      const connect = async (...flags: string[]) => {
        const opts = parseFlags(["-sidecar-for", "a", "-http-addr", front.address, ...flags]);
        const agent = await createDenoAgentClient({ ...opts.agent, env: {} });
        try {
          return (await agent.roots()).value.Roots.length;
        } finally {
          await agent.close();
        }
      };
      assert.ok(await connect("-ca-path", dir) >= 1, "trusted through the nested CA");
      // Without it, the system roots (Deno's fetch, whose reason is in the cause chain).
      await assert.rejects(connect(), (e) => /UnknownIssuer|not trusted/.test(causes(e)));
      await assert.rejects(
        connect("-ca-path", `${dir}/a-other.pem`),
        /not trusted/,
        "a single file is a CA path too, and that one is not ours",
      );
      await assert.rejects(
        connect("-ca-path", dir, "-ca-file", otherFiles.ca),
        /not trusted/,
        "-ca-file wins, as in Consul (go-rootcerts)",
      );
      // The environment's CONSUL_CAPATH is the same setting.
      const env = await createDenoAgentClient({
        address: front.address,
        env: { CONSUL_CAPATH: dir },
      });
      assert.ok((await env.roots()).value.Roots.length >= 1);
      await env.close();

      // A file with no certificate is an error naming it; so is a missing directory.
      await Deno.writeTextFile(`${dir}/nested/README`, "not a certificate");
      const bad = await createDenoAgentClient({ caPath: dir, env: {} }).catch((e) => e);
      assert.ok(bad instanceof AgentConfigError, String(bad));
      assert.equal(bad.setting, "CONSUL_CAPATH");
      assert.match(bad.message, /nested\/README holds no PEM certificate/);
      const missing = await createDenoAgentClient({ caPath: `${dir}/nope`, env: {} })
        .catch((e) => e);
      assert.match(String(missing), /CONSUL_CAPATH: cannot read .*nope/);
      const empty = await Deno.makeTempDir({ prefix: "meshgate-capath-empty-" });
      const none = await createDenoAgentClient({ caPath: empty, env: {} }).catch((e) => e);
      assert.match(String(none), /holds no certificate files/);
      await Deno.remove(empty);
    } finally {
      await front.close();
      await Deno.remove(dir, { recursive: true });
      await Deno.remove(otherFiles.dir, { recursive: true });
    }
  },
});

Deno.test("proxy command: a bad -ca-path exits 2 naming the flag and the file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "meshgate-capath-bad-" });
  await Deno.writeTextFile(`${dir}/junk.pem`, "junk");
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", MAIN, "-sidecar-for", "a", "-ca-path", dir, "-admin-bind", ""],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 2, stderr);
    assert.match(stderr, /-ca-path: .*junk\.pem holds no PEM certificate/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
