// Whole paths through sidecars on the test double: a pair over mTLS with intentions, failover to
// the resolver's target, the drain on shutdown. What proxy.ts decides alone (the configuration
// diff, modes, -sidecar-for): tests/proxy/proxy_test.ts.
import assert from "node:assert/strict";
import net from "node:net";
import { OperatorClient } from "../../src/agent/operator.ts";
import { startProxy } from "../../src/proxy/proxy.ts";
import { eventually, freePort, nth } from "../_helpers.ts";
import { mesh } from "./_mesh.ts";
import { echoServer, outcome, roundTrip, tcpClient } from "./_net.ts";

Deno.test("proxy pair: web's upstream reaches db over mTLS; deny refuses; allow again works", async () => {
  await using m = await mesh();
  const c1 = await tcpClient(m.upstreamPort);
  assert.equal(new TextDecoder().decode(await roundTrip(c1, "ping")), "ping");
  await new OperatorClient(m.agent).upsertIntention("web", "db", { Action: "deny" });
  assert.equal(await outcome(await tcpClient(m.upstreamPort), "ping"), "closed");
  await eventually(() =>
    m.events.some((e) => e.type === "refused" && e.refusal.reason === "denied")
  );
  await new OperatorClient(m.agent).upsertIntention("web", "db", { Action: "allow" });
  const c3 = await tcpClient(m.upstreamPort);
  assert.equal(new TextDecoder().decode(await roundTrip(c3, "again")), "again");
});

Deno.test("proxy: an unreachable endpoint fails over to the resolver's failover target", async () => {
  await using m = await mesh();
  // A second destination, db-backup, served by the same db proxy's identity would not verify;
  // register a real one: its own sidecar proxy in front of its own echo server.
  const backup = await echoServer();
  const backupPublic = freePort();
  await m.agent.register({
    ID: "db-backup-1",
    Name: "db-backup",
    Port: backup.port,
    Connect: { SidecarService: { Port: backupPublic } },
  });
  await using backupProxy = await startProxy({ agent: m.agent, sidecarFor: "db-backup-1" });
  await backupProxy.ready;
  await eventually(async () =>
    (await m.agent.healthConnect("db-backup", { passing: true })).value.length === 1
  );
  await new OperatorClient(m.agent).putConfigEntry({
    Kind: "service-resolver",
    Name: "db",
    ConnectTimeout: "1s",
    Failover: { "*": { Service: "db-backup" } },
  });
  await eventually(() => {
    const r = nth(m.webProxy.upstreams, 0, "web's upstream").resolver!;
    return r.targets.has("db-backup.default.default.dc1") &&
      (r.targets.get("db-backup.default.default.dc1")?.endpoints.length ?? 0) > 0;
  });
  // db's proxy goes away; its registration (and health entry) stays for a moment.
  await m.dbProxy.close();
  const c = await tcpClient(m.upstreamPort);
  assert.equal(new TextDecoder().decode(await roundTrip(c, "failover")), "failover");
  assert.equal(backup.connections(), 1);
  await backup.close();
});

Deno.test("proxy: shutdown drains open connections until the deadline", async () => {
  await using m = await mesh();
  const c = await tcpClient(m.upstreamPort);
  const got: string[] = [];
  c.on("data", (d) => got.push(d.toString()));
  c.write("a");
  await eventually(() => got.join("") === "a");
  let clientClosed = false;
  c.on("end", () => (clientClosed = true)); // the proxy closed its side
  c.on("error", () => {});
  const closing = m.webProxy.close(300);
  c.write("b");
  await eventually(() => got.join("") === "ab", 2000, "traffic during the drain");
  await closing;
  await eventually(() => clientClosed, 2000, "the drained connection to close");
  assert.equal(m.webProxy.phase, "stopped");
  await assert.rejects(
    new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect({ host: "127.0.0.1", port: m.upstreamPort }, () => resolve(s));
      s.once("error", reject);
    }),
  );
});
