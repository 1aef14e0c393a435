// Interoperability with a proxy we did not write: Consul's built-in `consul connect proxy`,
// against a real agent. (a) client → consul proxy (upstream) → meshgate inbound → server;
// (b) client → meshgate outbound → consul proxy (inbound) → server.
import assert from "node:assert/strict";
import { AgentClient } from "../../src/agent/client.ts";
import { OperatorClient } from "../../src/agent/operator.ts";
import { connect } from "../../src/native/service.ts";
import { createLogger } from "../../src/net/log.ts";
import { startProxy } from "../../src/proxy/proxy.ts";
import { eventually, freePort } from "../_helpers.ts";
import { echoServer, outcome, tcpClient } from "../e2e/_net.ts";
import { announceSkip, consulBinary, type RealConsul, startConsul } from "./_consul.ts";

function consulProxy(consul: RealConsul, args: string[]) {
  const child = new Deno.Command(consul.binary, {
    args: ["connect", "proxy", "-http-addr", consul.address, "-log-level", "debug", ...args],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const logs: string[] = [];
  const collect = async (s: ReadableStream<Uint8Array>) => {
    for await (const c of s.pipeThrough(new TextDecoderStream())) logs.push(c);
  };
  const done = Promise.all([collect(child.stdout), collect(child.stderr)]);
  return {
    logs,
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      const kill = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
      }, 5000);
      await child.status;
      clearTimeout(kill);
      await done;
    },
  };
}

/**
 * Sends `payload` and reads until as many bytes came back, without half-closing: Consul's
 * built-in proxy has no half-close (either side ending closes both).
 */
async function exchange(port: number, payload: Uint8Array | string): Promise<Uint8Array> {
  const bytes = typeof payload === "string" ? new TextEncoder().encode(payload) : payload;
  const socket = await tcpClient(port);
  return await new Promise((resolve, reject) => {
    const out = new Uint8Array(bytes.length);
    let at = 0;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`only ${at} of ${bytes.length} bytes came back`));
    }, 20_000);
    socket.on("data", (c: Uint8Array) => {
      out.set(c.subarray(0, Math.min(c.length, out.length - at)), at);
      at += c.length;
      if (at >= bytes.length) {
        clearTimeout(timer);
        socket.destroy();
        resolve(out);
      }
    });
    socket.on("close", () => {
      clearTimeout(timer);
      if (at < bytes.length) reject(new Error(`closed after ${at} of ${bytes.length} bytes`));
    });
    socket.on("error", () => {});
    socket.write(bytes);
  });
}

/**
 * Runs `fn` with a deadline, so a stuck step fails with its name (and the proxies' last logs)
 * instead of hanging the whole suite.
 */
async function within<T>(ms: number, what: string, fn: () => Promise<T>, logs?: () => string) {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      fn(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`${what}: still running after ${ms} ms\n${logs?.() ?? ""}`)),
          ms,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Tries a round trip until it works (proxies load certificates asynchronously). */
async function eventuallyEcho(port: number, payload: string, ms = 30_000): Promise<void> {
  await eventually(
    async () => {
      try {
        return new TextDecoder().decode(await exchange(port, payload)) === payload;
      } catch {
        return false;
      }
    },
    ms,
    `an echo through 127.0.0.1:${port}`,
  );
}

const binary = consulBinary();
if (!binary) announceSkip("tests/integration/interop_test.ts");

// Both outbound legs: meshgate's upstreams dial Consul's proxy with node:tls, then natively.
for (const leg of ["node", "native"] as const) {
  Deno.test({
    name:
      "interop: Consul's built-in proxy ⇄ meshgate, both directions, allow, deny and CA rotation" +
      (leg === "native" ? " (meshgate's outbound: -outbound-tls native)" : ""),
    ignore: !binary,
    sanitizeResources: false,
    sanitizeOps: false,
    async fn(t) {
      await using consul = await startConsul();
      const agent = new AgentClient({
        address: consul.address,
        watchDefaults: { minIntervalMs: 0, backoffBaseMs: 100, backoffMaxMs: 1000 },
      });
      const app = await echoServer();
      // Intentions are written before anything asks authorize about these destinations (see the
      // contract suite on the agent's intention-cache staleness).
      for (const dst of ["db", "db2"]) {
        await new OperatorClient(agent).putConfigEntry({
          Kind: "service-intentions",
          Name: dst,
          Sources: [{ Name: "web", Action: "allow" }, { Name: "evil", Action: "deny" }],
        });
      }

      // (a) meshgate is db's sidecar; Consul's proxy is the client side for web and for evil.
      const dbPublic = freePort();
      await agent.register({
        ID: "db-1",
        Name: "db",
        Port: app.port,
        Connect: {
          SidecarService: { Port: dbPublic, Check: { TTL: "10m", Status: "passing" } },
        },
      });
      const meshgateDb = await startProxy({ agent, sidecarFor: "db-1" });
      await meshgateDb.ready;
      const webUp = freePort();
      const evilUp = freePort();
      const webClient = consulProxy(consul, ["-service", "web", "-upstream", `db:${webUp}`]);
      const evilClient = consulProxy(consul, ["-service", "evil", "-upstream", `db:${evilUp}`]);

      // (b) Consul's proxy is db2's inbound; meshgate is the client side for web and for evil.
      const db2Public = freePort();
      const db2Proxy = consulProxy(consul, [
        "-service",
        "db2",
        "-listen",
        `127.0.0.1:${db2Public}`,
        "-service-addr",
        `127.0.0.1:${app.port}`,
        "-register",
      ]);
      const mgWebUp = freePort();
      const mgEvilUp = freePort();
      const webLogs: string[] = [];
      const meshgateWeb = await startProxy({
        agent,
        config: {
          service: "web",
          upstreams: [{
            type: "service",
            name: "db2",
            bind: { hostname: "127.0.0.1", port: mgWebUp },
          }],
        },
        limits: { outboundTls: leg },
        log: createLogger({ level: "debug", json: true, write: (l) => webLogs.push(l) }),
      });
      const meshgateEvil = await startProxy({
        agent,
        config: {
          service: "evil",
          upstreams: [{
            type: "service",
            name: "db2",
            bind: { hostname: "127.0.0.1", port: mgEvilUp },
          }],
        },
        limits: { outboundTls: leg },
      });
      const tail = () =>
        [webClient, evilClient, db2Proxy].map((p) => p.logs.join("").slice(-1500)).join("\n---\n");
      const step = (name: string, fn: () => Promise<void>, ms = 90_000) =>
        t.step(name, () => within(ms, name, fn, tail));
      try {
        await step(
          "(a) consul proxy → meshgate inbound: allowed bytes flow, a large transfer intact",
          async () => {
            await eventuallyEcho(webUp, "hello from consul's proxy");
            const big = new Uint8Array(8 * 1024 * 1024).map((_, i) => i % 251);
            const echoed = await exchange(webUp, big);
            assert.equal(echoed.length, big.length);
            assert.ok(echoed.every((v, i) => v === big[i]));
          },
        );
        await step("(a) a denied client is refused by meshgate", async () => {
          for (let i = 0; i < 3; i++) {
            assert.equal(await outcome(await tcpClient(evilUp), "sneak"), "closed");
          }
        });
        await step("(b) meshgate outbound → consul proxy inbound: allowed bytes flow", async () => {
          await eventually(
            async () => (await agent.healthConnect("db2", { passing: true })).value.length === 1,
            20_000,
          );
          await eventuallyEcho(mgWebUp, "hello to consul's proxy");
          const big = new Uint8Array(8 * 1024 * 1024).map((_, i) => i % 253);
          const echoed = await exchange(mgWebUp, big);
          assert.equal(echoed.length, big.length);
          const started = webLogs.find((l) => l.includes("upstream listener started")) ?? "";
          assert.equal(started.includes(`"outboundTls":"native"`), leg === "native", started);
          const fellBack = webLogs.filter((l) => l.includes("falls back to node:tls"));
          assert.deepEqual(fellBack, [], "every native dial was decided natively");
        });
        await step("(b) consul's proxy refuses meshgate's denied client", async () => {
          await meshgateEvil.ready;
          // Go's TLS 1.3 server rejects after the client's handshake has finished; Deno's
          // node:tls client does not surface that close (a known gap, see README), so we check
          // what matters: the denied client gets nothing back from the application. (Consul's
          // proxy dials the application before authorizing, so a connection does reach it.)
          const c = await tcpClient(mgEvilUp);
          const reply = await Promise.race([
            outcome(c, "sneak"),
            new Promise<string>((r) => setTimeout(() => r("no reply"), 2000)),
          ]);
          c.destroy();
          assert.ok(reply === "closed" || reply === "no reply", reply);
        });
        await step(
          "CA rotation: open connections survive, new ones succeed with the new root",
          async () => {
            const a = await tcpClient(webUp);
            const b = await tcpClient(mgWebUp);
            const got = { a: "", b: "" };
            a.on("data", (d) => (got.a += d));
            b.on("data", (d) => (got.b += d));
            a.write("1;");
            b.write("1;");
            await eventually(() => got.a === "1;" && got.b === "1;");
            const before = (await agent.roots()).value.ActiveRootID;
            const cfg = await new OperatorClient(agent).caConfiguration();
            await new OperatorClient(agent).setCAConfiguration({
              Provider: "consul",
              Config: { ...cfg.Config, PrivateKeyBits: 384 },
            });
            await eventually(
              () => meshgateDb.material.roots?.roots.ActiveRootID !== before,
              20_000,
              "meshgate to see the new root",
            );
            a.write("2;");
            b.write("2;");
            await eventually(
              () => got.a === "1;2;" && got.b === "1;2;",
              10_000,
              "open connections to keep flowing",
            );
            // meshgate picks up its re-issued leaf (the agent re-issues within 30 s).
            const active = (await agent.roots()).value.Roots.find((r) => r.Active)!;
            await eventually(
              () => meshgateDb.material.leaf?.info.authorityKeyId === active.SigningKeyID,
              45_000,
              "a leaf from the new root",
            );
            await eventuallyEcho(webUp, "after rotation (a)");
            await eventuallyEcho(mgWebUp, "after rotation (b)");
            a.destroy();
            b.destroy();
          },
          150_000,
        );
      } finally {
        const pending = new Set<string>();
        const track = (name: string, p: Promise<unknown>) => {
          pending.add(name);
          return p.finally(() => pending.delete(name));
        };
        await within(30_000, "shutting down the proxies", async () => {
          await Promise.all([
            track("meshgate web", meshgateWeb.close()),
            track("meshgate evil", meshgateEvil.close()),
            track("meshgate db", meshgateDb.close()),
          ]);
          await Promise.all([
            track("consul web", webClient.stop()),
            track("consul evil", evilClient.stop()),
            track("consul db2", db2Proxy.stop()),
          ]);
          await track("app", app.close());
          await track("agent client", agent.close());
        }, () => `still pending: ${[...pending].join(", ")}`);
      }
    },
  });
}

Deno.test({
  name: "interop: Connect-native meshgate services ⇄ Consul's built-in proxy",
  ignore: !binary,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    await using consul = await startConsul();
    const agent = new AgentClient({
      address: consul.address,
      watchDefaults: { minIntervalMs: 0, backoffBaseMs: 100, backoffMaxMs: 1000 },
    });
    // A native api served by meshgate; Consul's proxy is web's client side.
    await using api = await connect({ service: "api", agent });
    const server = await api.serve(
      (req, { caller }) =>
        new Response(`${req.method} ${new URL(req.url).pathname} by ${caller.id.service}`),
      { hostname: "127.0.0.1", port: 0 },
    );
    await agent.register({
      ID: "api-native",
      Name: "api",
      Address: "127.0.0.1",
      Port: server.address.port,
      Connect: { Native: true },
    });
    const webUp = freePort();
    const webClient = consulProxy(consul, ["-service", "web", "-upstream", `api:${webUp}`]);
    // A plain HTTP app behind Consul's proxy (inbound); a native meshgate client calls it.
    const app = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      () => new Response("from behind consul's proxy"),
    );
    const shopPublic = freePort();
    const shopProxy = consulProxy(consul, [
      "-service",
      "shop",
      "-listen",
      `127.0.0.1:${shopPublic}`,
      "-service-addr",
      `127.0.0.1:${app.addr.port}`,
      "-register",
    ]);
    const tail = () => [webClient, shopProxy].map((p) => p.logs.join("").slice(-1500)).join("\n");
    try {
      await t.step("consul proxy (client) → native server: caller identity visible", async () => {
        await within(60_000, "native server step", async () => {
          let text = "";
          await eventually(
            async () => {
              try {
                const res = await fetch(`http://127.0.0.1:${webUp}/hello`, {
                  headers: { Connection: "close" },
                });
                text = await res.text();
                return res.status === 200;
              } catch {
                return false;
              }
            },
            30_000,
            "a request through consul's proxy",
          );
          assert.equal(text, "GET /hello by web");
        }, tail);
      });
      await t.step("native client → consul proxy (inbound) → app", async () => {
        await within(60_000, "native client step", async () => {
          await using web = await connect({ service: "web", agent });
          await eventually(
            async () => (await agent.healthConnect("shop", { passing: true })).value.length === 1,
            20_000,
            "shop's proxy to register",
          );
          const res = await web.fetch("http://shop.service.consul/");
          assert.equal(res.status, 200);
          assert.equal(await res.text(), "from behind consul's proxy");
        }, tail);
      });
    } finally {
      await within(30_000, "shutting down", async () => {
        await server.close();
        await Promise.all([webClient.stop(), shopProxy.stop()]);
        await app.shutdown();
        await agent.close();
      });
    }
  },
});
