import assert from "node:assert/strict";
import { OperatorClient } from "../../src/agent/operator.ts";
import { type AccessLogRecord, startAccessLog } from "../../src/proxy/access_log.ts";
import { parseFlags } from "../../src/cli/flags.ts";
import { eventually } from "../_helpers.ts";
import { mesh } from "./_mesh.ts";
import { roundTrip, tcpClient } from "./_net.ts";

Deno.test("access log: one line per connection at close, and per refusal, with the reason", async () => {
  await using m = await mesh();
  const lines: AccessLogRecord[] = [];
  const stop = startAccessLog(m.dbProxy.events, { write: (l) => lines.push(JSON.parse(l)) });
  assert.equal(
    new TextDecoder().decode(await roundTrip(await tcpClient(m.upstreamPort), "abc")),
    "abc",
  );
  await new OperatorClient(m.agent).upsertIntention("web", "db", { Action: "deny" });
  await roundTrip(await tcpClient(m.upstreamPort), "no").catch(() => {});
  await eventually(() => lines.length === 2);
  const [closed, refused] = lines;
  assert.ok(closed && refused, "a line for the connection and one for the refusal");
  assert.equal(closed.outcome, "closed");
  assert.equal(closed.direction, "inbound");
  assert.equal(closed.listener, "inbound:db");
  assert.match(closed.peer!, /\/svc\/web$/);
  assert.match(closed.remote!, /^127\.0\.0\.1:\d+$/);
  assert.equal(closed.bytesIn, 3);
  assert.equal(closed.bytesOut, 3);
  assert.ok(closed.durationMs! >= 0);
  assert.equal(refused.outcome, "refused");
  assert.equal(refused.reason, "denied");
  assert.match(refused.peer!, /\/svc\/web$/);
  stop();
});

Deno.test("access log: sampling keeps a fraction; the flag checks its range", async () => {
  await using m = await mesh();
  const lines: string[] = [];
  let n = 0;
  const stop = startAccessLog(m.dbProxy.events, {
    write: (l) => lines.push(l),
    sample: 0.5,
    random: () => (n++ % 2 ? 0.9 : 0.1), // keep every other one
  });
  for (let i = 0; i < 4; i++) await roundTrip(await tcpClient(m.upstreamPort), "x");
  await eventually(() => n === 4);
  assert.equal(lines.length, 2);
  stop();
  assert.equal(parseFlags(["-service", "a", "-access-log", "-"], {}).accessLog, "-");
  assert.throws(
    () => parseFlags(["-service", "a", "-access-log-sample", "2"], {}),
    /-access-log-sample: "2" must be a number from 0 to 1/,
  );
});
