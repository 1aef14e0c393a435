// close() is idempotent (#17.1): every caller awaits the same drain, however many call it and
// whenever (a second caller while it drains, a subscriber of the `draining` phase event).
import assert from "node:assert/strict";
import net from "node:net";
import type tls from "node:tls";
import { startProxy } from "../../src/proxy/proxy.ts";
import { clientFor, devAgent, eventually, freePort } from "../_helpers.ts";
import { echoServer, tlsClient } from "../e2e/_net.ts";

/** A db proxy with one open connection from web through its public listener. */
async function setup() {
  const dev = await devAgent();
  const agent = clientFor(dev);
  const app = await echoServer();
  const port = freePort();
  await agent.register({
    Kind: "connect-proxy",
    ID: "db-proxy",
    Name: "db-proxy",
    Port: port,
    Proxy: { DestinationServiceName: "db", LocalServicePort: app.port },
  });
  const proxy = await startProxy({ agent, proxyId: "db-proxy" });
  await proxy.ready;
  const web = (await agent.leaf("web")).value;
  const roots = (await agent.roots()).value.Roots.map((r) => r.RootCert);
  const socket: tls.TLSSocket = await tlsClient(port, {
    cert: web.CertPEM,
    key: web.PrivateKeyPEM,
    ca: roots,
  });
  let got = "";
  socket.on("data", (d) => (got += d.toString()));
  const echo = async (line: string) => {
    const before = got.length;
    socket.write(line);
    await eventually(() => got.slice(before) === line, 5000, `"${line}" echoed`);
  };
  await echo("open;");
  return {
    proxy,
    port,
    echo,
    socket,
    async [Symbol.asyncDispose]() {
      socket.destroy();
      await proxy.close();
      await app.close();
      await agent.close();
      await dev.close();
    },
  };
}

function refusedConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: "127.0.0.1", port });
    s.once("connect", () => {
      s.destroy();
      resolve(false);
    });
    s.once("error", () => resolve(true));
  });
}

Deno.test("close: a second close() while draining resolves only when the first does", async () => {
  await using m = await setup();
  const order: string[] = [];
  const first = m.proxy.close(60_000).then(() => order.push("first"));
  const second = m.proxy.close(60_000).then(() => order.push("second"));
  assert.equal(m.proxy.close(), m.proxy.close(), "every caller gets the same drain");
  // The drain is under way: no new connections, the open one still flows.
  await eventually(() => refusedConnect(m.port), 5000, "the public listener closed");
  await m.echo("draining;");
  assert.equal(order.join(), "", "neither close() resolved while the connection is open");
  order.push("connection closed");
  m.socket.destroy();
  await Promise.all([first, second]);
  assert.deepEqual(order, ["connection closed", "first", "second"]);
  assert.equal(m.proxy.phase, "stopped");
});

Deno.test("close: called by a subscriber of the draining event, joins the same drain", async () => {
  await using m = await setup();
  const phases: string[] = [];
  const order: string[] = [];
  let joined: Promise<unknown> | undefined;
  m.proxy.events.subscribe((e) => {
    if (e.type !== "phase") return;
    phases.push(e.phase);
    if (e.phase === "draining" && !joined) {
      joined = m.proxy.close(60_000).then(() => order.push("subscriber"));
    }
  });
  const first = m.proxy.close(60_000).then(() => order.push("first"));
  await eventually(() => refusedConnect(m.port), 5000, "the public listener closed");
  await m.echo("draining;");
  assert.equal(order.join(), "", "close() resolved while the connection is open");
  order.push("connection closed");
  m.socket.destroy();
  await Promise.all([first, joined]);
  assert.deepEqual(order, ["connection closed", "subscriber", "first"]); // the subscriber awaited first
  assert.deepEqual(phases, ["draining", "stopped"], "one drain, not two");
});
