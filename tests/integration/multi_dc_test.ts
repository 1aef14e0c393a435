// Two real datacenters (issue #15 point 5): dc1 and dc2, one dev server each, WAN-joined on
// loopback, dc1 primary (dc2 replicates its CA: one trust domain), db in both with a meshgate
// sidecar and an app that says which datacenter it is, web in dc1. Checks an upstream pinned to
// dc2, a service-resolver failover to dc2 and back, and that the identity a peer must prove is
// the target's datacenter (an instance registered in dc2 but served by dc1's sidecar is refused).
import assert from "node:assert/strict";
import { AgentClient } from "../../src/agent/client.ts";
import { OperatorClient } from "../../src/agent/operator.ts";
import type { ConnectionEvent } from "../../src/events/connection.ts";
import { createLogger } from "../../src/net/log.ts";
import { type Proxy, startProxy } from "../../src/proxy/proxy.ts";
import {
  announceSkip,
  type ConsulAgent,
  consulBinary,
  consulGet,
  type ConsulPorts,
  reserveAgentPorts,
  reservePorts,
  startConsulAgent,
  waitForLeader,
  waitUntil,
} from "./_consul.ts";
import { greeting, openLong, startGreeter, within } from "./_mesh_apps.ts";

const binary = consulBinary();
if (!binary) announceSkip("tests/integration/multi_dc_test.ts");

/** This suite's own ports (the helper's range is 21200-21499; cluster_test.ts takes the rest). */
const RANGE = { from: 21200, to: 21329 };

const agentPorts = (): ConsulPorts => reserveAgentPorts(RANGE);

interface HealthEntry {
  Service: { ID: string; Port: number };
  Checks: { Status: string }[];
}

Deno.test({
  name: "multi-dc: upstream pinned to dc2, failover to dc2 and back, target-datacenter identity",
  ignore: !binary,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const timings: Record<string, number | string> = {};
    const clock = (name: string, since: number) => (timings[name] = Date.now() - since);
    const started = Date.now();
    const agents: ConsulAgent[] = [];
    const proxies: Proxy[] = [];
    const clients: AgentClient[] = [];
    const apps: { close(): Promise<void> }[] = [];
    const events: { proxy: string; event: ConnectionEvent }[] = [];
    const proxyLog: string[] = [];
    const tail = () =>
      agents.map((a) => `--- ${a.node} (${a.datacenter}) log:\n${a.logs().slice(-2500)}`).join(
        "\n",
      ) + `\n--- proxies:\n${proxyLog.slice(-40).join("\n")}`;
    const step = (name: string, ms: number, fn: () => Promise<void>) =>
      t.step(name, () => within(ms, name, fn, tail));
    try {
      // Two single-server datacenters; dc2 names dc1 as its primary and joins it over the WAN.
      const hcl = [`primary_datacenter = "dc1"`, `connect { enabled = true }`];
      const dc1 = await startConsulAgent({
        node: "dc1-server",
        datacenter: "dc1",
        dev: true,
        ports: agentPorts(),
        hcl,
      });
      agents.push(dc1);
      const dc2 = await startConsulAgent({
        node: "dc2-server",
        datacenter: "dc2",
        dev: true,
        ports: agentPorts(),
        retryJoinWan: [`127.0.0.1:${dc1.ports.serfWan}`],
        hcl,
      });
      agents.push(dc2);
      const client = (a: ConsulAgent) => {
        const c = new AgentClient({
          address: a.address,
          watchDefaults: { minIntervalMs: 0, backoffBaseMs: 100, backoffMaxMs: 1000 },
        });
        clients.push(c);
        return c;
      };
      const a1 = client(dc1);
      const a2 = client(dc2);

      let trustDomain = "";
      await step("both datacenters up, WAN-joined, dc2's CA chained to dc1's", 60_000, async () => {
        const since = Date.now();
        await waitForLeader(dc1.url, 30_000, { detail: tail });
        await waitForLeader(dc2.url, 30_000, { detail: tail });
        await waitUntil("dc1 and dc2 to see each other over the WAN", 30_000, async () => {
          const a = await consulGet<string[]>(dc1.url, "/v1/catalog/datacenters");
          const b = await consulGet<string[]>(dc2.url, "/v1/catalog/datacenters");
          return a.includes("dc2") && b.includes("dc1");
        }, { detail: tail });
        // A secondary's CA is an intermediate signed by the primary: same roots, same trust
        // domain, and it can sign leaves only once that intermediate exists.
        const roots1 = await waitUntil("dc1's CA roots", 30_000, async () => {
          const r = (await a1.roots()).value;
          return r.Roots.length ? r : undefined;
        });
        trustDomain = roots1.TrustDomain;
        await waitUntil("dc2 to replicate dc1's roots and sign a leaf", 45_000, async () => {
          const r = (await a2.roots()).value;
          if (r.TrustDomain !== trustDomain || r.ActiveRootID !== roots1.ActiveRootID) return;
          const leaf = (await a2.leaf("db")).value;
          return leaf.CertPEM.length > 0;
        }, { detail: tail, intervalMs: 250 });
        clock("datacenters ready", since);
      });

      // db in both datacenters: an app that says where it runs, a TTL check an operator (or a
      // health checker) drives, and a sidecar whose alias check follows the app's health.
      const db1App = await startGreeter("db@dc1");
      const db2App = await startGreeter("db@dc2");
      const webApp = await startGreeter("web@dc1");
      apps.push(db1App, db2App, webApp);
      const [db1Public, db2Public, webPublic, upLocal, upDc2] = reservePorts(5, RANGE) as [
        number,
        number,
        number,
        number,
        number,
      ];
      const registerDb = (agent: AgentClient, id: string, port: number, publicPort: number) =>
        agent.register({
          ID: id,
          Name: "db",
          Address: "127.0.0.1",
          Port: port,
          Checks: [{ CheckID: `${id}-ttl`, Name: "db app", TTL: "10m", Status: "passing" }],
          Connect: {
            SidecarService: {
              Port: publicPort,
              Address: "127.0.0.1",
              Checks: [{ Name: "db app (alias)", AliasService: id }],
            },
          },
        });
      await registerDb(a1, "db-1", db1App.port, db1Public);
      await registerDb(a2, "db-2", db2App.port, db2Public);
      await a1.register({
        ID: "web-1",
        Name: "web",
        Address: "127.0.0.1",
        Port: webApp.port,
        Connect: {
          SidecarService: {
            Port: webPublic,
            Address: "127.0.0.1",
            Checks: [{ Name: "web app (alias)", AliasService: "web-1" }],
            Proxy: {
              Upstreams: [
                { DestinationName: "db", LocalBindPort: upLocal },
                { DestinationName: "db", Datacenter: "dc2", LocalBindPort: upDc2 },
              ],
            },
          },
        },
      });
      const start = async (name: string, agent: AgentClient, sidecarFor: string) => {
        const p = await startProxy({
          agent,
          sidecarFor,
          onEvent: (event) => events.push({ proxy: name, event }),
          log: createLogger({ level: "debug", write: (l) => proxyLog.push(l) }, { proxy: name }),
        });
        proxies.push(p);
        return p;
      };
      const db1Proxy = await start("db1", a1, "db-1");
      const db2Proxy = await start("db2", a2, "db-2");
      const webProxy = await start("web", a1, "web-1");
      const seen = (proxy: string, since: number) =>
        events.filter((e, i) => e.proxy === proxy && i >= since).map((e) => e.event);

      await step("the sidecars are ready in their datacenters", 30_000, async () => {
        const since = Date.now();
        await Promise.all(proxies.map((p) => p.ready));
        // Each leaf names its own datacenter; the trust domain is dc1's in both.
        const uri = (p: Proxy) => p.material.leaf?.info.uris[0] ?? "";
        assert.equal(uri(db1Proxy), `spiffe://${trustDomain}/ns/default/dc/dc1/svc/db`);
        assert.equal(uri(db2Proxy), `spiffe://${trustDomain}/ns/default/dc/dc2/svc/db`);
        assert.equal(uri(webProxy), `spiffe://${trustDomain}/ns/default/dc/dc1/svc/web`);
        // dc2 signs with its own intermediate, signed by dc1's root: its leaves carry it.
        const certs = (p: Proxy) =>
          p.material.leaf?.cert.CertPEM.match(/-----BEGIN CERTIFICATE-----/g)?.length ?? 0;
        assert.equal(certs(db1Proxy), 1, "dc1's leaf is signed by the root itself");
        assert.equal(certs(db2Proxy), 2, "dc2's leaf comes with dc2's intermediate");
        await waitUntil("dc1's agent to list db in dc2 as passing", 20_000, async () => {
          const entries = await consulGet<HealthEntry[]>(
            dc1.url,
            "/v1/health/connect/db?dc=dc2&passing=1",
          );
          return entries.length === 1;
        });
        clock("sidecars ready", since);
      });

      await step(
        "(a) an upstream with Datacenter dc2 reaches dc2's db, which sees web from dc1",
        30_000,
        async () => {
          const since = Date.now();
          const mark = events.length;
          // The first connections may come before the upstream's chain and endpoints: retry.
          const line = await waitUntil("a greeting through the dc2 upstream", 20_000, async () => {
            const g = await greeting(upDc2);
            return g === "closed" ? undefined : g;
          });
          assert.equal(line, "db@dc2");
          assert.equal(await greeting(upLocal), "db@dc1");
          const out = seen("web", mark).filter((e) => e.type === "accepted");
          assert.ok(
            out.some((e) => e.type === "accepted" && e.target === "db.default.default.dc2"),
            `web's outbound connection should name the dc2 target: ${JSON.stringify(out)}`,
          );
          const inbound = seen("db2", mark).find((e) => e.type === "accepted");
          assert.equal(
            inbound?.type === "accepted" ? inbound.peer : "",
            `spiffe://${trustDomain}/ns/default/dc/dc1/svc/web`,
          );
          clock("(a) first greeting from dc2", since);
        },
      );

      await step(
        "(b) service-resolver failover: dc1 critical → dc2, healthy → dc1 again",
        60_000,
        async () => {
          await new OperatorClient(a1).putConfigEntry({
            Kind: "service-resolver",
            Name: "db",
            Failover: { "*": { Datacenters: ["dc2"] } },
          });
          const upstream = webProxy.upstreams.find((u) => !u.upstream.datacenter);
          assert.ok(upstream?.resolver, "web's local db upstream");
          await waitUntil(
            "web's db chain to list the dc2 failover target",
            20_000,
            () =>
              upstream.resolver!.routes.some((r) =>
                r.targets.includes("db.default.default.dc2") &&
                r.targets[0] === "db.default.default.dc1"
              ) && upstream.resolver!.targets.get("db.default.default.dc2")?.isKnown === true,
          );
          assert.equal(await greeting(upLocal), "db@dc1");
          const open = await openLong(upLocal);
          assert.equal(open.greeting, "db@dc1");

          let since = Date.now();
          await a1.setCheck("db-1-ttl", "fail", { note: "test: dc1's db is down" });
          await waitUntil(
            "new connections to fail over to dc2",
            20_000,
            async () => (await greeting(upLocal)) === "db@dc2",
          );
          clock("(b) failover dc1 → dc2", since);
          const last = events.findLast((e) => e.proxy === "web" && e.event.type === "accepted");
          assert.equal(
            last?.event.type === "accepted" ? last.event.target : "",
            "db.default.default.dc2",
            "the failover connection went to the dc2 target (and proved dc2's identity)",
          );
          for (let i = 0; i < 3; i++) {
            assert.equal(await greeting(upLocal), "db@dc2");
          }
          // A connection already open to dc1 is not cut by the health change (Envoy does the same):
          // the app behind it still answers.
          await open.echo("still here;");

          since = Date.now();
          await a1.setCheck("db-1-ttl", "pass");
          await waitUntil(
            "new connections to come back to dc1",
            20_000,
            async () => (await greeting(upLocal)) === "db@dc1",
          );
          clock("(b) failback dc2 → dc1", since);
          for (let i = 0; i < 3; i++) {
            assert.equal(await greeting(upLocal), "db@dc1");
          }
          open.destroy();
        },
      );

      await step(
        "(c) an instance in dc2 that proves dc1's identity is refused",
        60_000,
        async () => {
          // An impostor: registered in dc2's catalog as a db proxy, but its address is dc1's db
          // sidecar, whose certificate says dc/dc1. A proxy that checked the datacenter of the
          // health answer (the node's: dc2) or none at all would reach dc1's app.
          const since = Date.now();
          await a2.register({
            Kind: "connect-proxy",
            ID: "db-impostor",
            Name: "db-sidecar-proxy",
            Address: "127.0.0.1",
            Port: db1Public,
            Proxy: { DestinationServiceName: "db", DestinationServiceID: "db-2" },
            Check: { CheckID: "db-impostor-ttl", TTL: "10m", Status: "passing" },
          });
          try {
            const dc2Upstream = webProxy.upstreams.find((u) => u.upstream.datacenter === "dc2");
            const dc2Target = () => dc2Upstream?.resolver?.targets.get("db.default.default.dc2");
            // Both healthy: round robin tries each, and every connection reaches dc2's own db,
            // never dc1's through the impostor (which is refused, then tried last).
            await waitUntil(
              "web to see both dc2 instances",
              20_000,
              () => (dc2Target()?.endpoints.length ?? 0) === 2,
            );
            clock("(c) impostor listed", since);
            let mark = events.length;
            const lines = [];
            for (let i = 0; i < 6; i++) lines.push(await greeting(upDc2));
            assert.deepEqual(lines, Array(6).fill("db@dc2"));
            const tried = seen("web", mark).filter((e) => e.type === "dial_failed");
            assert.ok(tried.length >= 1, "round robin tried the impostor and refused it");
            assert.match(tried[0]?.type === "dial_failed" ? tried[0].error : "", /bad_identity/);
            clock("(c) six connections", since);

            // Only the impostor healthy in dc2: the connection is refused for its identity.
            await a2.setCheck("db-2-ttl", "fail");
            await waitUntil("web to see only the impostor in dc2", 20_000, () => {
              const eps = dc2Target()?.endpoints ?? [];
              return eps.length === 1 && eps[0]!.port === db1Public;
            });
            clock("(c) only the impostor", since);
            mark = events.length;
            assert.equal(await greeting(upDc2), "closed");
            const refused = seen("web", mark).find((e) => e.type === "refused");
            assert.equal(refused?.type === "refused" ? refused.refusal.reason : "", "bad_identity");
            const failed = seen("web", mark).find((e) => e.type === "dial_failed");
            assert.match(
              failed?.type === "dial_failed" ? failed.error : "",
              /got spiffe:\/\/[^ ]+\/dc\/dc1\/svc\/db, want service db in dc2/,
              "the dial error should name the identity it got and the one it wanted",
            );
          } finally {
            // Whatever happened, leave dc2 as the next step expects it.
            await a2.setCheck("db-2-ttl", "pass");
            await a2.deregister("db-impostor");
            await waitUntil("web to see dc2's own db only", 20_000, () => {
              const eps = webProxy.upstreams.find((u) => u.upstream.datacenter === "dc2")
                ?.resolver?.targets.get("db.default.default.dc2")?.endpoints ?? [];
              return eps.length === 1 && eps[0]!.port === db2Public;
            });
            clock("(c) cleaned up", since);
          }
        },
      );

      await step(
        "(d) an intention written in dc1 (the primary) is enforced by dc2's sidecar",
        45_000,
        async () => {
          const open = await openLong(upDc2);
          const since = Date.now();
          const mark = events.length;
          await new OperatorClient(a1).putConfigEntry({
            Kind: "service-intentions",
            Name: "db",
            Sources: [{ Name: "web", Action: "deny" }],
          });
          // A connection authorized just before the change is revoked right after it, so the
          // first "closed" may be a revocation: wait for a refusal of a new connection.
          const deniedAtDb2 = () =>
            seen("db2", mark).some((e) => e.type === "refused" && e.refusal.reason === "denied");
          await waitUntil(
            "dc2's sidecar to refuse new connections of web from dc1 (denied)",
            30_000,
            async () => (await greeting(upDc2)) === "closed" && deniedAtDb2(),
          );
          clock("(d) deny replicated to dc2 and enforced", since);
          // The open connection was re-checked and closed (meshgate's revoke on intention change).
          await waitUntil("the open connection to dc2 to be revoked", 15_000, () => open.isClosed);
          assert.ok(
            seen("db2", mark).some((e) =>
              e.type === "revoked" && e.peer.endsWith("/dc/dc1/svc/web")
            ),
            "dc2's sidecar revoked web's open connection",
          );
          // Undoing the deny is not asserted: an agent (1.22.7; dc2's, and dc1's too once it
          // was asked during the deny) may keep answering authorize with the old DENY for
          // 100 s and more after the entry is deleted or changed to allow, while the entry and
          // /v1/connect/intentions/match already say otherwise. meshgate's own intention list
          // can only deny, never allow, so it waits for the agent. Measured, for the report.
          const undoneAt = Date.now();
          await new OperatorClient(a1).putConfigEntry({
            Kind: "service-intentions",
            Name: "db",
            Sources: [{ Name: "web", Action: "allow" }],
          });
          const td = trustDomain;
          const authorize = async (agent: AgentClient) =>
            (await agent.authorize({
              Target: "db",
              ClientCertURI: `spiffe://${td}/ns/default/dc/dc1/svc/web`,
              ClientCertSerial: "01",
            })).Authorized;
          let outcome = "still denied by dc2's agent after 10 s";
          for (let i = 0; i < 50; i++) {
            if (await authorize(a2)) {
              outcome = `dc2's agent allows after ${Date.now() - undoneAt} ms`;
              break;
            }
            await new Promise((r) => setTimeout(r, 200));
          }
          timings["(d) allow after the deny"] = `${outcome}; dc1's agent allows: ${await authorize(
            a1,
          )}; dc2's intentions/match: ${
            JSON.stringify(
              (await a2.intentionMatch("destination", "db")).value.map((i) => i.Action),
            )
          }`;
          open.destroy();
        },
      );
    } finally {
      await within(45_000, "shutting down", async () => {
        await Promise.allSettled(proxies.map((p) => p.close()));
        await Promise.allSettled(clients.map((c) => c.close()));
        await Promise.allSettled(apps.map((a) => a.close()));
        await Promise.allSettled(agents.map((a) => a.stop()));
      });
      clock("total", started);
      console.log(`multi-dc timings (ms): ${JSON.stringify(timings)}`);
      const dump = Deno.env.get("MESHGATE_TEST_PROXY_LOG");
      if (dump) await Deno.writeTextFile(dump, proxyLog.join("\n"));
    }
  },
});
