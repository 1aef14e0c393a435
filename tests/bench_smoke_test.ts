// `deno task bench --smoke`: the benchmark runs end to end (not how fast). Skips loudly when the
// Debian tools are missing and cannot be installed. Consul's built-in proxy is in the smoke run
// when a Consul binary is there (it adds about 7 s); without one the bench must say it skipped it.
import assert from "node:assert/strict";
import { consulBinary } from "../bench/tunnels.ts";

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
    const consul = consulBinary() !== undefined;
    const tunnels = [
      "direct",
      "meshgate",
      "haproxy",
      "stunnel",
      ...consul ? ["consul-builtin"] : [],
    ];
    for (const tunnel of tunnels) {
      // A figure may be "–" when the machine is too busy for it; the row must be there.
      assert.match(
        out,
        new RegExp(`^\\| ${tunnel} \\| [\\d–]+ \\| [\\d–]+ \\| [\\d–]+ \\|`, "m"),
        out,
      );
    }
    assert.match(out, /^summary: new connections\/s: meshgate [\d–]+ vs haproxy [\d–]+/m);
    // Memory per idle connection, per side, per proxy and per proxy as left (before meshgate's
    // forced collection), for every tunnel but direct: a figure, never "–" (its 50 connections
    // each carry a request and its answer, which must work; the figure itself is noise at that
    // size and may be negative).
    for (const tunnel of tunnels.filter((t) => t !== "direct")) {
      assert.match(
        out,
        new RegExp(`^\\| ${tunnel}( \\| -?[\\d.]+){4} \\|$`, "m"),
        out,
      );
    }
    if (consul) {
      assert.match(out, /^summary: new connections\/s: .* vs consul-builtin [\d–]+/m);
    } else {
      assert.match(out, /consul-builtin SKIPPED: no Consul binary/);
    }
  },
});
