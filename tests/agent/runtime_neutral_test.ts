import assert from "node:assert/strict";

// The agent client must run on any runtime with fetch: Deno, Deno Deploy, Bun, Node, Workers.
Deno.test("src/agent imports nothing runtime-specific (no Deno.*, no node:*, no npm:)", async () => {
  const dir = new URL("../../src/agent/", import.meta.url);
  const offenders: string[] = [];
  let files = 0;
  for await (const entry of Deno.readDir(dir)) {
    if (!entry.name.endsWith(".ts")) continue;
    files++;
    const text = await Deno.readTextFile(new URL(entry.name, dir));
    const code = text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "");
    if (/\bDeno\.(?!customInspect)/.test(code.replaceAll('Symbol.for("Deno.customInspect")', ""))) {
      offenders.push(`${entry.name}: uses Deno.*`);
    }
    for (const m of code.matchAll(/from\s+["']([^"']+)["']|import\(\s*["']([^"']+)["']/g)) {
      const spec = m[1] ?? m[2];
      if (!spec.startsWith("./")) offenders.push(`${entry.name}: imports ${spec}`);
    }
  }
  assert.ok(files >= 6, `expected the agent modules, found ${files}`);
  assert.deepEqual(offenders, []);
});
