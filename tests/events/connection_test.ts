// The refusal vocabulary: REFUSAL_REASONS lists every RefusalReason once (metrics pre-set a
// series per reason, so a reason missing from the list would be a series that appears late).
import assert from "node:assert/strict";
import { REFUSAL_REASONS, type RefusalReason } from "../../src/events/connection.ts";

// Type-level half: a record keyed by the union. Adding a reason to RefusalReason without adding
// it here, or removing one, fails type-checking of this test.
const EVERY_REASON: Record<RefusalReason, true> = {
  no_cert: true,
  bad_chain: true,
  bad_identity: true,
  denied: true,
  authorize_error: true,
  limit: true,
  handshake_timeout: true,
  authorize_timeout: true,
  handshake: true,
  app_unreachable: true,
  no_endpoint: true,
  chain_unavailable: true,
  endpoints_unavailable: true,
  upstream_unreachable: true,
  leaf_expired: true,
};

// And the list's elements must be reasons (a typo in REFUSAL_REASONS fails to compile there).
type Listed = (typeof REFUSAL_REASONS)[number];
const listedAreReasons: [Listed] extends [RefusalReason] ? true : false = true;

Deno.test("REFUSAL_REASONS lists every RefusalReason exactly once", () => {
  assert.ok(listedAreReasons);
  assert.deepEqual([...REFUSAL_REASONS].sort(), Object.keys(EVERY_REASON).sort());
  assert.equal(new Set(REFUSAL_REASONS).size, REFUSAL_REASONS.length, "no duplicates");
});

Deno.test("refusal reasons are metric-label safe: lower snake case", () => {
  for (const reason of REFUSAL_REASONS) assert.match(reason, /^[a-z]+(_[a-z]+)*$/);
  // The former `timeout` label is split in two (#17.2) and must not come back.
  assert.ok(!(REFUSAL_REASONS as readonly string[]).includes("timeout"));
});
