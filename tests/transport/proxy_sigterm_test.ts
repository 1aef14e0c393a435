// The proxy process against an HTTPS agent through the node transport (CONSUL_HTTP_SSL_VERIFY=false):
// SIGTERM ends it within the drain timeout, even while its blocking queries wait on reused
// keep-alive sockets (it used to wait them out: 5 minutes).
import assert from "node:assert/strict";
import { clientFor, devAgent, eventually, registerEchoDb, spawnLogged } from "../_helpers.ts";
import { pki, tlsFront } from "./_pki.ts";

const MAIN = new URL("../../src/cli/main.ts", import.meta.url).pathname;

Deno.test({
  name: "cli: with an HTTPS agent and CONSUL_HTTP_SSL_VERIFY=false, SIGTERM exits in time",
  sanitizeResources: false, // the child's pipes and the TLS front's sockets
  async fn() {
    await using dev = await devAgent();
    const agent = clientFor(dev);
    const { app } = await registerEchoDb(agent);
    const p = await pki();
    // The double behind TLS.
    const front = await tlsFront(dev.address, p.server);
    const drainMs = 1000;
    const child = spawnLogged(
      Deno.execPath(),
      [
        "run",
        "-A",
        MAIN,
        "-sidecar-for",
        "db-1",
        "-http-addr",
        front.address,
        "-admin-bind",
        "",
        "-drain-timeout",
        String(drainMs),
        "-log-json",
      ],
      { CONSUL_HTTP_SSL_VERIFY: "false" },
    );
    let killer: ReturnType<typeof setTimeout> | undefined;
    try {
      await eventually(
        () => child.logs().includes('"proxy ready"'),
        30_000,
        "the proxy to be ready",
      );
      // Let every watch make its second, blocking request on its reused socket.
      await new Promise((r) => setTimeout(r, 1000));
      const sentAt = performance.now();
      child.child.kill("SIGTERM");
      // Before the fix it waited out its blocking queries; don't wait minutes to say so.
      killer = setTimeout(() => child.child.kill("SIGKILL"), 20_000);
      const code = await child.exited();
      const tookMs = performance.now() - sentAt;
      assert.equal(code, 0, `exit code ${code}; logs:\n${child.logs().slice(-2000)}`);
      // The drain timeout, plus the time a Deno process takes to wind down.
      assert.ok(tookMs < drainMs + 3000, `exited ${Math.round(tookMs)} ms after SIGTERM`);
      assert.match(child.logs(), /"proxy stopped"/);
    } finally {
      clearTimeout(killer);
      try {
        child.child.kill("SIGKILL");
      } catch {
        // already gone
      }
      await child.exited();
      await front.close();
      await app.close();
      await agent.close();
    }
  },
});
