import assert from "node:assert/strict";

/** What in `code` is runtime-specific, and the relative modules it imports. */
function scan(code: string): { offences: string[]; relative: string[] } {
  const offences: string[] = [];
  const relative: string[] = [];
  if (/\bDeno\.(?!customInspect)/.test(code.replaceAll('Symbol.for("Deno.customInspect")', ""))) {
    offences.push("uses Deno.*");
  }
  for (const m of code.matchAll(/from\s+["']([^"']+)["']|import\(\s*["']([^"']+)["']/g)) {
    const spec = (m[1] ?? m[2])!;
    if (spec.startsWith("./") || spec.startsWith("../")) relative.push(spec);
    else offences.push(`imports ${spec}`);
  }
  return { offences, relative };
}

// The agent client must run on any runtime with fetch: Deno, Deno Deploy, Bun, Node, Workers.
// It may use modules outside src/agent/ (the tree's one timer helper, net/timers.ts) only when
// they, and everything they import, are runtime-neutral too.
Deno.test("src/agent and all it imports use nothing runtime-specific (no Deno.*, node:*, npm:)", async () => {
  const dir = new URL("../../src/agent/", import.meta.url);
  const queue: URL[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (entry.name.endsWith(".ts")) queue.push(new URL(entry.name, dir));
  }
  assert.ok(queue.length >= 6, `expected the agent modules, found ${queue.length}`);
  const seen = new Set<string>();
  const offenders: string[] = [];
  while (queue.length) {
    const url = queue.pop()!;
    if (seen.has(url.href)) continue;
    seen.add(url.href);
    const text = await Deno.readTextFile(url);
    const code = text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "");
    const { offences, relative } = scan(code);
    const name = url.pathname.replace(/.*\/src\//, "src/");
    for (const o of offences) offenders.push(`${name}: ${o}`);
    for (const spec of relative) queue.push(new URL(spec, url));
  }
  assert.ok(
    [...seen].some((u) => u.endsWith("/src/net/timers.ts")),
    "expected the walk to reach net/timers.ts (the agent's timers)",
  );
  assert.deepEqual(offenders, []);
});

Deno.test("the runtime-neutral scan catches what it must refuse", () => {
  assert.deepEqual(scan('import net from "node:net";').offences, ["imports node:net"]);
  assert.deepEqual(scan("const x = Deno.env.get('A');").offences, ["uses Deno.*"]);
  assert.deepEqual(scan('const m = await import("npm:hono");').offences, ["imports npm:hono"]);
  assert.deepEqual(scan('import { a } from "../net/timers.ts";').relative, ["../net/timers.ts"]);
});
