// `deno task bench --smoke`: the benchmark runs end to end (not how fast). Skips loudly when the
// Debian tools are missing and cannot be installed.
import assert from "node:assert/strict";

const tools = ["stunnel4", "haproxy", "iperf3", "wrk", "nginx"];
const missing = [];
for (const t of tools) {
  const r = await new Deno.Command("sh", { args: ["-c", `command -v ${t}`], stdout: "null" })
    .output();
  if (!r.success) missing.push(t);
}
if (missing.length) {
  console.warn(`\n*** bench_smoke_test.ts: SKIPPED — missing ${missing.join(", ")} ***\n`);
}

Deno.test({
  name: "bench: the smoke run measures every tunnel and prints the table",
  ignore: missing.length > 0,
  sanitizeResources: false,
  async fn() {
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("../bench/main.ts", import.meta.url).pathname, "--smoke"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const out = new TextDecoder().decode(r.stdout);
    assert.equal(r.code, 0, out + new TextDecoder().decode(r.stderr));
    for (const tunnel of ["direct", "meshgate", "haproxy", "stunnel"]) {
      // A figure may be "–" when the machine is too busy for it; the row must be there.
      assert.match(
        out,
        new RegExp(`^\\| ${tunnel} \\| [\\d–]+ \\| [\\d–]+ \\| [\\d–]+ \\|`, "m"),
        out,
      );
    }
    assert.match(out, /^summary: new connections\/s: meshgate [\d–]+ vs haproxy [\d–]+/m);
  },
});
