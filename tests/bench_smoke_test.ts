// `deno task bench --smoke` and `bench/workers.ts --smoke`: the benchmarks run end to end (not how
// fast). Skips loudly when the Debian tools are missing and cannot be installed. Consul's
// built-in proxy is in the smoke run when a Consul binary is there (it adds about 7 s); without
// one the bench must say it skipped it.
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

/** Runs `bench/<script> --smoke`; its standard output, once it exited 0. */
async function smoke(script: string): Promise<string> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL(`../bench/${script}`, import.meta.url).pathname, "--smoke"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const out = new TextDecoder().decode(r.stdout);
  assert.equal(r.code, 0, out + new TextDecoder().decode(r.stderr));
  return out;
}

Deno.test({
  name: "bench: the smoke run measures every tunnel and prints the table",
  ignore: missing.length > 0,
  sanitizeResources: false,
  async fn() {
    const out = await smoke("main.ts");
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

Deno.test({
  name:
    "bench/workers.ts: the smoke run measures 1 and 2 workers under every load and prints each table",
  ignore: missing.length > 0,
  sanitizeResources: false,
  async fn() {
    const out = await smoke("workers.ts");
    // A row: where the proxy ran, its workers, a rate, CPU per unit of work, its threads, cores.
    const row = (cpus: string, workers: number) =>
      new RegExp(`^\\| ${cpus} \\| ${workers} \\| \\d+ \\| \\d+ \\| main \\d+ %.* \\|`, "gm");
    // Five tables with both thread counts (saturating and light, keep-alive and new connections;
    // the fixed rate), and the matched-load table with one thread only.
    for (const cpus of ["CPU 1 only", "CPUs 0-1"]) {
      assert.equal(out.match(row(cpus, 1))?.length, 6, `${cpus}, 1 worker:\n${out}`);
      assert.equal(out.match(row(cpus, 2))?.length, 5, `${cpus}, 2 workers:\n${out}`);
    }
    assert.match(out, /worker-1 \d+ %/, "the worker thread's share is shown");
    assert.match(out, /-workers 1: \d+, -workers 2: \d+, -workers 4: \d+ — [\d.]+ MiB per worker/);
  },
});
