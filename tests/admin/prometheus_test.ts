import assert from "node:assert/strict";
import { Registry } from "../../src/admin/prometheus.ts";
import { nth } from "../_helpers.ts";
import { parseExposition } from "./_prometheus.ts";

Deno.test("prometheus: label values and help text are escaped; histograms are cumulative", () => {
  const r = new Registry();
  r.counter("t_events_total", "Events.\nSecond line with \\ backslash.").inc({
    path: 'a "quoted"\\path\nnext',
  }, 2);
  const h = r.histogram("t_latency_seconds", "Latency.", [0.1, 1]);
  h.observe({ op: "x" }, 0.05);
  h.observe({ op: "x" }, 0.5);
  h.observe({ op: "x" }, 5);
  const text = r.render();
  assert.ok(text.includes("# HELP t_events_total Events.\\nSecond line with \\\\ backslash."));
  assert.ok(text.includes('t_events_total{path="a \\"quoted\\"\\\\path\\nnext"} 2'));
  const parsed = parseExposition(text);
  assert.equal(nth(parsed.samples, 0, "sample").labels.path, 'a "quoted"\\path\nnext');
  assert.equal(parsed.value("t_latency_seconds_bucket", { le: "0.1" }), 1);
  assert.equal(parsed.value("t_latency_seconds_bucket", { le: "1" }), 2);
  assert.equal(parsed.value("t_latency_seconds_bucket", { le: "+Inf" }), 3);
  assert.equal(parsed.value("t_latency_seconds_sum"), 5.55);
});

Deno.test("prometheus: counters must end in _total and never go down; names are checked", () => {
  const r = new Registry();
  assert.throws(() => r.counter("t_events", "x"), /must end in _total/);
  assert.throws(() => r.gauge("bad-name", "x"), /invalid metric name/);
  const c = r.counter("t_ok_total", "x");
  assert.throws(() => c.inc({}, -1), /only go up/);
  assert.throws(() => r.counter("t_ok_total", "again"), /duplicate/);
});
