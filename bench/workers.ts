// `deno run -A bench/workers.ts [--seconds 5] [--reps 3] [--rate 100] [--rate-only] [--smoke]`: how a meshgate sidecar
// scales with -workers (issue #18.3), measured on the proxy alone.
//
// The unit under test is one meshgate process: the server side of a mesh hop (a registered
// sidecar in front of nginx serving 1 KiB). Everything else is the load, and as cheap as it can
// be so that the proxy is what runs out of CPU: wrk, an haproxy (C, one thread) as the mTLS
// client presenting web's leaf (full handshakes: no-ssl-reuse), nginx, and the test double as
// agent. On a 2-core machine there is no room for a load on its own cores *and* a proxy on two
// more, so the load is pinned to CPU 0 with taskset and the proxy is given:
//
//   - CPU 1 only, -workers 1 and -workers 2: the same core either way. Throughput must not drop
//     and CPU per request must not grow with the second thread (its overhead: the relay, the
//     event messages, two event loops on one core).
//   - CPUs 0-1, -workers 1 and -workers 2: the proxy may use what the load leaves of CPU 0 as
//     well as all of CPU 1. One thread cannot use more than one core, two can: the scaling.
//
// Saturating loads keep both cores ~99 % busy, so a second thread's CPU per connection cannot be
// told from two busy threads sharing a core. A fixed-rate load of new connections (`--rate`, 200/s
// by default, open loop) leaves both cores mostly idle: CPU per connection without contention;
// one thread also runs at half that rate, the load per thread of two threads at the full rate.
//
// Each run reports requests/s (keep-alive and a new connection per request), the proxy's CPU
// per request (all its threads, from /proc/<pid>/stat), how busy each of the proxy's threads
// was (from /proc/<pid>/task/<tid>/stat; the main thread and each `worker-<n>`), and how busy
// each core was (/proc/stat), so the reader can see which resource ran out. It also reads the
// idle proxy's proportional set size with 1, 2 and 4 workers: the memory one more worker costs.
import { freePort, listening, spawn } from "./tunnels.ts";

const smoke = Deno.args.includes("--smoke");
const seconds = smoke ? 1 : Number(flag("--seconds") ?? 5);
const reps = smoke ? 1 : Number(flag("--reps") ?? 3);

function flag(name: string): string | undefined {
  const i = Deno.args.indexOf(name);
  return i >= 0 ? Deno.args[i + 1] : undefined;
}

const ROOT = new URL("..", import.meta.url).pathname;
/** Connections of the light load: few enough that neither core is saturated. */
const LIGHT = 2;
/** New connections per second of the fixed-rate load: well under what one core can serve. */
const RATE = Number(flag("--rate") ?? 200);
/** `--rate-only`: only the fixed-rate load (a quick look at CPU per connection); no file. */
const rateOnly = Deno.args.includes("--rate-only");

/** `taskset -c <cpus> cmd args…`. */
function pinned(cpus: string, cmd: string, args: string[]) {
  return spawn("taskset", ["-c", cpus, cmd, ...args]);
}

/** CPU ticks (user + system) of a process, or of one of its threads. */
function ticks(path: string): number {
  const fields = Deno.readTextFileSync(path).split(") ")[1]!.split(" ");
  return Number(fields[11]) + Number(fields[12]);
}

/** Per-thread ticks of `pid`, by thread name (`main` for the process's own thread). */
function threadTicks(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const t of Deno.readDirSync(`/proc/${pid}/task`)) {
    try {
      const comm = Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/comm`).trim();
      const name = Number(t.name) === pid ? "main" : comm;
      out.set(name, (out.get(name) ?? 0) + ticks(`/proc/${pid}/task/${t.name}/stat`));
    } catch { /* the thread ended */ }
  }
  return out;
}

/** Busy and total jiffies per CPU from /proc/stat. */
function cpuTimes(): Map<string, { busy: number; total: number }> {
  const out = new Map<string, { busy: number; total: number }>();
  for (const line of Deno.readTextFileSync("/proc/stat").split("\n")) {
    const m = /^(cpu\d+)\s+(.*)$/.exec(line);
    if (!m) continue;
    const v = m[2]!.split(/\s+/).map(Number);
    const idle = (v[3] ?? 0) + (v[4] ?? 0);
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
    out.set(m[1]!, { busy: total - idle, total });
  }
  return out;
}

function pssKiB(pid: number): number {
  const rollup = Deno.readTextFileSync(`/proc/${pid}/smaps_rollup`);
  return Number(/^Pss:\s+(\d+) kB/m.exec(rollup)?.[1] ?? NaN);
}

async function run(cmd: string, args: string[], env?: Record<string, string>): Promise<string> {
  const r = await new Deno.Command(cmd, { args, env, stdout: "piped", stderr: "piped" }).output();
  const out = new TextDecoder().decode(r.stdout);
  if (!r.success) throw new Error(`${cmd}: ${new TextDecoder().decode(r.stderr) || out}`);
  return out;
}

/** wrk on CPU 0: `connections` at once, keep-alive or a new connection per request. */
async function wrk(port: number, close: boolean, connections: number) {
  const out = await run("taskset", [
    "-c",
    "0",
    "wrk",
    "-t1",
    `-c${connections}`,
    `-d${seconds}s`,
    "--latency",
    ...(close ? ["-H", "Connection: close"] : []),
    `http://127.0.0.1:${port}/1k`,
  ]);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN);
  const errors = /Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)/.exec(out)?.[0];
  if (errors) console.log(`bench: wrk: ${errors}`);
  return rps;
}

interface Setup {
  dir: string;
  agent: string;
  close(): Promise<void>;
  /** Starts the proxy under test with `workers` threads on `cpus`; resolves once it serves. */
  proxy(
    workers: number,
    cpus: string,
  ): Promise<{ pid: number; front: number; stop(): Promise<void> }>;
}

/** nginx, the test double, db's registration and web's leaf for haproxy, all on CPU 0. */
async function setup(): Promise<Setup> {
  const dir = await Deno.makeTempDir({ prefix: "meshgate-workers-bench-" });
  await Deno.chmod(dir, 0o711);
  await Deno.mkdir(`${dir}/www`, { mode: 0o755 });
  await Deno.mkdir(`${dir}/tmp`);
  await Deno.writeTextFile(`${dir}/www/1k`, "x".repeat(1024));
  const httpPort = freePort();
  await Deno.writeTextFile(
    `${dir}/nginx.conf`,
    `worker_processes 1;\npid ${dir}/nginx.pid;\nerror_log stderr;\n` +
      `events { worker_connections 16384; }\nhttp {\n  access_log off;\n` +
      `  client_body_temp_path ${dir}/tmp;\n  proxy_temp_path ${dir}/tmp;\n` +
      `  fastcgi_temp_path ${dir}/tmp;\n  uwsgi_temp_path ${dir}/tmp;\n  scgi_temp_path ${dir}/tmp;\n` +
      `  keepalive_requests 1000000;\n  server { listen 127.0.0.1:${httpPort}; root ${dir}/www; }\n}\n`,
  );
  const nginx = pinned("0", "nginx", ["-c", `${dir}/nginx.conf`, "-p", dir, "-g", "daemon off;"]);
  const agentPort = freePort();
  const dev = pinned("0", Deno.execPath(), [
    "run",
    "-A",
    `${ROOT}src/devagent/main.ts`,
    "-port",
    String(agentPort),
  ]);
  await listening(httpPort, "nginx");
  await listening(agentPort, "the test double");
  const agent = `127.0.0.1:${agentPort}`;
  const get = async (path: string) => await (await fetch(`http://${agent}${path}`)).json();
  const leaf = await get("/v1/agent/connect/ca/leaf/web");
  const roots = await get("/v1/agent/connect/ca/roots");
  await Deno.writeTextFile(`${dir}/web.pem`, leaf.CertPEM + leaf.PrivateKeyPEM);
  await Deno.writeTextFile(
    `${dir}/roots.pem`,
    roots.Roots.map((r: { RootCert: string }) => r.RootCert).join("\n"),
  );
  let n = 0;
  return {
    dir,
    agent,
    async close() {
      await dev.stop();
      await nginx.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
    async proxy(workers, cpus) {
      n++;
      const publicPort = freePort();
      const front = freePort();
      const res = await fetch(`http://${agent}/v1/agent/service/register`, {
        method: "PUT",
        body: JSON.stringify({
          ID: `db-${n}`,
          Name: `db${n}`,
          Port: httpPort,
          Connect: { SidecarService: { Port: publicPort } },
        }),
      });
      await res.body?.cancel();
      const proxy = pinned(cpus, Deno.execPath(), [
        "run",
        "-A",
        `${ROOT}src/cli/main.ts`,
        "-sidecar-for",
        `db-${n}`,
        "-http-addr",
        agent,
        "-admin-bind",
        "",
        "-log-level",
        "warn",
        "-workers",
        String(workers),
      ]);
      await listening(publicPort, "meshgate", 30_000, proxy.output);
      // Every worker binds once its leaf and roots are in: give them the time to.
      await new Promise((r) => setTimeout(r, 2000));
      const cfg = `${dir}/haproxy-${n}.cfg`;
      await Deno.writeTextFile(
        cfg,
        "global\n  maxconn 8000\n  nbthread 1\ndefaults\n  mode tcp\n" +
          "  timeout connect 5s\n  timeout client 1h\n  timeout server 1h\n" +
          `frontend fe\n  bind 127.0.0.1:${front}\n  default_backend be\nbackend be\n` +
          `  server mesh 127.0.0.1:${publicPort} ssl crt ${dir}/web.pem ca-file ` +
          `${dir}/roots.pem verify none no-ssl-reuse\n`,
      );
      const haproxy = pinned("0", "haproxy", ["-f", cfg, "-db"]);
      await listening(front, "haproxy", 20_000, haproxy.output);
      return {
        // taskset execs the command: the proxy keeps its PID.
        pid: proxy.child.pid,
        front,
        async stop() {
          await haproxy.stop();
          await proxy.stop();
        },
      };
    },
  };
}

interface Sample {
  rps: number;
  cpuUsPerReq: number;
  threads: Map<string, number>;
  cores: Map<string, number>;
}

/** One wrk run against `front`, with the proxy's CPU, its threads' and the cores' busy share. */
function sample(
  pid: number,
  front: number,
  close: boolean,
  connections: number,
): Promise<Sample> {
  return measured(pid, async () => {
    const rps = await wrk(front, close, connections);
    return { rps, served: rps * seconds };
  });
}

/**
 * New connections at a fixed rate (`bench/_rate_client.ts` on CPU 0, open loop): a load that
 * leaves the cores mostly idle, so CPU per connection carries no contention.
 */
function sampleRate(pid: number, front: number, rate: number): Promise<Sample> {
  return measured(pid, async () => {
    const out = await run("taskset", [
      "-c",
      "0",
      Deno.execPath(),
      "run",
      "-A",
      `${ROOT}bench/_rate_client.ts`,
    ], {
      PORT: String(front),
      RATE: String(rate),
      SECONDS: String(seconds),
    });
    const r = JSON.parse(out.trim().split("\n").at(-1)!) as {
      ok: number;
      failed: number;
      seconds: number;
    };
    if (r.failed) console.log(`bench: fixed-rate load: ${r.failed} failed`);
    return { rps: r.ok / r.seconds, served: r.ok };
  });
}

/** Runs `load`, reading the proxy's CPU (all threads, each thread) and the cores around it. */
async function measured(
  pid: number,
  load: () => Promise<{ rps: number; served: number }>,
): Promise<Sample> {
  const t0 = threadTicks(pid);
  const p0 = ticks(`/proc/${pid}/stat`);
  const c0 = cpuTimes();
  const started = performance.now();
  const { rps, served } = await load();
  const wall = (performance.now() - started) / 1000;
  const p1 = ticks(`/proc/${pid}/stat`);
  const t1 = threadTicks(pid);
  const c1 = cpuTimes();
  const threads = new Map<string, number>();
  for (const [name, v] of t1) {
    if (name === "main" || name.startsWith("worker-")) {
      threads.set(name, (v - (t0.get(name) ?? 0)) / 100 / wall);
    }
  }
  const cores = new Map<string, number>();
  for (const [cpu, v] of c1) {
    const b = c0.get(cpu)!;
    cores.set(cpu, (v.busy - b.busy) / (v.total - b.total));
  }
  return { rps, cpuUsPerReq: (p1 - p0) / 100 * 1e6 / served, threads, cores };
}

const median = (xs: number[]) => {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)]! : NaN;
};

async function main() {
  const s = await setup();
  const configs: { label: string; workers: number; cpus: string }[] = [
    { label: "CPU 1 only", workers: 1, cpus: "1" },
    { label: "CPU 1 only", workers: 2, cpus: "1" },
    { label: "CPUs 0-1", workers: 1, cpus: "0-1" },
    { label: "CPUs 0-1", workers: 2, cpus: "0-1" },
  ];
  const lines: string[] = [];
  const pct = (x: number) => Number.isNaN(x) ? "–" : `${Math.round(x * 100)} %`;
  const running: {
    label: string;
    workers: number;
    proxy: Awaited<ReturnType<Setup["proxy"]>>;
    ka: Sample[];
    nc: Sample[];
    kaLight: Sample[];
    ncLight: Sample[];
    ncRate: Sample[];
    /** One thread at half the rate: the per-thread load of two threads at the full rate. */
    ncRateHalf: Sample[];
  }[] = [];
  try {
    const results: typeof running = [];
    for (const c of configs) {
      console.log(`bench: starting -workers ${c.workers} on ${c.label}…`);
      running.push({
        ...c,
        proxy: await s.proxy(c.workers, c.cpus),
        ka: [],
        nc: [],
        kaLight: [],
        ncLight: [],
        ncRate: [],
        ncRateHalf: [],
      });
    }
    // Alone, the fixed-rate load first warms each proxy up as the other loads would have.
    if (rateOnly) { for (const x of running) await sample(x.proxy.pid, x.proxy.front, true, 50); }
    for (let r = 0; r < reps; r++) {
      for (const x of running) {
        console.log(`bench: repetition ${r + 1}/${reps}: -workers ${x.workers} on ${x.label}…`);
        if (!rateOnly) {
          x.ka.push(await sample(x.proxy.pid, x.proxy.front, false, 50));
          x.nc.push(await sample(x.proxy.pid, x.proxy.front, true, 50));
          x.kaLight.push(await sample(x.proxy.pid, x.proxy.front, false, LIGHT));
          x.ncLight.push(await sample(x.proxy.pid, x.proxy.front, true, LIGHT));
        }
        x.ncRate.push(await sampleRate(x.proxy.pid, x.proxy.front, RATE));
        if (x.workers === 1) {
          x.ncRateHalf.push(await sampleRate(x.proxy.pid, x.proxy.front, RATE / 2));
        }
      }
    }
    for (const x of running) results.push(x);
    for (const x of running) await x.proxy.stop();
    // Memory: what a thread costs an idle proxy. Fresh proxies with 1, 2 and 4 threads, each
    // read 3 s after it serves (every thread bound), one at a time, medians of `reps`.
    const idle = new Map<number, number[]>();
    for (let r = 0; r < (rateOnly ? 0 : reps); r++) {
      for (const workers of [1, 2, 4]) {
        const p = await s.proxy(workers, "0-1");
        await new Promise((r) => setTimeout(r, 3000));
        idle.set(workers, [...idle.get(workers) ?? [], pssKiB(p.pid)]);
        await p.stop();
      }
    }
    const pss = (w: number) => median(idle.get(w) ?? []);

    const row = (
      x: (typeof results)[number],
      kind: "ka" | "nc" | "kaLight" | "ncLight" | "ncRate" | "ncRateHalf",
    ) => {
      const xs = x[kind];
      const rps = median(xs.map((v) => v.rps));
      const cpu = median(xs.map((v) => v.cpuUsPerReq));
      const names = [...new Set(xs.flatMap((v) => [...v.threads.keys()]))].sort();
      const threads = names.map((n) =>
        `${n} ${pct(median(xs.map((v) => v.threads.get(n) ?? NaN)))}`
      )
        .join(", ");
      const cores = ["cpu0", "cpu1"].map((c) => pct(median(xs.map((v) => v.cores.get(c) ?? NaN))))
        .join(" / ");
      return `| ${x.label} | ${x.workers} | ${Math.round(rps)} | ${
        Math.round(cpu)
      } | ${threads} | ${cores} |`;
    };
    lines.push(
      `# meshgate -workers scaling (${new Date().toISOString().slice(0, 10)}, ${reps} ` +
        `repetition(s), ${seconds} s each, medians; ${navigator.hardwareConcurrency} cores; ` +
        "load — wrk, haproxy as mTLS client, nginx, the test double — pinned to CPU 0)",
      "",
      "Keep-alive requests (wrk, 50 connections, 1 KiB answers):",
      "",
      "| proxy on | -workers | req/s | proxy CPU µs per request | proxy threads busy | CPU 0 / CPU 1 busy |",
      "| --- | --- | --- | --- | --- | --- |",
      ...results.map((x) => row(x, "ka")),
      "",
      "A new connection per request (full mTLS handshake, authorize, dial nginx):",
      "",
      "| proxy on | -workers | conn/s | proxy CPU µs per connection | proxy threads busy | CPU 0 / CPU 1 busy |",
      "| --- | --- | --- | --- | --- | --- |",
      ...results.map((x) => row(x, "nc")),
      "",
      `A light load that leaves a core free (wrk with ${LIGHT} connections): CPU per unit of ` +
        "work without the contention of a saturated machine, keep-alive then new connections:",
      "",
      "| proxy on | -workers | req/s | proxy CPU µs per request | proxy threads busy | CPU 0 / CPU 1 busy |",
      "| --- | --- | --- | --- | --- | --- |",
      ...results.map((x) => row(x, "kaLight")),
      "",
      "| proxy on | -workers | conn/s | proxy CPU µs per connection | proxy threads busy | CPU 0 / CPU 1 busy |",
      "| --- | --- | --- | --- | --- | --- |",
      ...results.map((x) => row(x, "ncLight")),
      "",
      `New connections at a fixed rate (${RATE}/s, open loop, from a client on CPU 0 through ` +
        "haproxy): both cores about half idle, so the CPU per connection carries no contention:",
      "",
      "| proxy on | -workers | conn/s | proxy CPU µs per connection | proxy threads busy | CPU 0 / CPU 1 busy |",
      "| --- | --- | --- | --- | --- | --- |",
      ...results.map((x) => row(x, "ncRate")),
      "",
      `The same with one thread at ${RATE / 2}/s: the load per thread of two threads at ` +
        `${RATE}/s. A connection costs less the more of them a thread serves per wake-up (from ` +
        "50/s to saturation its cost halves), so a thread beyond the first is compared with one " +
        "thread carrying the same load per thread:",
      "",
      "| proxy on | -workers | conn/s | proxy CPU µs per connection | proxy threads busy | CPU 0 / CPU 1 busy |",
      "| --- | --- | --- | --- | --- | --- |",
      ...results.filter((x) => x.workers === 1).map((x) => row(x, "ncRateHalf")),
      "",
      "Idle proxy memory (Pss of a fresh proxy 3 s after it serves, KiB): " +
        [1, 2, 4].map((w) => `-workers ${w}: ${pss(w)}`).join(", ") +
        ` — ${((pss(4) - pss(1)) / 3 / 1024).toFixed(1)} MiB per worker.`,
    );
  } finally {
    for (const x of running) await x.proxy.stop(); // again after a failure: stop is idempotent
    await s.close();
  }
  const text = lines.join("\n") + "\n";
  console.log("\n" + text);
  if (!smoke && !rateOnly) {
    Deno.writeTextFileSync(new URL("./results/workers.md", import.meta.url), text);
    console.log("bench: wrote bench/results/workers.md");
  }
}

if (import.meta.main) await main();
