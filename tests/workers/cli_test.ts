// `proxy -workers 2` as an operator runs it: one process, two threads on the sidecar's port,
// one admin app whose metrics and access log count the connections of both.
import assert from "node:assert/strict";
import { AgentClient } from "../../src/agent/client.ts";
import { devAgent, eventually, freePort, meshClient, spawnLogged } from "../_helpers.ts";
import { echoServer, roundTrip } from "../e2e/_net.ts";

const MAIN = new URL("../../src/cli/main.ts", import.meta.url).pathname;
/**
 * Ports shared by threads must be known before any of them binds (port 0 cannot be shared), so
 * each is picked free when the file loads — never a fixed number inside the kernel's ephemeral
 * range, which any test's outgoing connection may hold.
 */
const DB_PUBLIC = freePort();
const ADMIN = freePort();

Deno.test({
  name: "cli: -workers 2 serves from two threads; metrics and the access log count both",
  sanitizeResources: false,
  async fn() {
    await using dev = await devAgent();
    const agent = new AgentClient({ address: dev.address });
    const app = await echoServer();
    await agent.register({
      ID: "db-1",
      Name: "db",
      Port: app.port,
      Connect: { SidecarService: { Port: DB_PUBLIC } },
    });
    const dir = await Deno.makeTempDir({ prefix: "meshgate-workers-" });
    const accessLog = `${dir}/access.log`;
    const p = spawnLogged(Deno.execPath(), [
      "run",
      "-A",
      MAIN,
      "-sidecar-for",
      "db-1",
      "-http-addr",
      dev.address,
      "-workers",
      "2",
      "-admin-bind",
      `127.0.0.1:${ADMIN}`,
      "-access-log",
      accessLog,
      "-log-json",
    ]);
    await eventually(
      () => p.logs().includes('"proxy ready"') && p.logs().includes('"worker ready"'),
      60_000,
      "both threads ready",
    ).catch((err) => {
      throw new Error(`${err.message}; the proxy said:\n${p.logs().slice(-4000)}`);
    });
    await eventually(async () => (await fetch(`http://127.0.0.1:${ADMIN}/ready`)).ok, 10_000);
    const n = 40;
    for (let i = 0; i < n; i++) {
      const c = await meshClient(agent, DB_PUBLIC);
      assert.equal(new TextDecoder().decode(await roundTrip(c, `hello ${i}`)), `hello ${i}`);
    }
    const lines = async () =>
      (await Deno.readTextFile(accessLog)).trim().split("\n").filter(Boolean).map((l) =>
        JSON.parse(l)
      );
    await eventually(async () => (await lines()).length === n, 10_000, "every access-log line");
    const byThread = new Set((await lines()).map((l) => l.worker ?? 0));
    assert.deepEqual([...byThread].sort(), [0, 1], "both threads served");
    const metrics = await (await fetch(`http://127.0.0.1:${ADMIN}/metrics`)).text();
    const accepted = metrics.split("\n").find((l) =>
      l.startsWith("meshgate_connections_accepted_total{") && l.includes('"inbound"')
    );
    assert.equal(Number(accepted?.split(" ").at(-1)), n, accepted);
    p.child.kill("SIGTERM");
    assert.equal(await p.exited(), 0);
    const logged = p.logs().trim().split("\n").map((l) => JSON.parse(l));
    assert.ok(logged.some((l) => l["@message"] === "proxy stopped" && l.worker === 1));
    assert.ok(logged.some((l) => l["@message"] === "proxy stopped" && l.worker === undefined));
    await app.close();
    await agent.close();
    await Deno.remove(dir, { recursive: true });
  },
});

Deno.test("cli: -workers 0 or x exits 2 naming the flag", async () => {
  for (const bad of ["0", "x"]) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", MAIN, "-sidecar-for", "web-1", "-workers", bad],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 2);
    assert.match(
      new TextDecoder().decode(out.stderr),
      new RegExp(`meshgate: -workers: "${bad}" must be a whole number from 1 to 1024, or auto`),
    );
  }
});
