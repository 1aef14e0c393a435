// The public listener and changes that overtake an authorize answer: an allow given for the
// state before an intention or roots change never opens a connection after it — whether the
// change comes while the agent answers or while the application is dialled. Real TLS on
// loopback, certificates from the test double's CA; the agent's answers are scripted.
import assert from "node:assert/strict";
import type { AuthorizeResult } from "../../src/agent/types.ts";
import type { ConnectionEvent } from "../../src/events/connection.ts";
import {
  type InboundGateway,
  type InboundOptions,
  startInbound,
} from "../../src/inbound/gateway.ts";
import { TlsMaterial } from "../../src/trust/material.ts";
import { clientFor, devAgent, eventually, nth } from "../_helpers.ts";
import { echoServer, outcome, tlsClient } from "../e2e/_net.ts";

const ALLOW: AuthorizeResult = { Authorized: true, Reason: "Matched L4 intention: allow" };
const DENY: AuthorizeResult = { Authorized: false, Reason: "Default behavior configured by ACLs" };

/** db's public listener with a scripted `authorize`, and web's certificate to call it with. */
async function setup(
  opts: Pick<InboundOptions, "authorize" | "intentions"> & { handoff?: boolean },
) {
  const dev = await devAgent();
  const agent = clientFor(dev);
  const material = new TlsMaterial();
  await material.setRoots((await agent.roots()).value);
  await material.setLeaf((await agent.leaf("db")).value);
  const app = await echoServer();
  const events: ConnectionEvent[] = [];
  const handedOff: string[] = [];
  const gw: InboundGateway = await startInbound({
    material,
    service: "db",
    authorize: opts.authorize,
    intentions: opts.intentions,
    bind: { hostname: "127.0.0.1", port: 0 },
    ...(opts.handoff
      ? {
        handoff: (c) => {
          handedOff.push(c.caller.spiffeId);
          c.socket.destroy();
        },
      }
      : { app: { hostname: "127.0.0.1", port: app.port } }),
    onEvent: (e) => events.push(e),
  });
  const web = (await agent.leaf("web")).value;
  const connect = () =>
    tlsClient(gw.address.port, {
      cert: web.CertPEM,
      key: web.PrivateKeyPEM,
      ca: material.roots!.pems,
    });
  const refusals = () => events.flatMap((e) => e.type === "refused" ? [e.refusal] : []);
  return {
    gw,
    app,
    events,
    handedOff,
    connect,
    refusals,
    async [Symbol.asyncDispose]() {
      await gw.close();
      await app.close();
      await agent.close();
      await dev.close();
    },
  };
}

Deno.test("inbound: an allow overtaken by a change while the application is dialled is asked again before the connection opens", async () => {
  const answers = [ALLOW, DENY];
  let calls = 0;
  let dialling = false;
  const s = await setup({
    authorize: () => Promise.resolve(nth(answers, calls++, "scripted authorize answer")),
    // Consulted right before the application is dialled: the change lands during the dial.
    intentions: () => {
      if (calls === 1 && !dialling) {
        dialling = true;
        queueMicrotask(() => s.gw.forgetAuthorizations());
      }
      return [];
    },
  });
  await using _ = s;
  assert.equal(await outcome(await s.connect(), "ping"), "closed");
  assert.equal(calls, 2, "asked again after the change");
  assert.equal(s.app.connections(), 1, "the application was dialled, and its socket dropped");
  await eventually(() => s.refusals().length === 1);
  assert.deepEqual(s.refusals().map((r) => [r.reason, r.detail]), [["denied", DENY.Reason]]);
  assert.equal(s.gw.connections.size, 0);
  assert.equal(s.events.filter((e) => e.type === "accepted").length, 0);
});

Deno.test("inbound: an allow in flight when answers are forgotten is not handed off; the caller is asked again", async () => {
  let first = Promise.withResolvers<AuthorizeResult>();
  const asked = Promise.withResolvers<void>();
  let calls = 0;
  await using s = await setup({
    handoff: true,
    authorize: () => {
      calls++;
      asked.resolve();
      return calls === 1 ? first.promise : Promise.resolve(DENY);
    },
  });
  const client = await s.connect();
  const ended = outcome(client, "ping");
  await asked.promise;
  s.gw.forgetAuthorizations(); // e.g. the allow intention was deleted
  first.resolve(ALLOW);
  assert.equal(await ended, "closed");
  assert.equal(calls, 2);
  assert.deepEqual(s.handedOff, []);
  assert.deepEqual(s.refusals().map((r) => r.reason), ["denied"]);
  // With no change in between, the allow stands.
  first = Promise.withResolvers();
  calls = 0;
  const next = outcome(await s.connect(), "ping");
  await eventually(() => calls === 1);
  first.resolve(ALLOW);
  await next;
  assert.equal(s.handedOff.length, 1);
});
