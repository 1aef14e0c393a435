// The listeners' `reusePort` option, which lets the threads of `-workers` share one port: two
// listeners with it bind the same port and the kernel hands connections to both; without it the
// second bind fails as before.
import assert from "node:assert/strict";
import net from "node:net";
import { startInbound } from "../../src/inbound/gateway.ts";
import { startUpstream } from "../../src/outbound/listener.ts";
import { TlsMaterial } from "../../src/trust/material.ts";
import { clientFor, devAgent, freePort } from "../_helpers.ts";
import { echoServer } from "../e2e/_net.ts";

/**
 * Ports shared by threads must be known before any of them binds (port 0 cannot be shared), so
 * each is picked free when the file loads — never a fixed number inside the kernel's ephemeral
 * range, which any test's outgoing connection may hold.
 */
const INBOUND_PORT = freePort();
const UPSTREAM_PORT = freePort();

async function material(dev: { address: string }) {
  const agent = clientFor(dev);
  const m = new TlsMaterial();
  await m.setRoots((await agent.roots()).value);
  await m.setLeaf((await agent.leaf("db")).value);
  await agent.close();
  return m;
}

/** Connects `n` times and counts which listener accepted each (by their `accepted` sets). */
async function spread(port: number, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    await new Promise<void>((resolve) => {
      const s = net.connect({ host: "127.0.0.1", port }, () => s.destroy());
      s.on("error", () => {});
      s.on("close", () => resolve());
    });
  }
}

Deno.test("two public listeners with reusePort share a port; without it the second bind fails", async () => {
  await using dev = await devAgent();
  const m = await material(dev);
  const app = await echoServer();
  const base = {
    material: m,
    service: "db",
    authorize: () => Promise.resolve({ Authorized: true, Reason: "" }),
    bind: { hostname: "127.0.0.1", port: INBOUND_PORT },
    app: { hostname: "127.0.0.1", port: app.port },
    handshakeTimeoutMs: 200,
  };
  const refusedBy: [number, number] = [0, 0];
  const a = await startInbound({
    ...base,
    reusePort: true,
    onEvent: (e) => e.type === "refused" && refusedBy[0]++,
  });
  const b = await startInbound({
    ...base,
    reusePort: true,
    onEvent: (e) => e.type === "refused" && refusedBy[1]++,
  });
  assert.equal(b.address.port, a.address.port);
  // Plain TCP clients that hang up: each listener refuses the ones it got (a failed handshake).
  await spread(INBOUND_PORT, 40);
  await new Promise((r) => setTimeout(r, 300));
  assert.ok(refusedBy[0] > 0 && refusedBy[1] > 0, `refusals per listener: ${refusedBy}`);
  await assert.rejects(
    startInbound({ ...base }),
    (e: { code?: string }) => e.code === "EADDRINUSE",
  );
  await Promise.all([a.close(), b.close()]);
  await app.close();
});

Deno.test("two upstream listeners with reusePort share a port; without it the second bind fails", async () => {
  await using dev = await devAgent();
  const m = await material(dev);
  const agent = clientFor(dev);
  const upstream = {
    type: "service" as const,
    name: "db",
    bind: { hostname: "127.0.0.1", port: UPSTREAM_PORT },
  };
  const refusedBy: [number, number] = [0, 0];
  const start = (i: 0 | 1 | undefined, reusePort?: boolean) =>
    startUpstream({
      agent,
      material: m,
      upstream,
      reusePort,
      onEvent: (e) => e.type === "refused" && i !== undefined && refusedBy[i]++,
    });
  const a = await start(0, true);
  const b = await start(1, true);
  // No db endpoints: each listener refuses the clients it got.
  await spread(UPSTREAM_PORT, 40);
  await new Promise((r) => setTimeout(r, 300));
  assert.ok(refusedBy[0] > 0 && refusedBy[1] > 0, `refusals per listener: ${refusedBy}`);
  await assert.rejects(start(undefined), (e: { code?: string }) => e.code === "EADDRINUSE");
  await Promise.all([a.close(), b.close()]);
  await agent.close();
});
