// Every example runs as documented.
import assert from "node:assert/strict";
import { nth } from "./_helpers.ts";

Deno.test({
  name: "examples/demo.ts shows traffic, a deny and an allow, then keeps running until SIGTERM",
  sanitizeResources: false,
  async fn() {
    const child = new Deno.Command(Deno.execPath(), {
      // The demo task's own permissions (least privilege).
      args: [
        "run",
        "--allow-net",
        "--allow-env=DEMO_PAUSE_MS",
        new URL("../examples/demo.ts", import.meta.url).pathname,
      ],
      stdout: "piped",
      stderr: "null",
      env: { DEMO_PAUSE_MS: "0" },
    }).spawn();
    let out = "";
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const deadline = Date.now() + 60_000;
    while (!out.includes("Ctrl-C to stop.") && Date.now() < deadline) {
      const { value, done } = await reader.read();
      if (done) break;
      out += value;
    }
    child.kill("SIGTERM");
    await reader.cancel();
    await child.status;
    // The pattern's one group is required, so every match sets it.
    const calls = [...out.matchAll(/web → (?:its upstream.*api|api now):\s+(.*)/g)].map((m) =>
      m[1]!
    );
    assert.equal(calls.length, 3, out);
    assert.match(nth(calls, 0, "first call"), /^200 \{"service":"api"/);
    assert.match(nth(calls, 1, "call after the deny"), /^refused/);
    assert.match(nth(calls, 2, "call after the allow"), /^200 /);
    assert.match(out, /web's sidecar: http:\/\/127\.0\.0\.1:\d+\//, "the dashboard URL is printed");
  },
});
