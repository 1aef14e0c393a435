// readinessProblems() (src/admin/readiness.ts) on a Connect-native service of the test double:
// ready only in phase `ready` with a leaf that is neither expired nor within its renewal margin
// and that chains to the current roots; then what the subject itself says. Time travels through
// the `now` argument, so every boundary is exact.
import assert from "node:assert/strict";
import { readinessProblems } from "../../src/admin/readiness.ts";
import { connect, ConnectService } from "../../src/native/service.ts";
import { clientFor, devAgent, eventually } from "../_helpers.ts";

const HOUR = 3600_000;

Deno.test("readiness: a leaf is not ready from its renewal margin on, and expired from notAfter on", async () => {
  // Leaves of 72 h (Consul's default): the margin is 10 % of the lifetime, at most 1 h.
  await using dev = await devAgent({ leafTtlMs: 72 * HOUR });
  await using agent = clientFor(dev);
  await using api = await connect({ service: "api", agent });
  const leaf = api.material.leaf!.info;
  const notAfter = leaf.notAfter.getTime();
  assert.deepEqual(readinessProblems(api), [], "ready now");

  assert.deepEqual(readinessProblems(api, notAfter - HOUR - 1), [], "just outside the margin");
  assert.deepEqual(readinessProblems(api, notAfter - HOUR), [
    "leaf certificate expires in 3600 s and has not been renewed",
  ]);
  assert.deepEqual(readinessProblems(api, notAfter - 1), [
    "leaf certificate expires in 0 s and has not been renewed",
  ]);
  assert.deepEqual(readinessProblems(api, notAfter), ["leaf certificate has expired"]);
  assert.deepEqual(readinessProblems(api, notAfter + HOUR), ["leaf certificate has expired"]);

  // leafExpiryMarginMs replaces the default; 0 means the default.
  const margin = { leafExpiryMarginMs: 2 * HOUR };
  assert.deepEqual(readinessProblems(api, notAfter - 2 * HOUR - 1, margin), []);
  assert.deepEqual(readinessProblems(api, notAfter - 2 * HOUR, margin), [
    "leaf certificate expires in 7200 s and has not been renewed",
  ]);
  assert.deepEqual(
    readinessProblems(api, notAfter - HOUR - 1, { leafExpiryMarginMs: 0 }),
    [],
    "0 is the default margin, not 'never'",
  );
});

Deno.test("readiness: a short-lived leaf's margin is 10 % of its lifetime", async () => {
  // A 9 min lifetime (NotAfter = NotBefore + TTL, as Consul's): the margin is 54 s.
  await using dev = await devAgent({ leafTtlMs: 9 * 60_000 });
  await using agent = clientFor(dev);
  await using api = await connect({ service: "api", agent });
  const { notBefore, notAfter } = api.material.leaf!.info;
  const margin = (notAfter.getTime() - notBefore.getTime()) / 10;
  assert.equal(margin, 54_000);
  const end = notAfter.getTime();
  assert.deepEqual(readinessProblems(api, end - margin - 1), []);
  assert.deepEqual(readinessProblems(api, end - margin), [
    `leaf certificate expires in ${Math.round(margin / 1000)} s and has not been renewed`,
  ]);
});

Deno.test("readiness: before the first leaf and roots, the phase and both missing, then the subject's own problems", async () => {
  await using dev = await devAgent();
  await using agent = clientFor(dev);
  const allowLeaf = dev.faults.add({ path: "/v1/agent/connect/ca/leaf/web", status: 403 });
  const allowRoots = dev.faults.add({ path: "/v1/agent/connect/ca/roots", status: 500 });
  await using web = new ConnectService({ service: "web", agent }, false);
  await eventually(() => web.problems.length === 2, 5000, "both refusals among the problems");
  const problems = readinessProblems(web);
  assert.deepEqual(problems.slice(0, 3), [
    "phase is starting",
    "no leaf certificate yet",
    "no CA roots yet",
  ]);
  assert.deepEqual(problems.slice(3), [...web.problems], "the subject's lines come last, whole");
  allowRoots();
  allowLeaf();
  await web.ready;
  await eventually(() => readinessProblems(web).length === 0, 5000, "ready");
});

Deno.test("readiness: roots without the leaf's issuer make it not ready; a stopped subject says its phase", async () => {
  await using dev = await devAgent();
  await using other = await devAgent();
  await using agent = clientFor(dev);
  await using otherAgent = clientFor(other);
  const api = await connect({ service: "api", agent });
  const foreign = (await otherAgent.roots()).value;
  const remove = dev.faults.add({
    path: "/v1/agent/connect/ca/roots",
    status: 200,
    body: JSON.stringify(foreign),
  });
  await dev.rotateCA(); // wakes the roots watch, which now reads the foreign roots
  await eventually(() => api.material.leafTrusted === false, 5000, "the mismatch to be seen");
  assert.deepEqual(readinessProblems(api), [
    "leaf certificate does not chain to any current CA root (renewal due)",
  ]);
  remove();
  await dev.rotateCA();
  await eventually(() => readinessProblems(api).length === 0, 10_000, "trust to come back");
  await api.close();
  assert.deepEqual(readinessProblems(api), ["phase is stopped"]);
});
