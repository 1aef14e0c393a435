// Security checks: no key or token in logs, in the admin API or on disk; the admin app binds
// loopback by default; every refusal reason is its own metric label; parsers of outside input
// only ever throw their typed errors (fuzzed for a bounded time).
import assert from "node:assert/strict";
import { createAdminApp } from "../../src/admin/app.ts";
import { startAdmin } from "../../src/admin/server.ts";
import { AgentClient } from "../../src/agent/client.ts";
import { DecodeFailure } from "../../src/agent/decode.ts";
import { parseGoDuration } from "../../src/agent/duration.ts";
import { OperatorClient } from "../../src/agent/operator.ts";
import { REFUSAL_REASONS } from "../../src/events/connection.ts";
import { createLogger } from "../../src/net/log.ts";
import { startProxy } from "../../src/proxy/proxy.ts";
import { PROXY_ENV_VARS } from "../../src/transport/agent_client.ts";
import { CertificateError, parseCertificate } from "../../src/trust/certificate.ts";
import { parseSpiffeId, SpiffeIdError } from "../../src/trust/spiffe.ts";
import * as decode from "../../src/agent/decode.ts";
import { FlagError, parseFlags } from "../../src/cli/flags.ts";
import {
  clientFor,
  devAgent,
  eventually,
  freePort,
  meshClient,
  registerEchoDb,
  spawnLogged,
} from "../_helpers.ts";
import { roundTrip } from "../e2e/_net.ts";

const SOAK = Deno.env.get("MESHGATE_SOAK") === "1";
const TOKEN = "5e1b6f0c-0000-4000-8000-secret-token";

Deno.test("security: no private key or token in logs, admin API or event stream", async () => {
  await using dev = await devAgent();
  const lines: string[] = [];
  const agent = new AgentClient({ address: dev.address, token: TOKEN });
  const { app, port } = await registerEchoDb(agent);
  const proxy = await startProxy({
    agent,
    sidecarFor: "db-1",
    log: createLogger({ level: "trace", json: true, write: (l) => lines.push(l) }),
  });
  await proxy.ready;
  const admin = createAdminApp({ proxy, tickMs: 20 });
  const events = await admin.request("/v1/events");
  const reader = events.body!.pipeThrough(new TextDecoderStream()).getReader();
  // Traffic, a refusal, a rotation, an agent error: everything that logs.
  const c = await meshClient(clientFor(dev), port);
  await roundTrip(c, "x");
  await new OperatorClient(clientFor(dev)).upsertIntention("web", "db", { Action: "deny" });
  await meshClient(clientFor(dev), port).then((s) => s.destroy(), () => {});
  dev.faults.add({ path: "/v1/agent/connect/ca/roots", status: 500, times: 1 });
  await dev.rotateCA();
  await eventually(() => proxy.material.roots!.roots.Roots.length === 2, 5000);
  let streamed = "";
  while (streamed.length < 2000) streamed += (await reader.read()).value ?? "";
  await reader.cancel();
  const exposed = [
    lines.join("\n"),
    streamed,
    await (await admin.request("/v1/state")).text(),
    await (await admin.request("/v1/connections")).text(),
    await (await admin.request("/metrics")).text(),
  ];
  for (const text of exposed) {
    assert.ok(!text.includes("PRIVATE KEY"), "a private key leaked");
    assert.ok(!text.includes(TOKEN), "the token leaked");
  }
  console.log(`held: ${lines.length} log lines and 5 admin outputs, none with a key or token`);
  await proxy.close();
  await app.close();
  await agent.close();
});

Deno.test("security: the admin app binds loopback by default; every refusal reason is a label", async () => {
  await using dev = await devAgent();
  const agent = clientFor(dev);
  await agent.register({ ID: "db-1", Name: "db", Port: 1, Connect: { SidecarService: {} } });
  await using proxy = await startProxy({ agent, sidecarFor: "db-1" });
  await using admin = await startAdmin({ proxy, port: 0 });
  assert.equal(admin.address.hostname, "127.0.0.1");
  const text = await (await fetch(`${admin.url}metrics`)).text();
  for (const reason of REFUSAL_REASONS) {
    assert.match(
      text,
      new RegExp(`meshgate_connections_refused_total\\{direction="inbound",reason="${reason}"\\}`),
    );
  }
  await agent.close();
  console.log(`held: admin on ${admin.address.hostname}; ${REFUSAL_REASONS.length} refusal labels`);
});

Deno.test("security: the proxy runs with the narrow permission set (no disk, named env vars)", async () => {
  await using dev = await devAgent();
  const agent = clientFor(dev);
  const { app, port } = await registerEchoDb(agent);
  const p = spawnLogged(Deno.execPath(), [
    "run",
    // The README's narrow permission set: no read (no files given by flags), no write.
    "--allow-net",
    `--allow-env=${PROXY_ENV_VARS.join(",")}`,
    new URL("../../src/cli/main.ts", import.meta.url).pathname,
    "-sidecar-for",
    "db-1",
    "-http-addr",
    dev.address,
    "-admin-bind",
    "",
  ]);
  await eventually(() => p.logs().includes("proxy ready"), 20_000, "the proxy to be ready");
  const c = await meshClient(agent, port);
  assert.equal(new TextDecoder().decode(await roundTrip(c, "no disk")), "no disk");
  p.child.kill("SIGTERM");
  assert.equal(await p.exited(), 0, p.logs());
  assert.ok(!/NotCapable|PermissionDenied|Requires write access/.test(p.logs()), p.logs());
  await app.close();
  await agent.close();
  console.log("held: 1 connection served with --allow-net and named env vars only; exit 0");
});

// ---- fuzzing ---------------------------------------------------------------------------------

/** A small deterministic PRNG, so a failure can be replayed from its seed. */
function rng(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
}

function randomValue(r: () => number, depth = 0): unknown {
  const k = Math.floor(r() * (depth > 2 ? 5 : 7));
  switch (k) {
    case 0:
      return null;
    case 1:
      return Math.floor(r() * 1e6) * (r() < 0.5 ? -1 : 1);
    case 2:
      return r() < 0.5;
    case 3:
      return String.fromCharCode(
        ...Array.from({ length: Math.floor(r() * 12) }, () => 32 + Math.floor(r() * 95)),
      );
    case 4:
      return "";
    case 5:
      return Array.from({ length: Math.floor(r() * 3) }, () => randomValue(r, depth + 1));
    default:
      return Object.fromEntries(
        Array.from({ length: Math.floor(r() * 3) }, (_, i) => [`k${i}`, randomValue(r, depth + 1)]),
      );
  }
}

/** Mutates a valid answer: drop a field, change a type, or replace a nested value. */
function mutate(v: unknown, r: () => number, depth = 0): unknown {
  if (r() < 0.15) return randomValue(r, depth);
  if (Array.isArray(v)) return v.map((x) => (r() < 0.5 ? mutate(x, r, depth + 1) : x));
  if (v && typeof v === "object") {
    const out: Record<string, unknown> = {};
    for (const [key, val] of Object.entries(v)) {
      const x = r();
      if (x < 0.1) continue; // dropped
      out[key] = x < 0.4 ? mutate(val, r, depth + 1) : val;
    }
    return out;
  }
  return r() < 0.3 ? randomValue(r, depth) : v;
}

Deno.test("fuzz: agent answers, CLI flags, SPIFFE IDs, durations and certificates give typed errors only", async () => {
  await using dev = await devAgent();
  const agent = clientFor(dev);
  await agent.register({
    ID: "db-1",
    Name: "db",
    Port: 5432,
    Connect: { SidecarService: { Port: freePort() } },
  });
  await new OperatorClient(agent).upsertIntention("web", "db", { Action: "allow" });
  const get = async (path: string) => await (await fetch(`${dev.url}${path}`)).json();
  const samples: [string, (v: unknown) => unknown, unknown][] = [
    ["roots", decode.decodeRoots, await get("/v1/agent/connect/ca/roots")],
    ["leaf", decode.decodeLeaf, await get("/v1/agent/connect/ca/leaf/db")],
    ["service", decode.decodeAgentService, await get("/v1/agent/service/db-1-sidecar-proxy")],
    ["health", decode.decodeServiceEntries, await get("/v1/health/connect/db")],
    ["chain", decode.decodeChain, await get("/v1/discovery-chain/db")],
    ["intentions", decode.decodeIntentions, await get("/v1/connect/intentions")],
    ["authorize", decode.decodeAuthorize, { Authorized: true, Reason: "x" }],
  ];
  const budgetMs = SOAK ? 60_000 : 1500;
  const r = rng(20261125);
  let cases = 0;
  const until = Date.now() + budgetMs;
  while (Date.now() < until) {
    for (const [name, decoder, valid] of samples) {
      const input = mutate(valid, r);
      try {
        decoder(structuredClone(input));
      } catch (err) {
        assert.ok(
          err instanceof DecodeFailure,
          `${name}: ${err} for ${JSON.stringify(input).slice(0, 300)}`,
        );
      }
      cases++;
    }
    const words = ["-sidecar-for", "-upstream", "db:9191", "-listen", "=", "--", "-http-addr", ":"];
    const args = Array.from(
      { length: Math.floor(r() * 6) },
      // r() is in [0, 1), so the index is in range.
      () => r() < 0.5 ? words[Math.floor(r() * words.length)]! : String(randomValue(r)),
    );
    try {
      parseFlags(args, {});
    } catch (err) {
      assert.ok(err instanceof FlagError, `flags ${JSON.stringify(args)}: ${err}`);
    }
    const text = String(randomValue(r));
    for (const s of [`spiffe://${text}`, `spiffe://td.consul/ns/${text}/dc/dc1/svc/x`, text]) {
      try {
        parseSpiffeId(s);
      } catch (err) {
        assert.ok(err instanceof SpiffeIdError, `spiffe ${JSON.stringify(s)}: ${err}`);
      }
      try {
        parseGoDuration(s);
      } catch (err) {
        assert.ok(err instanceof RangeError, `duration ${JSON.stringify(s)}: ${err}`);
      }
    }
    cases += 7;
  }
  // Certificates: random bytes and damaged PEM.
  const leafPem = (await agent.leaf("db")).value.CertPEM.split("-----END CERTIFICATE-----")[0] +
    "-----END CERTIFICATE-----\n";
  const body = leafPem.split("\n").slice(1, -2).join("");
  for (let i = 0; i < (SOAK ? 2000 : 200); i++) {
    const at = Math.floor(r() * body.length);
    const broken = body.slice(0, at) +
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef0123456789+/"[Math.floor(r() * 44)] + body.slice(at + 1);
    for (
      const pem of [
        `-----BEGIN CERTIFICATE-----\n${broken}\n-----END CERTIFICATE-----\n`,
        `-----BEGIN CERTIFICATE-----\n${broken.slice(0, at)}\n-----END CERTIFICATE-----\n`,
        String(randomValue(r)),
      ]
    ) {
      try {
        await parseCertificate(pem);
      } catch (err) {
        assert.ok(err instanceof CertificateError, `certificate: ${err}`);
      }
      cases++;
    }
  }
  console.log(`held: ${cases} generated inputs, only typed errors`);
  await agent.close();
});
