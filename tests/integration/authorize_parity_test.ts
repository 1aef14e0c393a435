// The authorize decision three ways: a real `consul agent -dev`, the test double (its own
// implementation, src/devagent/intention_decision.ts) and the proxy's re-check
// (src/intentions/decide.ts) must agree on every (source, destination) pair and on the order
// intentions are listed in. The double must not share the proxy's code, so only this test can
// tell whether either copy drifted from Consul.
import assert from "node:assert/strict";
import type { AuthorizeResult, Intention } from "../../src/agent/types.ts";
import { decideByIntentions } from "../../src/intentions/decide.ts";
import { parseSpiffeId, type ServiceSpiffeId } from "../../src/trust/spiffe.ts";
import { devAgent } from "../_helpers.ts";
import { announceSkip, consulBinary, startConsul } from "./_consul.ts";

const SOURCES = ["web", "api", "B", "a", "_x", "nobody"];

/**
 * Each phase writes intentions, then asks about destinations nobody asked about before: Consul's
 * authorize answers from an intention-match cache per target that a later write refreshes in
 * the background, seconds later or (seen with 1.22.7) not at all, while the double has no cache
 * to lag. `{n}` is the phase number.
 */
const PHASES: { writes: [string, string, "allow" | "deny"][]; ask: string[] }[] = [
  {
    // Nothing covers other0: the default decides.
    writes: [["web", "db{n}", "allow"], ["B", "cache{n}", "allow"], ["a", "cache{n}", "deny"]],
    ask: ["db{n}", "cache{n}", "other{n}"],
  },
  {
    writes: [
      ["web", "db{n}", "allow"],
      ["B", "cache{n}", "allow"],
      ["a", "cache{n}", "deny"],
      ["*", "db{n}", "deny"],
      ["api", "*", "allow"],
      ["_x", "*", "deny"],
    ],
    ask: ["db{n}", "cache{n}", "other{n}"],
  },
  {
    writes: [["web", "db{n}", "allow"], ["B", "cache{n}", "deny"], ["*", "*", "deny"]],
    ask: ["db{n}", "cache{n}", "other{n}"],
  },
];

async function send(url: string, method: string, path: string, body?: unknown) {
  const res = await fetch(`${url}${path}`, {
    method,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return JSON.parse(text);
}

interface Observed {
  list: string[];
  decisions: Record<string, AuthorizeResult>;
  proxy: Record<string, AuthorizeResult>;
}

async function observe(
  url: string,
  trustDomain: string,
  destinations: string[],
): Promise<Observed> {
  const intentions: Intention[] = await send(url, "GET", "/v1/connect/intentions");
  const decisions: Record<string, AuthorizeResult> = {};
  const proxy: Record<string, AuthorizeResult> = {};
  for (const src of SOURCES) {
    for (const dst of destinations) {
      const uri = `spiffe://${trustDomain}/ns/default/dc/dc1/svc/${src}`;
      const key = `${src} -> ${dst}`;
      decisions[key] = await send(url, "POST", "/v1/agent/connect/authorize", {
        Target: dst,
        ClientCertURI: uri,
      });
      // The proxy's re-check over the agent's own list, with the agent's default behind it.
      const d = decideByIntentions(intentions, dst, parseSpiffeId(uri) as ServiceSpiffeId);
      proxy[key] = d
        ? { Authorized: d.authorized, Reason: d.reason }
        : { Authorized: true, Reason: "Default behavior configured by ACLs" };
    }
  }
  return {
    list: intentions.map((i) => `${i.SourceName} => ${i.DestinationName} (${i.Precedence})`),
    decisions,
    proxy,
  };
}

const binary = consulBinary();
if (!binary) announceSkip("tests/integration/authorize_parity_test.ts");

Deno.test({
  name: "authorize parity: Consul, the double and the proxy's re-check decide alike",
  ignore: !binary,
  sanitizeResources: false, // the real agent is a child process with pipes
  async fn() {
    await using dev = await devAgent({ blockingJitter: false });
    await using consul = await startConsul();
    const agents = [
      { name: "double", url: dev.url, trustDomain: dev.ca.trustDomain },
      {
        name: "consul",
        url: consul.url,
        trustDomain: (await send(consul.url, "GET", "/v1/agent/connect/ca/roots")).TrustDomain,
      },
    ];
    for (const [phase, { writes, ask }] of PHASES.entries()) {
      const named = (name: string) => name.replace("{n}", String(phase));
      const seen: Observed[] = [];
      for (const agent of agents) {
        for (const [src, dst, action] of writes) {
          await send(
            agent.url,
            "PUT",
            `/v1/connect/intentions/exact?source=${encodeURIComponent(src)}&destination=${
              encodeURIComponent(named(dst))
            }`,
            { Action: action },
          );
        }
        seen.push(await observe(agent.url, agent.trustDomain, ask.map(named)));
      }
      const [double, real] = seen as [Observed, Observed];
      assert.deepEqual(double.list, real.list, `phase ${phase}: intention order`);
      assert.deepEqual(double.decisions, real.decisions, `phase ${phase}: the double`);
      assert.deepEqual(real.proxy, real.decisions, `phase ${phase}: the proxy's re-check`);
    }
  },
});
