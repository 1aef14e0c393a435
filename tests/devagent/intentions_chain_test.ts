// What only the double can be made to do: renew a leaf and rotate its CA on demand. The
// intention, authorize and discovery-chain checks that were here are contract cases now
// (tests/contract/cases.ts), run on the double and on a real Consul agent.
import assert from "node:assert/strict";
import { clientFor, devAgent } from "../_helpers.ts";

Deno.test("double leaf: blocking returns a renewed certificate; non-blocking revalidates after rotation", async () => {
  await using dev = await devAgent({ rotationJitterMs: 60_000 });
  const agent = clientFor(dev);
  // (X-Cache and Age of leaf reads: the contract case "leaf: a plain read revalidates…".)
  const first = await agent.leaf("web");
  const blocked = agent.leaf("web", { index: first.index, waitMs: 10_000 });
  await dev.leaves.renew("web");
  const renewed = await blocked;
  assert.notEqual(renewed.value.SerialNumber, first.value.SerialNumber);
  assert.ok(renewed.index! > first.index!);
  // After a rotation, a non-blocking read re-issues at once (signed by the new root).
  await dev.rotateCA();
  const fresh = await agent.leaf("web");
  assert.notEqual(fresh.value.SerialNumber, renewed.value.SerialNumber);
  assert.equal(fresh.value.CertPEM.match(/BEGIN CERTIFICATE/g)!.length, 2);
});
