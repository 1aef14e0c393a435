// The dashboard page (src/admin/dashboard.ts) without a browser: one self-contained page whose
// script compiles, whose element IDs exist, and whose wiring to the admin app holds — every URL
// it reads is answered (also when the app is mounted under a prefix), every event it listens to
// is one the app can send, and the `tick` carries what it reads. The page in a real browser:
// dashboard_browser_test.ts.
import assert from "node:assert/strict";
import { Hono } from "hono";
import { createAdminApp } from "../../src/admin/app.ts";
import { dashboardPage } from "../../src/admin/dashboard.ts";
import type { ProxyEvent } from "../../src/events/lifecycle.ts";
import { connect } from "../../src/native/service.ts";
import { clientFor, devAgent, nth } from "../_helpers.ts";

const page = dashboardPage();
const script = nth(
  [...page.matchAll(/<script>([\s\S]*?)<\/script>/g)].map((m) => m[1]),
  0,
  "inline script",
)!;

/** Every event type the app's stream can carry; the type checker keeps this list complete. */
const STREAM_EVENTS: Record<ProxyEvent["type"] | "tick", true> = {
  accepted: true,
  refused: true,
  closed: true,
  revoked: true,
  dial_failed: true,
  leaf: true,
  roots: true,
  config: true,
  endpoints: true,
  watch_error: true,
  phase: true,
  reauthorized: true,
  tick: true,
};

Deno.test("dashboard: one self-contained page whose script compiles", () => {
  assert.match(page, /^<!doctype html>/);
  assert.equal([...page.matchAll(/<script\b/g)].length, 1, "one inline script");
  assert.doesNotMatch(page, /<script[^>]+src=|<link\b|@import|url\(/, "no external assets");
  assert.doesNotMatch(page, /https?:\/\//, "no absolute URL: it works behind any host or prefix");
  // Compiles (does not run): a syntax error in the template string fails here.
  assert.doesNotThrow(() => new Function(script));
});

Deno.test("dashboard: every element the script looks up exists in the page", () => {
  const ids = new Set([...page.matchAll(/\bid="([^"]+)"/g)].map((m) => m[1]));
  const used = [...new Set([...script.matchAll(/\$\("([^"]+)"\)/g)].map((m) => m[1]!))];
  assert.ok(used.length >= 20, `the script's lookups were found (${used.length})`);
  assert.deepEqual(used.filter((id) => !ids.has(id)), [], "looked up but missing");
  // The hooks the browser test waits on.
  for (const testid of ["service", "spiffe", "phase", "leaf-expiry", "upstreams", "conn-out"]) {
    assert.match(page, new RegExp(`data-testid="${testid}"`));
  }
});

Deno.test("dashboard: the events it listens to are events the stream sends", () => {
  const listened = [
    ...[...script.matchAll(/addEventListener\("([a-z_]+)"/g)].map((m) => m[1]!),
    ...[...script.matchAll(/for \(const type of \[([^\]]+)\]\)/g)].flatMap((m) =>
      [...m[1]!.matchAll(/"([a-z_]+)"/g)].map((n) => n[1]!)
    ),
  ].filter((t) => t !== "type");
  assert.ok(listened.includes("tick") && listened.includes("refused"), listened.join());
  assert.deepEqual(listened.filter((t) => !(t in STREAM_EVENTS)), [], "not an event type");
});

Deno.test("dashboard: served at the app's root and under a mount prefix, with every URL it reads", async () => {
  await using dev = await devAgent();
  await using agent = clientFor(dev);
  await using api = await connect({ service: "api", agent });
  const ac = new AbortController();
  const admin = createAdminApp({ proxy: api, tickMs: 10, signal: ac.signal });
  const host = new Hono();
  host.mount("/mesh", admin.fetch);
  // The script's URLs: `base + "…"`, base being the page's path with a trailing slash.
  const paths = [...script.matchAll(/base \+ "([^"]+)"/g)].map((m) => m[1]!);
  assert.deepEqual(paths.toSorted(), [
    "ready",
    "v1/connections?limit=50",
    "v1/events",
    "v1/state",
  ]);
  for (const base of ["/", "/mesh/"]) {
    const request = (path: string) =>
      base === "/" ? admin.request(path) : host.request(`${base}${path}`);
    const root = await request("");
    assert.equal(root.status, 200, base);
    assert.match(root.headers.get("content-type")!, /^text\/html/);
    assert.equal(await root.text(), page);
    for (const path of paths.filter((p) => p !== "v1/events")) {
      const res = await request(path);
      assert.equal(res.status, 200, `${base}${path}`);
      assert.equal(res.headers.get("content-type"), "application/json", `${base}${path}`);
      await res.body?.cancel();
    }
    // The fields the page reads from a tick.
    const events = await request("v1/events");
    assert.equal(events.headers.get("content-type"), "text/event-stream");
    const reader = events.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    while (!/event: tick\ndata: [^\n]+\n/.test(text)) {
      const { value, done } = await reader.read();
      assert.ok(!done, `the stream ended before a tick: ${text}`);
      text += value;
    }
    const tick = JSON.parse(text.match(/event: tick\ndata: ([^\n]+)\n/)![1]!);
    assert.equal(typeof tick.at, "number");
    assert.deepEqual(tick.connections, { inbound: 0, outbound: 0 });
    assert.deepEqual(tick.bytes, { in: 0, out: 0 });
    assert.equal(tick.phase, "ready");
    assert.equal(typeof tick.leafExpiresInSeconds, "number");
    await reader.cancel();
  }
  ac.abort();
});
