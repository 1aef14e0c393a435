// -pprof-addr's server: V8 CPU and allocation profiles at Go's pprof paths, Go's rules on the
// window, no heap snapshot, and a clear word when Deno does not allow the inspector.
import assert from "node:assert/strict";
import { startPprof } from "../../src/cli/pprof.ts";
import { eventually, spawnLogged } from "../_helpers.ts";

const MAIN = new URL("../../src/cli/main.ts", import.meta.url).pathname;

Deno.test("pprof: CPU and heap-allocation profiles in V8's formats; Go-only profiles explained", async () => {
  await using pprof = await startPprof({ hostname: "127.0.0.1", port: 0, timeoutMs: 3000 });
  assert.match(pprof.url, /^http:\/\/127\.0\.0\.1:\d+\/debug\/pprof\/$/);
  const index = await fetch(pprof.url);
  assert.equal(index.status, 200);
  assert.match(await index.text(), /N must be less than the server timeout \(3s/);

  // Some work to sample while the profile runs.
  let spin = true;
  const work = (async () => {
    while (spin) {
      JSON.stringify(Array.from({ length: 2000 }, (_, i) => ({ i })));
      await new Promise((r) => setTimeout(r, 1));
    }
  })();
  const [cpu, heap] = await Promise.all([
    fetch(`${pprof.url}profile?seconds=1`),
    fetch(`${pprof.url}heap?seconds=1`),
  ]);
  spin = false;
  await work;
  assert.equal(cpu.status, 200);
  assert.match(cpu.headers.get("content-disposition") ?? "", /meshgate\.cpuprofile/);
  const profile = await cpu.json();
  assert.ok(profile.nodes.length > 0 && profile.endTime > profile.startTime, "a .cpuprofile");
  assert.equal(heap.status, 200);
  assert.match(heap.headers.get("content-disposition") ?? "", /meshgate\.heapprofile/);
  assert.ok((await heap.json()).head?.callFrame, "a .heapprofile (sampling heap profile)");

  const goroutine = await fetch(`${pprof.url}goroutine`);
  assert.equal(goroutine.status, 404);
  assert.match(await goroutine.text(), /no goroutines/);
  const cmdline = await fetch(`${pprof.url}cmdline`);
  assert.equal(cmdline.status, 404, "the command line may hold a token");
  await cmdline.body?.cancel();
  const other = await fetch(new URL("/metrics", pprof.url));
  assert.equal(other.status, 404);
  await other.body?.cancel();
});

Deno.test("pprof: a window not shorter than -pprof-timeout is a 400, as Go's WriteTimeout check", async () => {
  await using pprof = await startPprof({ hostname: "127.0.0.1", port: 0, timeoutMs: 2000 });
  const res = await fetch(`${pprof.url}profile?seconds=2`);
  assert.equal(res.status, 400);
  assert.match(await res.text(), /exceeds server's WriteTimeout: 2s is not less than/);
});

Deno.test("pprof: one CPU profile at a time; close() ends a running one at once", async () => {
  const pprof = await startPprof({ hostname: "127.0.0.1", port: 0, timeoutMs: 60_000 });
  const first = fetch(`${pprof.url}profile?seconds=30`);
  // The second waits for the first to hold the profiler.
  await new Promise((r) => setTimeout(r, 200));
  const second = await fetch(`${pprof.url}profile?seconds=1`);
  assert.equal(second.status, 500);
  assert.match(await second.text(), /already in use/);
  const t0 = Date.now();
  await pprof.close();
  const res = await first;
  assert.equal(res.status, 503);
  await res.body?.cancel();
  assert.ok(Date.now() - t0 < 5000, "close() did not wait out the 30 s window");
});

Deno.test("pprof: an address in use rejects (the command runs on without it)", async () => {
  await using pprof = await startPprof({ hostname: "127.0.0.1", port: 0, timeoutMs: 2000 });
  const port = Number(new URL(pprof.url).port);
  await assert.rejects(
    startPprof({ hostname: "127.0.0.1", port, timeoutMs: 2000 }),
    Deno.errors.AddrInUse,
  );
});

Deno.test({
  name: "proxy command: -pprof-addr without --allow-sys=inspector says what to add and runs on",
  sanitizeResources: false,
  async fn() {
    const p = spawnLogged(Deno.execPath(), [
      "run",
      "--allow-net",
      "--allow-read",
      MAIN,
      "-service",
      "web",
      "-upstream",
      "db:21714",
      "-http-addr",
      "127.0.0.1:21713", // this helper's port range; nothing listens: retried in the background
      "-pprof-addr",
      "127.0.0.1:0",
      "-admin-bind",
      "",
    ]);
    let running = true;
    try {
      await eventually(() => p.logs().includes("running without -pprof-addr"), 20_000);
      assert.match(p.logs(), /--allow-sys=inspector/);
      p.child.kill("SIGTERM");
      running = false;
      assert.equal(await p.exited(), 0, `ran on until SIGTERM:\n${p.logs()}`);
    } finally {
      if (running) {
        try {
          p.child.kill("SIGTERM");
        } catch { /* already gone */ }
        await p.exited();
      }
    }
  },
});

Deno.test("pprof: paths and methods outside the profiles are refused with a reason", async () => {
  await using pprof = await startPprof({ hostname: "127.0.0.1", port: 0, timeoutMs: 2000 });
  const base = new URL(pprof.url);
  const get = async (path: string, init?: RequestInit) => {
    const res = await fetch(new URL(path, base), init);
    return [res.status, await res.text()] as const;
  };
  assert.equal((await get("/debug/pprof"))[0], 200, "the index without its slash");
  assert.deepEqual(await get("/debug/pprof/profile", { method: "POST" }), [405, "GET only\n"]);
  assert.deepEqual(await get("/debug/pprof/", { method: "DELETE" }), [405, "GET only\n"]);
  assert.deepEqual(await get("/debug/pprof/profile/extra"), [
    404,
    "not found: see /debug/pprof/\n",
  ]);
  assert.deepEqual(await get("/debug/pprof/nosuch"), [
    404,
    "nosuch: unknown profile; see /debug/pprof/\n",
  ]);
  assert.deepEqual(await get("/debug/pprof/allocs"), [
    404,
    "allocs: use /debug/pprof/heap?seconds=N (sampled allocations); see /debug/pprof/\n",
  ]);
  // A prototype name is no Go-only profile.
  assert.deepEqual(await get("/debug/pprof/constructor"), [
    404,
    "constructor: unknown profile; see /debug/pprof/\n",
  ]);
  // A window too large to be a number of seconds is still a 400, not a crash.
  assert.equal((await get("/debug/pprof/heap?seconds=99999999999999999999999"))[0], 400);
});

Deno.test("pprof: a missing or bad `seconds` is the default window, shortened to fit the timeout", async () => {
  // timeout 2 s: Go's default of 30 s would be refused, so the default becomes 1 s.
  await using pprof = await startPprof({ hostname: "127.0.0.1", port: 0, timeoutMs: 2000 });
  for (const q of ["", "?seconds=abc", "?seconds=-5", "?seconds=0", "?seconds=1.5"]) {
    const t0 = Date.now();
    const res = await fetch(`${pprof.url}heap${q}`);
    assert.equal(res.status, 200, q);
    await res.body?.cancel();
    const ms = Date.now() - t0;
    // 200 already says the window is under the 2 s timeout (Go's 30 s would be a 400); it did
    // run a whole second.
    assert.ok(ms >= 900, `${q}: a 1 s window took ${ms} ms`);
  }
});
