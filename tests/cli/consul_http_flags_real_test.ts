// -stale and -datacenter against a real Consul 1.22.7: every request the proxy command makes
// with them is one Consul accepts, and Consul answers the reads as stale reads. Skips loudly
// without the binary (`deno task consul:build`).
import assert from "node:assert/strict";
import { announceSkip, consulBinary, startConsul } from "../integration/_consul.ts";
import { eventually, spawnLogged } from "../_helpers.ts";

const MAIN = new URL("../../src/cli/main.ts", import.meta.url).pathname;
const haveConsul = consulBinary() !== undefined;
if (!haveConsul) announceSkip("consul_http_flags_real_test.ts");

interface Seen {
  url: URL;
  status: number;
  consistency: string | null;
}

/** An HTTP front of the agent that records each request with Consul's answer. */
function recordingFront(target: string) {
  const seen: Seen[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const url = new URL(req.url);
    try {
      const res = await fetch(`http://${target}${url.pathname}${url.search}`, {
        method: req.method,
        headers: req.headers,
        body: req.body,
        signal: req.signal,
      });
      seen.push({
        url,
        status: res.status,
        consistency: res.headers.get("X-Consul-Effective-Consistency"),
      });
      return res;
    } catch {
      return new Response("front: agent gone", { status: 502 });
    }
  });
  return { seen, address: `127.0.0.1:${server.addr.port}`, close: () => server.shutdown() };
}

Deno.test({
  name: "real Consul: -stale and -datacenter on every request are accepted; reads answer stale",
  ignore: !haveConsul,
  sanitizeResources: false,
  async fn() {
    await using consul = await startConsul();
    const put = (path: string, body: unknown) =>
      fetch(`${consul.url}${path}`, { method: "PUT", body: JSON.stringify(body) }).then((r) =>
        r.text()
      );
    await put("/v1/agent/service/register", {
      ID: "db-1",
      Name: "db",
      Port: 21730, // this helper's port range; nothing need listen
      Connect: {
        SidecarService: {
          Port: 21731,
          Proxy: { Upstreams: [{ DestinationName: "cache", LocalBindPort: 21732 }] },
        },
      },
    });
    const front = recordingFront(consul.address);
    const p = spawnLogged(Deno.execPath(), [
      "run",
      "-A",
      MAIN,
      "-sidecar-for",
      "db-1",
      "-http-addr",
      front.address,
      "-stale",
      "-datacenter",
      "dc1",
      "-admin-bind",
      "",
      "-log-json",
    ]);
    try {
      await eventually(() => p.logs().includes('"proxy ready"'), 30_000, "the proxy");
      await eventually(
        () => front.seen.some((s) => s.url.pathname === "/v1/health/connect/cache"),
        10_000,
        "the upstream's health read",
      );
      for (const s of front.seen) {
        const what = `${s.url.pathname}${s.url.search} → ${s.status}`;
        assert.ok(s.status < 400, what);
        assert.equal(s.url.searchParams.get("dc"), "dc1", what);
      }
      for (const path of ["/v1/health/connect/cache", "/v1/discovery-chain/cache"]) {
        const reads = front.seen.filter((s) => s.url.pathname === path);
        assert.ok(reads.length > 0, path);
        for (const s of reads) {
          assert.ok(s.url.searchParams.has("stale"), `${path}${s.url.search}`);
          // Consul says how it answered: a stale read, not the leader's.
          assert.equal(s.consistency, "stale", `${path}${s.url.search}`);
        }
      }
      p.child.kill("SIGTERM");
      assert.equal(await p.exited(), 0, p.logs());
    } finally {
      try {
        p.child.kill("SIGTERM");
      } catch { /* already gone */ }
      await p.exited();
      await consul.stop();
      await front.close();
    }
  },
});
