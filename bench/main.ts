// `deno task bench`: meshgate against direct, stunnel and haproxy, all measured in one run so
// that the ratios mean something on a noisy machine. `--smoke` is the 10-second CI variant (that
// it runs, not how fast). Installs the Debian tools it needs when they are missing, and says so.
import {
  direct,
  freePort,
  haproxyPair,
  listening,
  meshgatePair,
  spawn,
  stunnelPair,
  type Tunnel,
} from "./tunnels.ts";
import { measurePrimitives, type PrimitiveCost } from "./primitives.ts";

const smoke = Deno.args.includes("--smoke");
const reps = smoke ? 1 : Number(flag("--reps") ?? 3);
const seconds = smoke ? 1 : Number(flag("--seconds") ?? 5);
const idleConns = smoke ? 50 : 2000;

function flag(name: string): string | undefined {
  const i = Deno.args.indexOf(name);
  return i >= 0 ? Deno.args[i + 1] : undefined;
}

const TOOLS: [string, string][] = [
  ["stunnel4", "stunnel4"],
  ["haproxy", "haproxy"],
  ["iperf3", "iperf3"],
  ["wrk", "wrk"],
  ["nginx", "nginx-light"],
];

async function have(cmd: string): Promise<boolean> {
  const r = await new Deno.Command("sh", { args: ["-c", `command -v ${cmd}`], stdout: "null" })
    .output();
  return r.success;
}

async function ensureTools(): Promise<void> {
  const missing: string[] = [];
  for (const [cmd, pkg] of TOOLS) if (!await have(cmd)) missing.push(pkg);
  if (!missing.length) return;
  console.log(`bench: installing ${missing.join(", ")} from Debian (apt-get)…`);
  const r = await new Deno.Command("apt-get", {
    args: ["install", "-y", "--no-install-recommends", ...missing],
    stdout: "null",
    stderr: "piped",
  }).output().catch((e) => ({ success: false, stderr: new TextEncoder().encode(String(e)) }));
  if (!r.success) {
    throw new Error(
      `bench: could not install ${missing.join(", ")} (apt-get: ` +
        `${new TextDecoder().decode(r.stderr).trim().split("\n").at(-1)}); install them and rerun`,
    );
  }
}

async function run(cmd: string, args: string[]): Promise<string> {
  const r = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const out = new TextDecoder().decode(r.stdout);
  if (!r.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(r.stderr) || out}`);
  }
  return out;
}

/** MB/s through `port` with iperf3 (`parallel` streams). */
async function throughput(port: number, parallel: number): Promise<number> {
  const out = await run("iperf3", [
    "-c",
    "127.0.0.1",
    "-p",
    String(port),
    "-t",
    String(seconds),
    "-P",
    String(parallel),
    "-J",
  ]);
  const j = JSON.parse(out);
  const bps = j.end?.sum_received?.bits_per_second;
  if (typeof bps !== "number") throw new Error(`iperf3: ${j.error ?? "no result"}`);
  return bps / 8 / 1e6;
}

/** Runs a measurement, retrying twice (a tunnel may still be warming up); NaN if it fails. */
async function measure<T>(what: string, fn: () => Promise<T>, fallback: T): Promise<T> {
  for (let attempt = 1; attempt <= 3; attempt++) {
    try {
      return await fn();
    } catch (err) {
      console.log(`bench: ${what} failed (attempt ${attempt}): ${(err as Error).message}`);
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  return fallback;
}

/** Requests/s, p50 and p99 (ms) with wrk: 50 connections, keep-alive or a new one per request. */
async function http(port: number, close: boolean) {
  const out = await run("wrk", [
    "-t2",
    "-c50",
    `-d${seconds}s`,
    "--latency",
    ...(close ? ["-H", "Connection: close"] : []),
    `http://127.0.0.1:${port}/1k`,
  ]);
  const ms = (label: string) => {
    const m = new RegExp(`^\\s*${label}\\s+([\\d.]+)(us|ms|s)`, "m").exec(out);
    if (!m) return NaN;
    return Number(m[1]) * (m[2] === "us" ? 0.001 : m[2] === "s" ? 1000 : 1);
  };
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN);
  const errors = /Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)/.exec(out)?.[0];
  return { rps, p50: ms("50%"), p99: ms("99%"), errors };
}

/** CPU seconds (user + system, all threads) the processes used so far; NaN when unreadable. */
function cpuSeconds(pids: number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const fields = Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1].split(" ");
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      return NaN;
    }
  }
  return ticks / 100; // USER_HZ
}

/** Runs `fn` and reports the CPU seconds the tunnel's processes spent meanwhile. */
async function withCpu<T>(pids: number[], fn: () => Promise<T>): Promise<[T, number]> {
  const before = cpuSeconds(pids);
  const value = await fn();
  return [value, cpuSeconds(pids) - before];
}

function rssKiB(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
}

/** KiB of resident memory per idle connection held through the tunnel, per proxy process. */
async function idleMemory(t: Tunnel): Promise<number> {
  if (!t.pids.length) return NaN;
  const before = t.pids.map(rssKiB);
  const conns: Deno.Conn[] = [];
  for (let i = 0; i < idleConns; i++) {
    conns.push(await Deno.connect({ hostname: "127.0.0.1", port: t.port }));
    if (i % 100 === 99) await new Promise((r) => setTimeout(r, 50));
  }
  await new Promise((r) => setTimeout(r, 2000));
  const after = t.pids.map(rssKiB);
  for (const c of conns) c.close();
  await new Promise((r) => setTimeout(r, 1000));
  const perProxy = after.map((a, i) => (a - before[i]) / idleConns);
  return perProxy.reduce((x, y) => x + y, 0) / perProxy.length;
}

/** Mean authorize call and handshake time on meshgate's server side (from its /metrics). */
async function authorizeShare(t: Tunnel) {
  if (!t.adminUrl) return undefined;
  const text = await (await fetch(`${t.adminUrl}metrics`)).text();
  const v = (name: string) => Number(new RegExp(`^${name} ([\\d.e+-]+)$`, "m").exec(text)?.[1]);
  return {
    authorizeMs: v("meshgate_authorize_seconds_sum") / v("meshgate_authorize_seconds_count") *
      1000,
    handshakeMs: v("meshgate_tls_handshake_seconds_sum") /
      v("meshgate_tls_handshake_seconds_count") * 1000,
    calls: v("meshgate_authorize_seconds_count"),
  };
}

const median = (xs: number[]) => {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : NaN;
};

interface Figures {
  mbps1: number[];
  mbps4: number[];
  ka: { rps: number; p50: number; p99: number }[];
  nc: { rps: number; p50: number; p99: number }[];
  idle: number[];
  /** CPU of the tunnel's processes: ms per 100 MB (1 stream), µs per request. */
  cpuMb: number[];
  cpuKa: number[];
  cpuNc: number[];
  /** CPU of the agent (authorize) per new connection, µs; meshgate only. */
  agentNc: number[];
}

async function main() {
  await ensureTools();
  // Before any tunnel starts, so that nothing else competes for the cores.
  console.log("bench: Deno's socket primitives…");
  const floor = await measurePrimitives(smoke ? 2000 : 20_000, reps);
  const dir = await Deno.makeTempDir({ prefix: "meshgate-bench-" });
  // Backends: nginx serving 1 KiB, and an iperf3 server.
  const httpPort = freePort();
  await Deno.mkdir(`${dir}/www`);
  await Deno.writeTextFile(`${dir}/www/1k`, "x".repeat(1024));
  await Deno.writeTextFile(
    `${dir}/nginx.conf`,
    `worker_processes 1;\npid ${dir}/nginx.pid;\nerror_log stderr;\n` +
      `events { worker_connections 8192; }\nhttp {\n  access_log off;\n` +
      `  client_body_temp_path ${dir}/tmp;\n  proxy_temp_path ${dir}/tmp;\n` +
      `  fastcgi_temp_path ${dir}/tmp;\n  uwsgi_temp_path ${dir}/tmp;\n  scgi_temp_path ${dir}/tmp;\n` +
      `  keepalive_requests 1000000;\n` +
      `  server { listen 127.0.0.1:${httpPort}; root ${dir}/www; }\n}\n`,
  );
  await Deno.mkdir(`${dir}/tmp`);
  const nginx = spawn("nginx", ["-c", `${dir}/nginx.conf`, "-p", dir, "-g", "daemon off;"]);
  const iperfPort = freePort();
  const iperf = spawn("iperf3", ["-s", "-p", String(iperfPort)]);
  await listening(httpPort, "nginx");
  await listening(iperfPort, "iperf3");

  const kinds: [string, (backend: number, tag: string) => Promise<Tunnel>][] = [
    ["direct", (b) => Promise.resolve(direct(b))],
    ["meshgate", (b, tag) => meshgatePair(b, `bench-${tag}`)],
    // The same pair reusing authorize answers for 60 s (forgotten on intention changes).
    [
      "meshgate-fresh",
      (b, tag) =>
        meshgatePair(b, `bench-${tag}-f`, ["-authorize-fresh", "60000"], "meshgate-fresh"),
    ],
    ["haproxy", async (b, tag) => haproxyPair(await sub(dir, `haproxy-${tag}`), b)],
    // The same pair without TLS session resumption: a full handshake per connection.
    [
      "haproxy-full",
      async (b, tag) =>
        haproxyPair(await sub(dir, `haproxy-full-${tag}`), b, {
          reuse: false,
          name: "haproxy-full",
        }),
    ],
    ["stunnel", async (b, tag) => stunnelPair(await sub(dir, `stunnel-${tag}`), b)],
  ];
  const only = flag("--only")?.split(",");
  if (only) {
    for (let i = kinds.length - 1; i >= 0; i--) {
      if (kinds[i][0] !== "direct" && !only.includes(kinds[i][0])) kinds.splice(i, 1);
    }
  }
  const results = new Map<
    string,
    Figures & { authz?: Awaited<ReturnType<typeof authorizeShare>> }
  >();
  // Every tunnel runs from the start, and each repetition measures them all in turn, so that
  // a machine that gets faster or slower during the run shifts every tunnel alike.
  const running: { name: string; forHttp: Tunnel; forIperf: Tunnel; figures: Figures }[] = [];
  try {
    for (const [name, start] of kinds) {
      console.log(`bench: starting ${name}…`);
      const figures: Figures = {
        mbps1: [],
        mbps4: [],
        ka: [],
        nc: [],
        idle: [],
        cpuMb: [],
        cpuKa: [],
        cpuNc: [],
        agentNc: [],
      };
      const forHttp = await start(httpPort, "http");
      running.push({ name, forHttp, forIperf: await start(iperfPort, "iperf"), figures });
    }
    for (let r = 0; r < reps; r++) {
      for (const { name, forHttp, forIperf, figures } of running) {
        console.log(`bench: repetition ${r + 1}/${reps}: ${name}…`);
        const none = { rps: NaN, p50: NaN, p99: NaN };
        const [mbps1, cpu1] = await withCpu(
          forIperf.pids,
          () => measure(`${name} 1 stream`, () => throughput(forIperf.port, 1), NaN),
        );
        figures.mbps1.push(mbps1);
        figures.cpuMb.push(cpu1 * 1000 / (mbps1 * seconds / 100));
        figures.mbps4.push(
          await measure(`${name} 4 streams`, () => throughput(forIperf.port, 4), NaN),
        );
        const [ka, cpuKa] = await withCpu(
          forHttp.pids,
          () => measure(`${name} keep-alive`, () => http(forHttp.port, false), none),
        );
        figures.ka.push(ka);
        figures.cpuKa.push(cpuKa * 1e6 / (ka.rps * seconds));
        const agentBefore = forHttp.agentPid ? cpuSeconds([forHttp.agentPid]) : NaN;
        const [nc, cpuNc] = await withCpu(
          forHttp.pids,
          () => measure(`${name} new connections`, () => http(forHttp.port, true), none),
        );
        figures.nc.push(nc);
        figures.cpuNc.push(cpuNc * 1e6 / (nc.rps * seconds));
        const agentCpu = forHttp.agentPid ? cpuSeconds([forHttp.agentPid]) - agentBefore : NaN;
        figures.agentNc.push(agentCpu * 1e6 / (nc.rps * seconds));
      }
    }
    for (const { name, forHttp, figures } of running) {
      figures.idle.push(await idleMemory(forHttp));
      results.set(name, { ...figures, authz: await authorizeShare(forHttp) });
    }
  } finally {
    for (const { forHttp, forIperf } of running) {
      await forHttp.close();
      await forIperf.close();
    }
    await nginx.stop();
    await iperf.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  report(results, floor);
}

async function sub(dir: string, name: string): Promise<string> {
  await Deno.mkdir(`${dir}/${name}`);
  return `${dir}/${name}`;
}

function report(
  results: Map<
    string,
    Figures & { authz?: { authorizeMs: number; handshakeMs: number; calls: number } }
  >,
  floor: PrimitiveCost[],
) {
  const row = (name: string) => {
    const f = results.get(name)!;
    return {
      mbps1: median(f.mbps1),
      mbps4: median(f.mbps4),
      ka: median(f.ka.map((x) => x.rps)),
      kaP50: median(f.ka.map((x) => x.p50)),
      kaP99: median(f.ka.map((x) => x.p99)),
      nc: median(f.nc.map((x) => x.rps)),
      ncP50: median(f.nc.map((x) => x.p50)),
      ncP99: median(f.nc.map((x) => x.p99)),
      idle: median(f.idle),
      cpuMb: median(f.cpuMb),
      cpuKa: median(f.cpuKa),
      cpuNc: median(f.cpuNc),
      agentNc: median(f.agentNc),
    };
  };
  const names = [...results.keys()];
  const rows = new Map(names.map((n) => [n, row(n)]));
  const d = rows.get("direct")!;
  const h = rows.get("haproxy");
  const hf = rows.get("haproxy-full");
  const fmt = (x: number, digits = 0) => Number.isNaN(x) ? "–" : x.toFixed(digits);
  const ratio = (x: number, base: number | undefined, higherIsBetter = true) =>
    base === undefined || Number.isNaN(x) || Number.isNaN(base) || base === 0
      ? "–"
      : `${(higherIsBetter ? x / base : base / x).toFixed(2)}×`;
  const lines = [
    `# meshgate benchmark (${new Date().toISOString().slice(0, 10)}, ${reps} repetition(s), ` +
    `${seconds} s each, medians; ${Deno.build.os}/${Deno.build.arch}, ` +
    `${navigator.hardwareConcurrency} cores)`,
    "",
    "| tunnel | 1 stream MB/s | 4 streams MB/s | keep-alive req/s | p50 ms | p99 ms | new conn req/s | p50 ms | p99 ms | idle KiB/conn/proxy |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ...names.map((n) => {
      const r = rows.get(n)!;
      return `| ${n} | ${fmt(r.mbps1)} | ${fmt(r.mbps4)} | ${fmt(r.ka)} | ${fmt(r.kaP50, 2)} | ` +
        `${fmt(r.kaP99, 2)} | ${fmt(r.nc)} | ${fmt(r.ncP50, 2)} | ${fmt(r.ncP99, 2)} | ` +
        `${fmt(r.idle, 1)} |`;
    }),
    "",
    "CPU the tunnel's own processes spent (both sides together; lower is better — a measure " +
    "of cost that does not depend on how the two cores were shared):",
    "",
    "| tunnel | ms per 100 MB, 1 stream | µs per keep-alive request | µs per new connection | agent µs per new connection (authorize) |",
    "| --- | --- | --- | --- | --- |",
    ...names.filter((n) => n !== "direct").map((n) => {
      const r = rows.get(n)!;
      return `| ${n} | ${fmt(r.cpuMb)} | ${fmt(r.cpuKa)} | ${fmt(r.cpuNc)} | ${fmt(r.agentNc)} |`;
    }),
    "",
    "Deno's own socket layers, in one process (CPU per 1 KiB round trip: two writes and two " +
    "reads; best of the repetitions) — the floor under a Deno proxy's per-request cost:",
    "",
    "| primitive | µs per round trip |",
    "| --- | --- |",
    ...floor.map((p) => `| ${p.name} | ${fmt(p.cpuUs, 1)} |`),
    "",
    "Ratios of meshgate (higher is better; for latency, base ÷ meshgate):",
    "",
    "| figure | vs direct | vs haproxy | vs haproxy-full (no session resumption) |",
    "| --- | --- | --- | --- |",
  ];
  const m = rows.get("meshgate");
  if (m) {
    const fig: [string, number, number, number | undefined, boolean, number?][] = [
      ["1 stream MB/s", m.mbps1, d.mbps1, h?.mbps1, true],
      ["4 streams MB/s", m.mbps4, d.mbps4, h?.mbps4, true],
      ["keep-alive req/s", m.ka, d.ka, h?.ka, true],
      ["keep-alive p99", m.kaP99, d.kaP99, h?.kaP99, false],
      ["new connections/s", m.nc, d.nc, h?.nc, true, hf?.nc],
      ["new connection p99", m.ncP99, d.ncP99, h?.ncP99, false, hf?.ncP99],
      ["idle KiB per connection", m.idle, NaN, h?.idle, false],
      ["CPU per 100 MB", m.cpuMb, NaN, h?.cpuMb, false],
      ["CPU per keep-alive request", m.cpuKa, NaN, h?.cpuKa, false],
      ["CPU per new connection", m.cpuNc, NaN, h?.cpuNc, false, hf?.cpuNc],
    ];
    const f = rows.get("meshgate-fresh");
    if (f) {
      fig.push(
        ["new connections/s, -authorize-fresh", f.nc, d.nc, h?.nc, true, hf?.nc],
        ["new connection p99, -authorize-fresh", f.ncP99, d.ncP99, h?.ncP99, false, hf?.ncP99],
      );
    }
    for (const [label, x, base, hbase, up, hfbase] of fig) {
      lines.push(
        `| ${label} | ${ratio(x, base, up)} | ${ratio(x, hbase, up)} | ` +
          `${hfbase === undefined ? "–" : ratio(x, hfbase, up)} |`,
      );
    }
    const a = results.get("meshgate")!.authz;
    if (a) {
      lines.push(
        "",
        `Authorize overhead (meshgate server side, ${a.calls} calls during the runs): ` +
          `${fmt(a.authorizeMs, 2)} ms per authorize call, ${fmt(a.handshakeMs, 2)} ms per ` +
          `TLS handshake (means).`,
      );
    }
  }
  const text = lines.join("\n") + "\n";
  console.log("\n" + text);
  if (m) {
    for (
      const [label, x, hbase] of [
        ["throughput 1 stream", m.mbps1, h?.mbps1],
        ["throughput 4 streams", m.mbps4, h?.mbps4],
        ["keep-alive req/s", m.ka, h?.ka],
        ["new connections/s", m.nc, h?.nc],
      ] as const
    ) {
      console.log(
        `summary: ${label}: meshgate ${fmt(x)} vs haproxy ${fmt(hbase ?? NaN)} ` +
          `(${ratio(x, hbase)})`,
      );
    }
  }
  if (!smoke) {
    Deno.mkdirSync(new URL("./results", import.meta.url), { recursive: true });
    Deno.writeTextFileSync(new URL("./results/latest.md", import.meta.url), text);
    console.log("bench: wrote bench/results/latest.md");
  }
}

if (import.meta.main) await main();
