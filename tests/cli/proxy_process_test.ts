// The `proxy` command as an operator runs it: a separate process, stopped with SIGTERM.
import assert from "node:assert/strict";
import {
  clientFor,
  devAgent,
  eventually,
  freePort,
  meshClient,
  nth,
  registerEchoDb,
  spawnLogged,
} from "../_helpers.ts";
import { echoServer, roundTrip, tcpClient } from "../e2e/_net.ts";

const MAIN = new URL("../../src/cli/main.ts", import.meta.url).pathname;

const spawnProxy = (args: string[]) => spawnLogged(Deno.execPath(), ["run", "-A", MAIN, ...args]);

Deno.test({
  name: "cli: `proxy -sidecar-for` serves mTLS, logs one line per event, exits 0 on SIGTERM",
  sanitizeResources: false,
  async fn() {
    await using dev = await devAgent();
    const agent = clientFor(dev);
    const { app, port } = await registerEchoDb(agent);
    const p = spawnProxy([
      "-sidecar-for",
      "db-1",
      "--http-addr",
      dev.address,
      "-log-json",
      "-admin-bind",
      "",
    ]);
    await eventually(
      () => p.logs().includes('"proxy ready"'),
      20_000,
      "the proxy to be ready",
    );
    const c = await meshClient(agent, port);
    assert.equal(new TextDecoder().decode(await roundTrip(c, "cli")), "cli");
    p.child.kill("SIGTERM");
    const code = await p.exited();
    assert.equal(code, 0);
    const lines = p.logs().trim().split("\n").map((l) => JSON.parse(l));
    assert.ok(lines.some((l) => l["@message"] === "leaf certificate loaded"));
    assert.ok(lines.some((l) => l["@message"] === "proxy stopped"));
    assert.ok(!lines.some((l) => l["@message"] === "admin listening"), "-admin-bind '' disables");
    assert.ok(!p.logs().includes("PRIVATE KEY"), "never a key in the logs");
    await app.close();
    await agent.close();
  },
});

Deno.test({
  name:
    "cli: `proxy -service … -register` registers, serves the admin app, drains on POST /v1/drain",
  sanitizeResources: false,
  async fn() {
    await using dev = await devAgent();
    const agent = clientFor(dev);
    const app = await echoServer();
    const port = freePort();
    const p = spawnProxy([
      "-service",
      "db",
      "-listen",
      `127.0.0.1:${port}`,
      "-service-addr",
      `127.0.0.1:${app.port}`,
      "-register",
      "-register-id",
      "t1",
      "-http-addr",
      dev.address,
      "-admin-bind",
      "127.0.0.1:0",
      "-log-json",
    ]);
    await eventually(() => dev.catalog.get("db-proxy-t1") !== undefined, 20_000, "registration");
    const svc = dev.catalog.get("db-proxy-t1")!;
    assert.equal(svc.Kind, "connect-proxy");
    assert.equal(svc.Port, port);
    assert.equal(svc.Proxy?.DestinationServiceName, "db");
    const check = nth(dev.catalog.checksOf("db-proxy-t1"), 0, "the proxy's check");
    assert.equal(check.CheckID, "db-proxy-t1-ttl");
    assert.equal(check.Status, "passing");
    await eventually(() => p.logs().includes("admin listening"), 20_000);
    const url = p.logs().split("\n").filter((l) => l.includes("admin listening"))
      .map((l) => JSON.parse(l).url)[0] as string;
    await eventually(
      async () =>
        (await fetch(`${url}ready`).then((r) =>
          r.body?.cancel()
            .then(() => r.status)
        )) === 200,
      20_000,
      "/ready to say 200",
    );
    const metrics = await (await fetch(`${url}metrics`)).text();
    assert.match(metrics, /^meshgate_ready 1$/m);
    const drain = await fetch(`${url}v1/drain`, {
      method: "POST",
      headers: { "X-Meshgate-Drain": "1" },
    });
    assert.equal(drain.status, 202);
    await drain.body?.cancel();
    assert.equal(await p.exited(), 0, "exits 0 after the drain");
    assert.equal(dev.catalog.get("db-proxy-t1"), undefined, "deregistered on shutdown");
    await app.close();
    await agent.close();
  },
});

/** A plain listener holding a loopback port, as another sidecar would. */
async function squat(): Promise<{ port: number; close: () => Promise<void> }> {
  const { default: net } = await import("node:net");
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as { port: number }).port,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

const STACK_LINE = /^\s+at /m;

Deno.test({
  name: "cli: an admin address in use (two sidecars, default flags) is one warning; the proxy runs",
  sanitizeResources: false,
  async fn() {
    await using dev = await devAgent();
    const agent = clientFor(dev);
    const { app, port } = await registerEchoDb(agent);
    const other = await squat(); // the first sidecar's admin app
    const p = spawnProxy([
      "-sidecar-for",
      "db-1",
      "-http-addr",
      dev.address,
      "-admin-bind",
      `127.0.0.1:${other.port}`,
      "-log-json",
    ]);
    try {
      await eventually(() => p.logs().includes('"proxy ready"'), 20_000, "the proxy to be ready");
      const c = await meshClient(agent, port);
      assert.equal(new TextDecoder().decode(await roundTrip(c, "served")), "served");
    } finally {
      p.child.kill("SIGTERM");
    }
    assert.equal(await p.exited(), 0);
    const lines = p.logs().trim().split("\n").map((l) => JSON.parse(l));
    const warning = lines.filter((l) => /admin app/.test(l["@message"]));
    assert.equal(warning.length, 1, p.logs());
    assert.equal(warning[0]["@level"], "warn");
    assert.equal(
      warning[0].error,
      `cannot serve the admin app on 127.0.0.1:${other.port}: address already in use`,
    );
    assert.doesNotMatch(p.logs(), STACK_LINE);
    await other.close();
    await app.close();
    await agent.close();
  },
});

Deno.test({
  name:
    "cli: -proxy-id not registered yet — the admin app comes up and /ready says why; then it starts",
  sanitizeResources: false,
  async fn() {
    await using dev = await devAgent();
    const agent = clientFor(dev);
    const app = await echoServer();
    const p = spawnProxy([
      "-proxy-id",
      "db-proxy",
      "-http-addr",
      dev.address,
      "-admin-bind",
      "127.0.0.1:0",
      "-log-json",
    ]);
    try {
      await eventually(() => p.logs().includes("admin listening"), 20_000, "the admin app");
      const url = p.logs().split("\n").filter((l) => l.includes("admin listening"))
        .map((l) => JSON.parse(l).url)[0] as string;
      const ready = async () => {
        const res = await fetch(`${url}ready`);
        return { status: res.status, problems: (await res.json()).problems as string[] };
      };
      await eventually(
        async () =>
          (await ready()).problems.some((m) =>
            m.startsWith("registration: /v1/agent/service/db-proxy: HTTP 404")
          ),
        10_000,
        "/ready to name the missing registration",
      );
      await agent.register({
        Kind: "connect-proxy",
        ID: "db-proxy",
        Name: "db-proxy",
        Port: freePort(),
        Proxy: { DestinationServiceName: "db", LocalServicePort: app.port },
      });
      await eventually(async () => (await ready()).status === 200, 20_000, "/ready 200");
    } finally {
      p.child.kill("SIGTERM");
    }
    assert.equal(await p.exited(), 0);
    assert.doesNotMatch(p.logs(), STACK_LINE);
    await app.close();
    await agent.close();
  },
});

Deno.test({
  name: "cli: expected failures are one line and an exit code, never a stack trace",
  sanitizeResources: false,
  async fn() {
    await using dev = await devAgent();
    const busy = await squat();
    const closed = freePort();
    const cases: [string, string[], number, RegExp][] = [
      [
        "public port in use",
        ["-service", "db", "-listen", `127.0.0.1:${busy.port}`, "-service-addr", ":1"],
        1,
        new RegExp(`cannot bind 127\\.0\\.0\\.1:${busy.port}: address already in use`),
      ],
      [
        "agent unreachable",
        ["-sidecar-for", "db-1", "-http-addr", `127.0.0.1:${closed}`],
        1,
        /cannot start proxy.*agent unreachable/,
      ],
      ["bad agent address", ["-sidecar-for", "db-1", "-http-addr", "ftp://x"], 2, /-http-addr/],
      [
        "bad flag value",
        ["-sidecar-for", "db-1", "-authorize-timeout", ""],
        2,
        /-authorize-timeout/,
      ],
    ];
    for (const [what, args, code, message] of cases) {
      const http = args.includes("-http-addr") ? [] : ["-http-addr", dev.address];
      const p = spawnProxy([...args, ...http, "-admin-bind", ""]);
      assert.equal(await p.exited(), code, `${what}: ${p.logs()}`);
      assert.match(p.logs(), message, what);
      assert.doesNotMatch(p.logs(), STACK_LINE, what);
      if (code === 1) {
        const errors = p.logs().split("\n").filter((l) => /error/i.test(l));
        assert.equal(errors.length, 1, `${what}: one error line: ${p.logs()}`);
      }
    }
    await busy.close();
  },
});

Deno.test({
  name:
    "cli: `proxy -outbound-tls native` serves its upstream natively: bytes, metrics, exit 0 on SIGTERM",
  sanitizeResources: false,
  async fn() {
    await using dev = await devAgent();
    const agent = clientFor(dev);
    const { app } = await registerEchoDb(agent);
    const { startProxy } = await import("../../src/proxy/proxy.ts");
    await using db = await startProxy({ agent, sidecarFor: "db-1" });
    await db.ready;
    await eventually(async () =>
      (await agent.healthConnect("db", { passing: true })).value.length === 1
    );
    const upstreamPort = freePort();
    const p = spawnProxy([
      "-service",
      "web",
      "-upstream",
      `db:${upstreamPort}`,
      "-outbound-tls",
      "native",
      "-http-addr",
      dev.address,
      "-admin-bind",
      "127.0.0.1:0",
      "-log-json",
      "-log-level",
      "debug",
    ]);
    await eventually(() => p.logs().includes('"proxy ready"'), 20_000, "the proxy to be ready");
    const started = p.logs().split("\n").find((l) => l.includes("upstream listener started"));
    assert.match(started ?? "", /"outboundTls":"native"/);
    await eventually(
      async () => {
        try {
          const c = await tcpClient(upstreamPort);
          return new TextDecoder().decode(await roundTrip(c, "native cli")) === "native cli";
        } catch {
          return false;
        }
      },
      20_000,
      "an echo through the native upstream",
    );
    assert.ok(!p.logs().includes("falls back to node:tls"), "dialled natively");
    const url = p.logs().split("\n").filter((l) => l.includes("admin listening"))
      .map((l) => JSON.parse(l).url)[0] as string;
    await eventually(
      async () => {
        const metrics = await (await fetch(`${url}metrics`)).text();
        return /^meshgate_sent_bytes_total\{[^}]*upstream:db[^}]*\} 10$/m.test(metrics);
      },
      10_000,
      "the bytes counted for upstream:db",
    );
    p.child.kill("SIGTERM");
    assert.equal(await p.exited(), 0);
    await app.close();
    await agent.close();
  },
});
