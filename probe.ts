import { startInbound, TlsMaterial } from "./mod.ts";
import { clientFor, devAgent } from "./tests/_helpers.ts";
import { echoServer, outcome, tlsClient } from "./tests/e2e/_net.ts";
const dev = await devAgent();
const agent = clientFor(dev);
const material = new TlsMaterial();
await material.setRoots((await agent.roots()).value);
await material.setLeaf((await agent.leaf("db")).value);
const app = await echoServer();
const gw = await startInbound({
  material,
  service: "db",
  authorize: (r, o) => agent.authorize(r, o),
  bind: { hostname: "127.0.0.1", port: 0 },
  app: { hostname: "127.0.0.1", port: app.port },
  onEvent: (e) => console.log("EVENT", JSON.stringify(e)),
});
const other = await devAgent();
const foreign = (await clientFor(other).leaf("web")).value;
const c = await tlsClient(gw.address.port, {
  cert: foreign.CertPEM,
  key: foreign.PrivateKeyPEM,
  ca: material.roots!.pems,
}).catch((e) => e);
console.log("client:", c instanceof Error ? c.message : await outcome(c, "x"));
const expired = await dev.ca.signIdentity(
  `spiffe://${material.trustDomain}/ns/default/dc/dc1/svc/web`,
  { notBefore: new Date(Date.now() - 7200_000), notAfter: new Date(Date.now() - 3600_000) },
);
const d = await tlsClient(gw.address.port, {
  cert: expired.certPem,
  key: expired.keyPem,
  ca: material.roots!.pems,
}).catch((e) => e);
console.log("client:", d instanceof Error ? d.message : await outcome(d, "x"));
const web = (await agent.leaf("web")).value;
const e = await tlsClient(gw.address.port, {
  cert: web.CertPEM,
  key: web.PrivateKeyPEM,
  ca: material.roots!.pems,
});
console.log("peer cert", e.getPeerCertificate());
await new Promise((r) => setTimeout(r, 500));
Deno.exit(0);
