/**
 * `deno task demo`: the control plane at work on the embedded Consul test double. Registers a
 * service with a sidecar, watches its roots and leaf with blocking queries, rotates the CA and
 * shows both watches fire — then keeps the agent running for you to try by hand.
 */
import { AgentClient, startDevAgent } from "../mod.ts";

const dev = await startDevAgent({ rotationJitterMs: 1000 });
const agent = new AgentClient({ address: dev.address, watchDefaults: { minIntervalMs: 0 } });
console.log(`Consul test double on ${dev.url} (trust domain ${dev.ca.trustDomain})`);

await agent.register({
  ID: "web-1",
  Name: "web",
  Port: 8080,
  Connect: {
    SidecarService: { Proxy: { Upstreams: [{ DestinationName: "api", LocalBindPort: 9191 }] } },
  },
});
const sidecar = (await agent.service("web-1-sidecar-proxy")).value;
console.log(`Registered web-1 with sidecar ${sidecar.ID} on port ${sidecar.Port}`);

const ac = new AbortController();
const roots = agent.watchRoots().subscribe(ac.signal);
const leaf = agent.watchLeaf("web").subscribe(ac.signal);
const r0 = (await roots.next()).value!;
const l0 = (await leaf.next()).value!;
console.log(
  `Roots: active ${r0.value.ActiveRootID.slice(0, 23)}…, ${r0.value.Roots.length} root(s)`,
);
console.log(`Leaf for web: serial ${l0.value.SerialNumber}, ${l0.value.ServiceURI}`);

console.log("Rotating the CA root…");
await dev.rotateCA();
const r1 = (await roots.next()).value!;
console.log(
  `Roots watch fired: ${r1.value.Roots.length} roots, active ${
    r1.value.ActiveRootID.slice(0, 23)
  }…`,
);
const l1 = (await leaf.next()).value!;
console.log(`Leaf watch fired: new serial ${l1.value.SerialNumber}, signed by the new root`);
ac.abort();

console.log(`\nThe agent keeps running. Try:\n  curl ${dev.url}/v1/agent/connect/ca/roots`);
console.log(`  curl ${dev.url}/v1/health/connect/web\nCtrl-C to stop.`);
const stop = async () => {
  await agent.close();
  await dev.close();
  Deno.exit(0);
};
Deno.addSignalListener("SIGINT", stop);
Deno.addSignalListener("SIGTERM", stop);
