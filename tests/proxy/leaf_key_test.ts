// A leaf whose PrivateKeyPEM is garbage or belongs to another certificate never replaces the
// good leaf (#16.9): it is refused, the old one keeps serving, and /ready says why.
import assert from "node:assert/strict";
import { createAdminApp } from "../../src/admin/app.ts";
import { AgentClient } from "../../src/agent/client.ts";
import type { LeafCert } from "../../src/agent/types.ts";
import { createLogger } from "../../src/net/log.ts";
import { startProxy } from "../../src/proxy/proxy.ts";
import { CertificateError } from "../../src/trust/certificate.ts";
import { TlsMaterial } from "../../src/trust/material.ts";
import { clientFor, devAgent, eventually, registerEchoDb } from "../_helpers.ts";
import { roundTrip, tlsClient } from "../e2e/_net.ts";

const GARBAGE_KEY = "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n";

Deno.test("TlsMaterial.setLeaf refuses a garbage or mismatched key and keeps the current leaf", async () => {
  await using dev = await devAgent();
  const agent = clientFor(dev);
  const db = (await agent.leaf("db")).value;
  const web = (await agent.leaf("web")).value;
  const material = new TlsMaterial();
  await material.setLeaf(db);
  const bad: [string, LeafCert, RegExp][] = [
    ["garbage", { ...db, PrivateKeyPEM: GARBAGE_KEY }, /PrivateKeyPEM does not parse/],
    ["empty", { ...db, PrivateKeyPEM: "" }, /PrivateKeyPEM does not parse/],
    [
      "another leaf's key",
      { ...db, PrivateKeyPEM: web.PrivateKeyPEM },
      /PrivateKeyPEM does not match the certificate's public key/,
    ],
  ];
  for (const [what, leaf, message] of bad) {
    await assert.rejects(
      material.setLeaf(leaf),
      (e) => e instanceof CertificateError && message.test(e.message),
      what,
    );
    assert.equal(material.leaf?.cert.PrivateKeyPEM, db.PrivateKeyPEM, `${what}: leaf kept`);
  }
  await agent.close();
});

Deno.test("proxy: a renewed leaf with a mismatched key is refused; the old leaf serves; /ready says why", async () => {
  await using dev = await devAgent();
  const registrar = clientFor(dev);
  const { app, port } = await registerEchoDb(registrar);
  const other = (await registrar.leaf("web")).value.PrivateKeyPEM;
  let tamper = false;
  // The agent's leaf answers, with the key swapped while `tamper` is on.
  const agent = new AgentClient({
    address: dev.address,
    watchDefaults: { minIntervalMs: 0, backoffBaseMs: 20, backoffMaxMs: 200 },
    fetch: async (input, init) => {
      const res = await fetch(input, init);
      const url = new URL(input instanceof Request ? input.url : String(input));
      if (!tamper || !url.pathname.startsWith("/v1/agent/connect/ca/leaf/") || !res.ok) {
        return res;
      }
      const leaf = await res.json();
      const headers = new Headers(res.headers);
      headers.delete("content-length");
      return new Response(JSON.stringify({ ...leaf, PrivateKeyPEM: other }), {
        status: res.status,
        headers,
      });
    },
  });
  const lines: string[] = [];
  const proxy = await startProxy({
    agent,
    sidecarFor: "db-1",
    log: createLogger({ level: "warn", json: true, write: (l) => lines.push(l) }),
  });
  try {
    await proxy.ready;
    const good = proxy.material.leaf!.cert.SerialNumber;
    tamper = true;
    await dev.rotateCA(); // the agent issues a new leaf, which reaches us with the wrong key
    await eventually(
      () => lines.some((l) => l.includes("refusing unusable leaf")),
      5000,
      "the refusal to be logged",
    );
    assert.equal(proxy.material.leaf!.cert.SerialNumber, good, "the good leaf stays");
    const ready = await createAdminApp({ proxy }).request("/ready");
    assert.equal(ready.status, 503);
    assert.match(
      JSON.stringify(await ready.json()),
      /leaf: refused the agent's leaf: certificate: leaf [0-9a-f:]+: PrivateKeyPEM does not match the certificate's public key/,
    );
    // Callers still get through with the old leaf (the old root stays trusted in a rotation).
    const web = (await registrar.leaf("web")).value;
    const roots = (await registrar.roots()).value.Roots.map((r) => r.RootCert);
    const c = await tlsClient(port, { cert: web.CertPEM, key: web.PrivateKeyPEM, ca: roots });
    assert.equal(new TextDecoder().decode(await roundTrip(c, "still served")), "still served");
    tamper = false; // the agent answers properly again: the leaf watch installs it
    await eventually(() => proxy.material.leaf!.cert.SerialNumber !== good, 10_000, "renewal");
    assert.equal((await createAdminApp({ proxy }).request("/ready")).status, 200);
  } finally {
    await proxy.close();
    await app.close();
    await agent.close();
    await registrar.close();
  }
});
