// Service subsets on a real Consul (issue: target `v1.api…` got both the v1 and the v2
// instance): a service-resolver whose DefaultSubset is v1 must leave only v1's sidecar among the
// upstream's endpoints, and a redirect to subset v2 only v2's.
import assert from "node:assert/strict";
import { AgentClient } from "../../src/agent/client.ts";
import { OperatorClient } from "../../src/agent/operator.ts";
import { startProxy } from "../../src/proxy/proxy.ts";
import { eventually, freePort } from "../_helpers.ts";
import { announceSkip, consulBinary, startConsul } from "./_consul.ts";

const binary = consulBinary();
if (!binary) announceSkip("subset_test.ts");

Deno.test({
  name: "real consul: a resolver's DefaultSubset filters the upstream's endpoints",
  ignore: !binary,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using consul = await startConsul();
    const agent = new AgentClient({ address: consul.address });
    // Both instances' sidecar ports answer Consul's TCP checks, so both are healthy: only the
    // subset's filter can tell them apart.
    const listeners = ["v1", "v2"].map(() => Deno.listen({ hostname: "127.0.0.1", port: 0 }));
    const accepting = listeners.map(async (l) => {
      for await (const c of l) c.close();
    });
    try {
      for (const [i, version] of ["v1", "v2"].entries()) {
        await agent.register({
          ID: `api-${version}`,
          Name: "api",
          Port: freePort(),
          Meta: { version },
          Connect: {
            SidecarService: {
              Address: "127.0.0.1",
              Port: (listeners[i]!.addr as Deno.NetAddr).port,
              Checks: [{
                TCP: `127.0.0.1:${(listeners[i]!.addr as Deno.NetAddr).port}`,
                Interval: "1s",
              }],
            },
          },
        });
      }
      await new OperatorClient(agent).putConfigEntry({
        Kind: "service-resolver",
        Name: "api",
        DefaultSubset: "v1",
        Subsets: {
          v1: { Filter: 'Service.Meta.version == "v1"' },
          v2: { Filter: 'Service.Meta.version == "v2"' },
        },
      } as never);
      await agent.register({
        ID: "web-1",
        Name: "web",
        Port: freePort(),
        Connect: {
          SidecarService: {
            Port: freePort(),
            Proxy: { Upstreams: [{ DestinationName: "api", LocalBindPort: freePort() }] },
          },
        },
      });
      await using web = await startProxy({ agent, sidecarFor: "web-1" });
      await web.ready;
      const endpoints = () =>
        [...(web.upstreams[0]?.resolver?.targets.values() ?? [])].flatMap((t) =>
          t.endpoints.map((e) => `${t.id}:${e.id}`)
        );
      await eventually(() => endpoints().length > 0, 20_000, "the v1 subset's endpoint");
      // Both instances are passing now: had the filter been ignored, v2 would be listed too.
      await eventually(
        async () => (await agent.healthConnect("api", { passing: true })).value.length === 2,
        20_000,
        "both api sidecars passing",
      );
      await new Promise((r) => setTimeout(r, 1500)); // one more health round for the watch
      const seen = endpoints();
      assert.ok(seen.length > 0, `no endpoint for the subset target (saw ${JSON.stringify(seen)})`);
      assert.ok(seen.every((e) => e.startsWith("v1.api.") && e.includes("api-v1")), String(seen));
      assert.ok(!seen.some((e) => e.includes("api-v2")), `v2 must not serve v1: ${seen}`);
    } finally {
      await agent.close();
      for (const l of listeners) l.close();
      await Promise.allSettled(accepting);
    }
  },
});
