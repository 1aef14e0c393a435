// A real server cluster (issue #15 point 6): three Consul servers (-bootstrap-expect=3, Raft on
// disk) and a client agent with web and db defined in its configuration, as an operator does;
// meshgate sidecars for both point at the client agent. The leader is SIGKILLed: open
// connections keep flowing, new ones keep being authorized, and after the election intentions,
// a new upstream and a CA rotation still reach the proxies. Then the client agent itself is
// SIGKILLed and started again on the same data dir: the sidecars recover by themselves.
import assert from "node:assert/strict";
import { AgentClient } from "../../src/agent/client.ts";
import { OperatorClient } from "../../src/agent/operator.ts";
import type { ProxyEvent } from "../../src/events/lifecycle.ts";
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
if (!binary) announceSkip("tests/integration/cluster_test.ts");

/** This suite's own ports (the helper's range is 21200-21499; multi_dc_test.ts takes 21200-21329). */
const RANGE = { from: 21330, to: 21499 };

const agentPorts = (): ConsulPorts => reserveAgentPorts(RANGE);

/** What a stream of new connections got while something happened. */
interface Probe {
  stop(): Promise<{ ok: number; refused: number; errors: number; outcomes: string[] }>;
}

/** Opens a new connection through `port` every `everyMs` and records each greeting. */
function probe(port: number, expected: string, everyMs = 150): Probe {
  const outcomes: string[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const at = Date.now();
      try {
        outcomes.push(await greeting(port, 5000));
      } catch (err) {
        outcomes.push(`error: ${(err as Error).message}`);
      }
      await new Promise((r) => setTimeout(r, Math.max(0, everyMs - (Date.now() - at))));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return {
        ok: outcomes.filter((o) => o === expected).length,
        refused: outcomes.filter((o) => o === "closed").length,
        errors: outcomes.filter((o) => o !== expected && o !== "closed").length,
        outcomes,
      };
    },
  };
}

Deno.test({
  name: "cluster: leader killed and client agent restarted; sidecars keep serving and recover",
  ignore: !binary,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const timings: Record<string, number | string> = {};
    const clock = (name: string, since: number) => (timings[name] = Date.now() - since);
    const started = Date.now();
    const servers: ConsulAgent[] = [];
    const agents: ConsulAgent[] = [];
    const proxies: Proxy[] = [];
    const clients: AgentClient[] = [];
    const apps: { close(): Promise<void> }[] = [];
    const events: { proxy: string; event: ProxyEvent }[] = [];
    const unsubscribe: (() => void)[] = [];
    const tail = () =>
      agents.map((a) => `--- ${a.node} log:\n${a.logs().slice(-2000)}`).join("\n") +
      `\n--- proxy problems: ${JSON.stringify(proxies.map((p) => p.problems))}`;
    const step = (name: string, ms: number, fn: () => Promise<void>) =>
      t.step(name, () => within(ms, name, fn, tail));
    try {
      // Three servers on disk, joined through each other's LAN gossip, Raft timing as in
      // production with raft_multiplier 1 (Consul's recommendation for production servers).
      const serverPorts = [agentPorts(), agentPorts(), agentPorts()];
      const lan = serverPorts.map((p) => `127.0.0.1:${p.serfLan}`);
      const serverHcl = [`connect { enabled = true }`, `performance { raft_multiplier = 1 }`];
      const since = Date.now();
      for (const [i, ports] of serverPorts.entries()) {
        const s = await startConsulAgent({
          node: `server-${i + 1}`,
          server: true,
          bootstrapExpect: 3,
          ports,
          retryJoin: lan,
          hcl: serverHcl,
        });
        servers.push(s);
        agents.push(s);
      }

      // The client agent: web and db (with their sidecars) in its configuration.
      const dbApp = await startGreeter("db");
      const webApp = await startGreeter("web");
      apps.push(dbApp, webApp);
      const [dbPublic, webPublic, upDb, upCache, cachePublic] = reservePorts(5, RANGE) as [
        number,
        number,
        number,
        number,
        number,
      ];
      const services = `services = [
        {
          id = "db-1", name = "db", address = "127.0.0.1", port = ${dbApp.port}
          connect { sidecar_service {
            port = ${dbPublic}, address = "127.0.0.1"
            checks = [{ name = "db (alias)", alias_service = "db-1" }]
          } }
        },
        {
          id = "web-1", name = "web", address = "127.0.0.1", port = ${webApp.port}
          connect { sidecar_service {
            port = ${webPublic}, address = "127.0.0.1"
            checks = [{ name = "web (alias)", alias_service = "web-1" }]
            proxy { upstreams = [{ destination_name = "db", local_bind_port = ${upDb} }] }
          } }
        }
      ]`;
      const clientAgent = await startConsulAgent({
        node: "client-1",
        ports: agentPorts(),
        retryJoin: lan,
        hcl: [services],
      });
      agents.push(clientAgent);
      const agent = new AgentClient({
        address: clientAgent.address,
        watchDefaults: { minIntervalMs: 0, backoffBaseMs: 100, backoffMaxMs: 1000 },
      });
      clients.push(agent);

      let leader = "";
      await step(
        "three servers elect a leader; the CA is up; the client has joined",
        60_000,
        async () => {
          leader = await waitForLeader(clientAgent.url, 45_000, { detail: tail });
          await waitUntil(
            "the Connect CA roots through the client",
            30_000,
            async () => (await agent.roots()).value.Roots.length > 0,
            { detail: tail, intervalMs: 200 },
          );
          await waitUntil(
            "db's sidecar in the catalog as passing",
            30_000,
            async () =>
              (await consulGet<unknown[]>(clientAgent.url, "/v1/health/connect/db?passing=1"))
                .length === 1,
            { detail: tail, intervalMs: 200 },
          );
          clock("cluster up", since);
        },
      );

      const start = async (name: string, sidecarFor: string) => {
        const p = await startProxy({ agent, sidecarFor });
        unsubscribe.push(p.events.subscribe((event) => events.push({ proxy: name, event })));
        proxies.push(p);
        return p;
      };
      const dbProxy = await start("db", "db-1");
      const webProxy = await start("web", "web-1");
      const startedAt = proxies.map((p) => p.startedAt);
      const stillSame = () => {
        assert.deepEqual(proxies.map((p) => p.startedAt), startedAt);
        assert.ok(proxies.every((p) => p.phase === "ready"), "every proxy still ready");
      };

      await step("web → db through the sidecars", 30_000, async () => {
        await Promise.all(proxies.map((p) => p.ready));
        await waitUntil(
          "a first greeting through web's db upstream",
          20_000,
          async () => (await greeting(upDb)) === "db",
        );
      });

      await step(
        "the leader is SIGKILLed: open and new connections keep working",
        60_000,
        async () => {
          const long = await openLong(upDb);
          await long.echo("before;");
          const victim = servers.find((s) => `127.0.0.1:${s.ports.server}` === leader);
          assert.ok(victim, `the leader ${leader} is one of our servers`);
          const news = probe(upDb, "db");
          const killedAt = Date.now();
          await victim.kill("SIGKILL");
          const rest = servers.filter((s) => s !== victim);
          const newLeader = await waitForLeader(rest[0]!.url, 30_000, {
            not: leader,
            detail: tail,
          });
          clock("re-election", killedAt);
          timings["watch errors during the election"] = events.filter((e) =>
            e.event.at >= killedAt && e.event.type === "watch_error"
          ).length;
          timings["new leader"] = newLeader;
          await long.echo("during;");
          // Keep probing a little after the election, while the client's RPCs move over.
          await new Promise((r) => setTimeout(r, 2000));
          const got = await news.stop();
          timings["new connections during election"] = `${got.ok} ok, ${got.refused} refused, ` +
            `${got.errors} errors`;
          await long.echo("after;");
          // Authorize is answered by the client agent from its cache of intentions and roots:
          // losing the leader refuses nobody.
          assert.ok(got.ok > 5, `enough probes ran: ${JSON.stringify(got)}`);
          assert.equal(got.refused + got.errors, 0, `no new connection failed: ${got.outcomes}`);
          leader = newLeader;
          long.destroy();
          stillSame();
        },
      );

      await step(
        "after the election a new upstream reaches web's sidecar and works",
        45_000,
        async () => {
          const cacheApp = await startGreeter("cache");
          apps.push(cacheApp);
          const since = Date.now();
          await agent.register({
            ID: "cache-1",
            Name: "cache",
            Address: "127.0.0.1",
            Port: cacheApp.port,
            Connect: {
              SidecarService: {
                Port: cachePublic,
                Address: "127.0.0.1",
                Checks: [{ Name: "cache (alias)", AliasService: "cache-1" }],
              },
            },
          });
          const cacheProxy = await start("cache", "cache-1");
          startedAt.push(cacheProxy.startedAt);
          await cacheProxy.ready;
          // web's registration with one more upstream (what an operator's re-registration does).
          await agent.register({
            ID: "web-1",
            Name: "web",
            Address: "127.0.0.1",
            Port: webApp.port,
            Connect: {
              SidecarService: {
                Port: webPublic,
                Address: "127.0.0.1",
                Checks: [{ Name: "web (alias)", AliasService: "web-1" }],
                Proxy: {
                  Upstreams: [
                    { DestinationName: "db", LocalBindPort: upDb },
                    { DestinationName: "cache", LocalBindPort: upCache },
                  ],
                },
              },
            },
          });
          await waitUntil(
            "a greeting through web's new cache upstream",
            20_000,
            async () => (await greeting(upCache).catch(() => "")) === "cache",
          );
          clock("new upstream working", since);
          assert.equal(await greeting(upDb), "db");
          assert.deepEqual(
            proxies.map((p) => p.startedAt),
            startedAt,
          );
        },
      );

      await step("after the election an intention reaches the proxies", 45_000, async () => {
        // On cache, which nothing after this step needs: an agent's authorize can keep answering
        // a deny for a long while after the intention is deleted (see multi_dc_test.ts), so a
        // deny is never undone here.
        const long = await openLong(upCache);
        const since = Date.now();
        const mark = events.length;
        await new OperatorClient(agent).putConfigEntry({
          Kind: "service-intentions",
          Name: "cache",
          Sources: [{ Name: "web", Action: "deny" }],
        });
        await waitUntil(
          "cache's sidecar to refuse web (denied)",
          20_000,
          async () =>
            (await greeting(upCache)) === "closed" &&
            events.some((e, i) =>
              i >= mark && e.proxy === "cache" && e.event.type === "refused" &&
              e.event.refusal.reason === "denied"
            ),
        );
        clock("deny enforced after election", since);
        await waitUntil("the open connection to be revoked", 15_000, () => long.isClosed);
        assert.equal(await greeting(upDb), "db", "web → db is untouched");
        stillSame();
      });

      await step("after the election a CA rotation renews the leaves", 75_000, async () => {
        const before = (await agent.roots()).value.ActiveRootID;
        const serial = webProxy.material.leaf?.info.serial;
        const since = Date.now();
        const cfg = await new OperatorClient(agent).caConfiguration();
        await new OperatorClient(agent).setCAConfiguration({
          Provider: "consul",
          Config: { ...cfg.Config, PrivateKeyType: "ec", PrivateKeyBits: 384 },
        });
        await waitUntil(
          "the proxies to see the new root",
          20_000,
          () => proxies.every((p) => p.material.roots?.roots.ActiveRootID !== before),
        );
        clock("new root at the proxies", since);
        // The agent re-issues leaves after a root change within a 30 s jitter window.
        const active = (await agent.roots()).value.Roots.find((r) => r.Active)!;
        await waitUntil(
          "a leaf from the new root at web and db",
          45_000,
          () =>
            [webProxy, dbProxy].every((p) =>
              p.material.leaf?.info.authorityKeyId === active.SigningKeyID
            ),
          { intervalMs: 250 },
        );
        clock("leaves renewed after rotation", since);
        assert.notEqual(webProxy.material.leaf?.info.serial, serial);
        assert.equal(await greeting(upDb), "db");
        assert.deepEqual(proxies.map((p) => p.startedAt), startedAt);
      });

      for (const signal of ["SIGKILL", "SIGTERM"] as const) {
        await step(
          `the client agent is stopped (${signal}) and started again: the sidecars recover`,
          60_000,
          async () => {
            const long = await openLong(upDb);
            await long.echo("before;");
            const mark = events.length;
            const killedAt = Date.now();
            // SIGTERM: a client leaves the cluster gracefully (leave_on_terminate), SIGKILL: a
            // crash. Either way the data dir stays and its configuration names web and db.
            await clientAgent.kill(signal);
            clock(`client agent exit after ${signal}`, killedAt);
            const news = probe(upDb, "db");
            // While the agent is away: data keeps flowing on open connections (proxy to proxy).
            await long.echo("agent down;");
            await new Promise((r) => setTimeout(r, 1500));
            const down = await news.stop();
            timings[`new connections while the client agent is down (${signal})`] =
              `${down.ok} ok, ${down.refused} refused, ${down.errors} errors`;
            // Nothing can authorize a new inbound connection now: refused (fail closed), never
            // let through.
            assert.equal(
              down.ok,
              0,
              `no new connection authorized without the agent: ${down.outcomes}`,
            );
            const restartedAt = Date.now();
            await clientAgent.start();
            await waitUntil(
              "web → db through the sidecars again",
              30_000,
              async () => (await greeting(upDb)) === "db",
              { detail: tail, intervalMs: 200 },
            );
            clock(`recovery after client agent restart (${signal})`, restartedAt);
            clock(`outage, stop to first new connection (${signal})`, killedAt);
            await long.echo("after;");
            const watchErrors = events.filter((e, i) =>
              i >= mark && e.event.type === "watch_error"
            );
            assert.ok(watchErrors.length > 0, "the proxies noticed the agent was gone");
            assert.deepEqual(proxies.map((p) => p.startedAt), startedAt);
            assert.ok(proxies.every((p) => p.phase === "ready"));
            await waitUntil(
              "every sidecar without problems",
              20_000,
              () => proxies.every((p) => p.problems.length === 0),
              { detail: tail },
            );
            // What the agent restored: its configuration (web with the db upstream only) or
            // what was registered over HTTP before (web with db and cache, and cache itself).
            const registered = await agent.services();
            const agentSays = registered["web-1-sidecar-proxy"]?.Proxy?.Upstreams?.map((u) =>
              u.DestinationName
            ).join(",");
            const converged = Date.now();
            const upstreamsAtProxy = () => webProxy.config?.upstreams.map((u) => u.name).join(",");
            await waitUntil(
              `web's sidecar to take the agent's registration (upstreams ${agentSays})`,
              20_000,
              () => upstreamsAtProxy() === agentSays,
              { detail: () => `the proxy has ${upstreamsAtProxy()}\n${tail()}` },
            );
            clock(`proxy config matches the restored registration (${signal})`, converged);
            timings[`after restart (${signal})`] = `services ${
              Object.keys(registered).sort().join(",")
            }; web upstreams at the agent ${agentSays}, at the proxy ${
              webProxy.config?.upstreams.map((u) => u.name).join(",")
            }`;
            long.destroy();
          },
        );
      }
    } finally {
      for (const u of unsubscribe) u();
      await within(45_000, "shutting down", async () => {
        await Promise.allSettled(proxies.map((p) => p.close()));
        await Promise.allSettled(clients.map((c) => c.close()));
        await Promise.allSettled(apps.map((a) => a.close()));
        await Promise.allSettled(agents.map((a) => a.stop()));
      });
      clock("total", started);
      console.log(`cluster timings (ms): ${JSON.stringify(timings)}`);
    }
  },
});
