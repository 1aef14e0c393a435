// Route-level tests of src/devagent/routes/devagent.ts (the test hooks) through app.request().
import assert from "node:assert/strict";
import { call, double } from "./_double.ts";

Deno.test("devagent hooks: faults are added and cleared over HTTP", async () => {
  await using dev = await double();
  const add = await call(dev, "POST", "/v1/devagent/faults", {
    path: "/v1/agent/self",
    status: 503,
    body: "No cluster leader",
  });
  assert.deepEqual([add.status, add.json], [200, true]);
  assert.deepEqual((await call(dev, "GET", "/v1/agent/self")).text, "No cluster leader");
  const clear = await call(dev, "DELETE", "/v1/devagent/faults");
  assert.deepEqual([clear.status, clear.json], [200, true]);
  assert.equal((await call(dev, "GET", "/v1/agent/self")).status, 200);
  const bad = await call(dev, "POST", "/v1/devagent/faults", { status: 500 });
  assert.deepEqual([bad.status, bad.text], [500, "fault.path must be a string"]);
  const get = await call(dev, "GET", "/v1/devagent/faults");
  assert.deepEqual([get.status, get.headers.get("Allow")], [405, "OPTIONS,POST,DELETE"]);
});

Deno.test("devagent hooks: rotate makes a new active root and answers its ID", async () => {
  await using dev = await double();
  const before = dev.ca.activeRoot.ID;
  const r = await call(dev, "POST", "/v1/devagent/rotate");
  assert.equal(r.json.ActiveRootID, dev.ca.activeRoot.ID);
  assert.notEqual(r.json.ActiveRootID, before);
  const roots = await call(dev, "GET", "/v1/connect/ca/roots");
  assert.equal(roots.json.ActiveRootID, r.json.ActiveRootID);
});
