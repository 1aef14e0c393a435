// `deno task bench`: meshgate against direct, stunnel, haproxy and Consul's built-in proxy, all
// measured in one run so that the ratios mean something on a noisy machine. `--smoke` is the 10-second CI variant (that
// it runs, not how fast). Installs the Debian tools it needs when they are missing, and says so.
import {
  consulBinary,
  consulBuiltinPair,
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
      const [, afterName] = Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ");
      if (afterName === undefined) return NaN;
      const fields = afterName.split(" ");
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

/** KiB of proportional set size (Pss in /proc/<pid>/smaps_rollup) of the processes together. */
function pssKiB(pids: number[]): number {
  let kib = 0;
  for (const pid of pids) {
    const rollup = Deno.readTextFileSync(`/proc/${pid}/smaps_rollup`);
    const pss = /^Pss:\s+(\d+) kB/m.exec(rollup);
    if (!pss) throw new Error(`no Pss line in /proc/${pid}/smaps_rollup`);
    kib += Number(pss[1]);
  }
  return kib;
}

/** The request each idle connection carries (nginx answers with the 1-byte file, keep-alive). */
const IDLE_REQUEST = new TextEncoder().encode("GET /1b HTTP/1.1\r\nHost: bench\r\n\r\n");

/** Opens a connection through `port`, and resolves once a request went through and came back. */
async function carriedConnection(port: number): Promise<Deno.Conn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const timer = setTimeout(() => conn.close(), 60_000);
  try {
    for (let off = 0; off < IDLE_REQUEST.length;) {
      off += await conn.write(IDLE_REQUEST.subarray(off));
    }
    const buf = new Uint8Array(1024);
    let got = "";
    // The response's headers, then the file's one byte.
    while (!got.includes("\r\n\r\nx")) {
      const n = await conn.read(buf);
      if (n === null) throw new Error("the tunnel closed an idle connection before its answer");
      got += new TextDecoder().decode(buf.subarray(0, n));
      if (/^HTTP\/1\.1 (?!200)/.test(got)) {
        throw new Error(`nginx answered ${got.split("\r\n")[0]}`);
      }
    }
    return conn;
  } catch (err) {
    try {
      conn.close();
    } catch { /* closed by the timer */ }
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Memory per idle connection, per side of the tunnel (KiB per connection, client side and server
 * side). Method (issue #18): before any load phase, for each tunnel in turn, carry `WARM_UP`
 * connections end to end and close them (a proxy's first connections compile code and allocate
 * buffers once), read each side's proportional set size (Pss from /proc/<pid>/smaps_rollup: its
 * resident pages, each shared page divided among the processes that map it, so code and
 * libraries shared by the two sides are not counted twice and untouched reservations not at
 * all), then open `idleConns` connections through it, 25 at a time, each of which first carries a
 * request end to end — client → client side → server side → nginx — and its answer back (`GET
 * /1b` on a keep-alive connection: nginx answers with a 1-byte file and keeps the connection
 * open). All tunnels' connections are then held idle together for `IDLE_HOLD_MS`, and each side's
 * Pss is read again: its growth divided by the connections held is the figure, the steady cost of
 * a pool of idle connections.
 *
 * Before the load phases, not after them: a process that has served them keeps what its
 * allocators and V8's heap grew to, reuses it for the idle connections and returns some of it
 * while they are held, so its growth reads near zero or negative (measured: −10.3 KiB per
 * connection for meshgate, while haproxy's and Consul's read as before).
 *
 * A garbage-collected runtime needs one more step. Right before the baseline and before the
 * reading, meshgate's sides run full collections (SIGUSR2 to bench/_meshgate_gc.ts); the reading
 * just before that last collection is reported too ("as left"), as the runtime left it after the
 * idle hold. V8's memory reducer returns freed pages 8 or 16 s after a burst, while haproxy's and
 * Consul's Pss do not move over 20 s; holding every tunnel's connections at once pays that wait
 * once. Consul's proxy (Go) cannot be asked to collect from outside; its runtime collects on its
 * own pacing. `--smoke` waits 0.2 s: its 50 connections check that the method works and measure
 * nothing. The agent is not counted (its work grows with calls, not with connections held).
 */
const IDLE_HOLD_MS = smoke ? 200 : 30_000;
/** Connections each tunnel carries and closes before its idle baseline (see holdIdle). */
const WARM_UP = smoke ? 5 : 50;

/** A tunnel's idle connections, held open, and its sides' Pss before they were opened. */
interface HeldIdle {
  sides: { client: number[]; server: number[] };
  before: { client: number; server: number };
  conns: Deno.Conn[];
  collectGarbage?: () => Promise<void>;
}

/** Opens `idleConns` connections through `t` that each carried a request (see above). */
async function holdIdle(t: Tunnel): Promise<HeldIdle | undefined> {
  if (!t.sides) return undefined;
  const sides = t.sides;
  // A warm-up: the code paths of a connection compiled and the first buffers allocated, so that
  // what follows is the cost of connections, not of a process's first one.
  for (let i = 0; i < WARM_UP; i++) (await carriedConnection(t.port)).close();
  await t.collectGarbage?.();
  const before = { client: pssKiB(sides.client), server: pssKiB(sides.server) };
  const conns: Deno.Conn[] = [];
  let next = 0;
  let failure: unknown;
  const opener = async () => {
    while (next < idleConns && failure === undefined) {
      next++;
      try {
        conns.push(await carriedConnection(t.port));
      } catch (err) {
        failure ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: 25 }, opener));
  if (failure !== undefined) {
    for (const c of conns) c.close();
    throw failure;
  }
  return { sides, before, conns, collectGarbage: t.collectGarbage };
}

/** KiB of Pss per held connection that each side grew by since before they were opened. */
async function idleGrowth(held: HeldIdle | undefined): Promise<IdleGrowth> {
  const none = { client: NaN, server: NaN, leftClient: NaN, leftServer: NaN };
  try {
    if (!held) return none;
    const n = held.conns.length;
    const growth = () => ({
      client: (pssKiB(held.sides.client) - held.before.client) / n,
      server: (pssKiB(held.sides.server) - held.before.server) / n,
    });
    // First as the runtime left it after the idle hold (what a user's process shows), then after
    // a full collection (the connections' own cost): a garbage-collected proxy differs there.
    const left = growth();
    await held.collectGarbage?.();
    return { ...growth(), leftClient: left.client, leftServer: left.server };
  } catch (err) {
    console.log(`bench: idle memory unreadable: ${(err as Error).message}`);
    return none;
  }
}

/** KiB of Pss per held connection: after a full collection, and as left before it. */
interface IdleGrowth {
  client: number;
  server: number;
  leftClient: number;
  leftServer: number;
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
  return s.length ? s[Math.floor(s.length / 2)]! : NaN; // the middle of a non-empty list
};

interface Figures {
  mbps1: number[];
  mbps4: number[];
  ka: { rps: number; p50: number; p99: number }[];
  nc: { rps: number; p50: number; p99: number }[];
  /** KiB of Pss per idle connection (after a byte end to end), client and server side. */
  idleClient: number[];
  idleServer: number[];
  /** The same, read before meshgate's forced collection: as the runtime left it. */
  idleLeftClient: number[];
  idleLeftServer: number[];
  /** CPU of the tunnel's processes: ms per 100 MB (1 stream), µs per request. */
  cpuMb: number[];
  cpuKa: number[];
  cpuNc: number[];
  /** CPU of the agent per new connection, µs: authorize (and, Consul's, discovery). */
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
  // nginx's worker runs as another user (nobody when started as root): it must be able to reach
  // www/ through the temporary directory (0700 as made), else every answer is a 403.
  await Deno.chmod(dir, 0o711);
  await Deno.mkdir(`${dir}/www`, { mode: 0o755 });
  await Deno.writeTextFile(`${dir}/www/1k`, "x".repeat(1024));
  await Deno.writeTextFile(`${dir}/www/1b`, "x");
  await Deno.writeTextFile(
    `${dir}/nginx.conf`,
    `worker_processes 1;\npid ${dir}/nginx.pid;\nerror_log stderr;\n` +
      // Every tunnel's idle connections are held at once (8 × 2,000).
      `worker_rlimit_nofile 20000;\nevents { worker_connections 19000; }\n` +
      `http {\n  access_log off;\n` +
      `  client_body_temp_path ${dir}/tmp;\n  proxy_temp_path ${dir}/tmp;\n` +
      `  fastcgi_temp_path ${dir}/tmp;\n  uwsgi_temp_path ${dir}/tmp;\n  scgi_temp_path ${dir}/tmp;\n` +
      `  keepalive_requests 1000000;\n  keepalive_timeout 600s;\n` +
      `  server { listen 127.0.0.1:${httpPort}; root ${dir}/www; }\n}\n`,
  );
  await Deno.mkdir(`${dir}/tmp`);
  const nginx = spawn("nginx", ["-c", `${dir}/nginx.conf`, "-p", dir, "-g", "daemon off;"]);
  const iperfPort = freePort();
  const iperf = spawn("iperf3", ["-s", "-p", String(iperfPort)]);
  await listening(httpPort, "nginx");
  await listening(iperfPort, "iperf3");
  // What proves a tunnel forwards end to end: an HTTP request to nginx, iperf3's 37-byte cookie
  // (its server answers with one byte, then drops the unfinished test and listens on).
  const probes = new Map([
    [httpPort, IDLE_REQUEST],
    [iperfPort, new TextEncoder().encode("meshgatebenchprobe".padEnd(36, "x") + "\0")],
  ]);
  const consul = consulBinary();

  const kinds: [string, (backend: number, tag: string) => Promise<Tunnel>][] = [
    ["direct", (b) => Promise.resolve(direct(b))],
    ["meshgate", (b, tag) => meshgatePair(b, `bench-${tag}`)],
    // The same pair reusing authorize answers for 60 s (forgotten on intention changes).
    [
      "meshgate-fresh",
      (b, tag) =>
        meshgatePair(b, `bench-${tag}-f`, ["-authorize-fresh", "60000"], "meshgate-fresh"),
    ],
    // The same pair with both sides serving from two threads (-workers 2, SO_REUSEPORT).
    [
      "meshgate-w2",
      (b, tag) =>
        meshgatePair(b, `bench-${tag}-w2`, ["-workers", "2"], "meshgate-w2", ["-workers", "2"]),
    ],
    // The same pair with the client side's upstream on the native-TLS leg (Deno.connectTls).
    [
      "meshgate-native",
      (b, tag) =>
        meshgatePair(b, `bench-${tag}-n`, [], "meshgate-native", ["-outbound-tls", "native"]),
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
    // Consul's built-in proxy (`consul connect proxy`, both sides) with a real `consul agent -dev`.
    [
      "consul-builtin",
      async (b, tag) =>
        consulBuiltinPair(consul!, await sub(dir, `consul-${tag}`), b, probes.get(b)!),
    ],
  ];
  const only = flag("--only")?.split(",");
  const notes: string[] = [];
  for (let i = kinds.length - 1; i >= 0; i--) {
    const name = kinds[i]![0]; // i counts down from the end; only kinds[i] is spliced out
    if (only && name !== "direct" && !only.includes(name)) kinds.splice(i, 1);
    else if (name === "consul-builtin" && !consul) {
      kinds.splice(i, 1);
      notes.push(
        "consul-builtin SKIPPED: no Consul binary (set MESHGATE_CONSUL_BIN, or run " +
          "`deno task consul:build`, which needs Go)",
      );
    }
  }
  // The bench holds every tunnel's idle connections at once: one descriptor each, here.
  const openFiles = Number(
    /^Max open files\s+(\d+)/m.exec(Deno.readTextFileSync("/proc/self/limits"))?.[1] ?? Infinity,
  );
  const needed = (kinds.length - 1) * idleConns + 1000;
  if (openFiles < needed) {
    notes.push(
      `open-file limit ${openFiles} < ${needed}: the idle-memory figures of the last tunnels ` +
        `will fail (raise it with \`ulimit -n ${needed}\`)`,
    );
  }
  for (const note of notes) console.log(banner(note));
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
        idleClient: [],
        idleServer: [],
        idleLeftClient: [],
        idleLeftServer: [],
        cpuMb: [],
        cpuKa: [],
        cpuNc: [],
        agentNc: [],
      };
      // Both instances at once (an agent's start is mostly waiting); on a failure, neither stays.
      const t0 = Date.now();
      const both = await Promise.allSettled([start(httpPort, "http"), start(iperfPort, "iperf")]);
      const [http, iperf] = both;
      if (http.status === "rejected" || iperf.status === "rejected") {
        for (const x of both) if (x.status === "fulfilled") await x.value.close();
        throw both.find((x) => x.status === "rejected")?.reason;
      }
      running.push({ name, forHttp: http.value, forIperf: iperf.value, figures });
      console.log(`bench: ${name} up in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    }
    // Idle memory first, on processes that have served nothing but a warm-up (see holdIdle).
    const held = new Map<string, HeldIdle | undefined>();
    try {
      for (const { name, forHttp } of running) {
        if (!forHttp.sides) continue;
        console.log(`bench: ${name}: opening ${idleConns} idle connections…`);
        held.set(
          name,
          await measure(`${name} idle connections`, () => holdIdle(forHttp), undefined),
        );
      }
      console.log(`bench: holding them all idle for ${IDLE_HOLD_MS / 1000} s…`);
      await new Promise((r) => setTimeout(r, IDLE_HOLD_MS));
      for (const { name, figures } of running) {
        const idle = await idleGrowth(held.get(name));
        figures.idleClient.push(idle.client);
        figures.idleServer.push(idle.server);
        figures.idleLeftClient.push(idle.leftClient);
        figures.idleLeftServer.push(idle.leftServer);
      }
    } finally {
      for (const h of held.values()) for (const c of h?.conns ?? []) c.close();
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
        if ("errors" in ka && ka.errors) {
          console.log(`bench: ${name} keep-alive: wrk: ${ka.errors}`);
        }
        figures.ka.push(ka);
        figures.cpuKa.push(cpuKa * 1e6 / (ka.rps * seconds));
        const agentBefore = forHttp.agentPid ? cpuSeconds([forHttp.agentPid]) : NaN;
        const [nc, cpuNc] = await withCpu(
          forHttp.pids,
          () => measure(`${name} new connections`, () => http(forHttp.port, true), none),
        );
        if ("errors" in nc && nc.errors) {
          console.log(`bench: ${name} new connections: wrk: ${nc.errors}`);
        }
        figures.nc.push(nc);
        figures.cpuNc.push(cpuNc * 1e6 / (nc.rps * seconds));
        const agentCpu = forHttp.agentPid ? cpuSeconds([forHttp.agentPid]) - agentBefore : NaN;
        figures.agentNc.push(agentCpu * 1e6 / (nc.rps * seconds));
      }
    }
    for (const { name, forHttp, figures } of running) {
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
  report(results, floor, notes);
}

/** A line nobody scrolls past. */
function banner(text: string): string {
  const bar = "#".repeat(72);
  return `\nbench: ${bar}\nbench: ${text}\nbench: ${bar}\n`;
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
  notes: string[],
) {
  const row = (name: string) => {
    const f = results.get(name)!;
    const idleClient = median(f.idleClient);
    const idleServer = median(f.idleServer);
    return {
      mbps1: median(f.mbps1),
      mbps4: median(f.mbps4),
      ka: median(f.ka.map((x) => x.rps)),
      kaP50: median(f.ka.map((x) => x.p50)),
      kaP99: median(f.ka.map((x) => x.p99)),
      nc: median(f.nc.map((x) => x.rps)),
      ncP50: median(f.nc.map((x) => x.p50)),
      ncP99: median(f.nc.map((x) => x.p99)),
      idleClient,
      idleServer,
      idle: (idleClient + idleServer) / 2,
      idleLeft: (median(f.idleLeftClient) + median(f.idleLeftServer)) / 2,
      cpuMb: median(f.cpuMb),
      cpuKa: median(f.cpuKa),
      cpuNc: median(f.cpuNc),
      agentNc: median(f.agentNc),
    };
  };
  type Row = ReturnType<typeof row>;
  const names = [...results.keys()];
  const rows = new Map(names.map((n) => [n, row(n)]));
  const fmt = (x: number, digits = 0) => Number.isNaN(x) ? "–" : x.toFixed(digits);
  const ratio = (x: number, base: number | undefined, higherIsBetter = true) =>
    // A ratio of a figure that is not positive (idle memory that shrank: noise) means nothing.
    base === undefined || !(x > 0) || !(base > 0)
      ? "–"
      : `${(higherIsBetter ? x / base : base / x).toFixed(2)}×`;
  const lines = [
    `# meshgate benchmark (${new Date().toISOString().slice(0, 10)}, ${reps} repetition(s), ` +
    `${seconds} s each, medians; ${Deno.build.os}/${Deno.build.arch}, ` +
    `${navigator.hardwareConcurrency} cores)`,
    "",
    ...notes.map((n) => `**${n}**\n`),
    "| tunnel | 1 stream MB/s | 4 streams MB/s | keep-alive req/s | p50 ms | p99 ms | new conn req/s | p50 ms | p99 ms |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ...names.map((n) => {
      const r = rows.get(n)!;
      return `| ${n} | ${fmt(r.mbps1)} | ${fmt(r.mbps4)} | ${fmt(r.ka)} | ${fmt(r.kaP50, 2)} | ` +
        `${fmt(r.kaP99, 2)} | ${fmt(r.nc)} | ${fmt(r.ncP50, 2)} | ${fmt(r.ncP99, 2)} |`;
    }),
    "",
    `Memory per idle connection (${idleConns} per tunnel, each after carrying a request to the ` +
    "backend and its answer back, all tunnels' held together, before the load phases and after " +
    `a warm-up of ${WARM_UP} connections; growth of the proxy processes' ` +
    `Pss from /proc/<pid>/smaps_rollup after ${IDLE_HOLD_MS / 1000} s idle, KiB per ` +
    "connection; lower is better). meshgate's sides run a full collection before the " +
    "baseline and before the reading; the last column is the reading taken just before that " +
    "collection, as the runtime left it after the idle hold (the same reading for the others):",
    "",
    "| tunnel | client side | server side | per proxy (mean of the sides) | per proxy, as left (no forced collection) |",
    "| --- | --- | --- | --- | --- |",
    ...names.filter((n) => n !== "direct").map((n) => {
      const r = rows.get(n)!;
      return `| ${n} | ${fmt(r.idleClient, 1)} | ${fmt(r.idleServer, 1)} | ${fmt(r.idle, 1)} | ` +
        `${fmt(r.idleLeft, 1)} |`;
    }),
    "",
    "CPU the tunnel's own processes spent (both sides together; lower is better — a measure " +
    "of cost that does not depend on how the two cores were shared):",
    "",
    "| tunnel | ms per 100 MB, 1 stream | µs per keep-alive request | µs per new connection | agent µs per new connection (meshgate: authorize; consul-builtin: authorize and upstream discovery) |",
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
  ];
  const m = rows.get("meshgate");
  const h = rows.get("haproxy");
  const c = rows.get("consul-builtin");
  if (m) {
    lines.push(
      "",
      "Ratios of meshgate (higher is better; for latency, memory and CPU, base ÷ meshgate):",
      "",
      "| figure | vs direct | vs haproxy | vs haproxy-full (no session resumption) | vs stunnel | vs consul-builtin |",
      "| --- | --- | --- | --- | --- | --- |",
    );
    const d = rows.get("direct")!;
    const hf = rows.get("haproxy-full");
    const st = rows.get("stunnel");
    // label, figure, higher is better, compared with direct, compared with haproxy-full.
    const fig: [string, keyof Row, boolean, boolean, boolean][] = [
      ["1 stream MB/s", "mbps1", true, true, false],
      ["4 streams MB/s", "mbps4", true, true, false],
      ["keep-alive req/s", "ka", true, true, false],
      ["keep-alive p50", "kaP50", false, true, false],
      ["keep-alive p99", "kaP99", false, true, false],
      ["new connections/s", "nc", true, true, true],
      ["new connection p50", "ncP50", false, true, true],
      ["new connection p99", "ncP99", false, true, true],
      ["idle KiB per connection, client side", "idleClient", false, false, false],
      ["idle KiB per connection, server side", "idleServer", false, false, false],
      ["idle KiB per connection, per proxy", "idle", false, false, false],
      ["idle KiB per connection, per proxy, as left", "idleLeft", false, false, false],
      ["CPU per 100 MB", "cpuMb", false, false, false],
      ["CPU per keep-alive request", "cpuKa", false, false, false],
      ["CPU per new connection", "cpuNc", false, false, true],
      ["agent CPU per new connection", "agentNc", false, false, false],
    ];
    const line = (label: string, x: Row, key: keyof Row, up: boolean, vsD: boolean, vsF: boolean) =>
      `| ${label} | ${vsD ? ratio(x[key], d[key], up) : "–"} | ` +
      `${key === "agentNc" ? "–" : ratio(x[key], h?.[key], up)} | ` +
      `${vsF ? ratio(x[key], hf?.[key], up) : "–"} | ` +
      `${key === "agentNc" ? "–" : ratio(x[key], st?.[key], up)} | ${
        ratio(x[key], c?.[key], up)
      } |`;
    for (const [label, key, up, vsD, vsF] of fig) lines.push(line(label, m, key, up, vsD, vsF));
    const f = rows.get("meshgate-fresh");
    if (f) {
      lines.push(
        line("new connections/s, -authorize-fresh", f, "nc", true, true, true),
        line("new connection p99, -authorize-fresh", f, "ncP99", false, true, true),
      );
    }
    // A variant of the pair against the pair as deployed, same run: one header row, one ratio row.
    const variant = (name: string, title: string, cols: [string, keyof Row, boolean][]) => {
      const v = rows.get(name);
      if (!v) return;
      lines.push(
        "",
        `${name} ${title}, higher is better:`,
        "",
        `| ${cols.map(([label]) => label).join(" | ")} |`,
        `| ${cols.map(() => "---").join(" | ")} |`,
        `| ${cols.map(([, key, up]) => ratio(v[key], m[key], up)).join(" | ")} |`,
      );
    };
    // The opt-in native leg against the default node:tls leg (README: why it is not the default).
    variant("meshgate-native", "(client side -outbound-tls native) ÷ meshgate (node:tls)", [
      ["1 stream MB/s", "mbps1", true],
      ["4 streams MB/s", "mbps4", true],
      ["keep-alive req/s", "ka", true],
      ["keep-alive p99", "kaP99", false],
      ["new connections/s", "nc", true],
      ["new connection p50", "ncP50", false],
      ["new connection p99", "ncP99", false],
      ["CPU per 100 MB", "cpuMb", false],
      ["CPU per keep-alive request", "cpuKa", false],
      ["CPU per new connection", "cpuNc", false],
      ["idle KiB per connection", "idle", false],
    ]);
    // -workers 2 against 1: CPU per unit of work must not grow (bench/README.md, "Workers").
    variant("meshgate-w2", "(both sides -workers 2) ÷ meshgate (1 thread each)", [
      ["1 stream MB/s", "mbps1", true],
      ["4 streams MB/s", "mbps4", true],
      ["keep-alive req/s", "ka", true],
      ["new connections/s", "nc", true],
      ["CPU per 100 MB", "cpuMb", false],
      ["CPU per keep-alive request", "cpuKa", false],
      ["CPU per new connection", "cpuNc", false],
    ]);
    // The targets of issue #18: met or missed, by how much (README explains each miss).
    const targets: [string, keyof Row, boolean, Row | undefined, string, number][] = [
      ["1 stream MB/s", "mbps1", true, c, "consul-builtin", 1],
      ["4 streams MB/s", "mbps4", true, c, "consul-builtin", 1],
      ["keep-alive req/s", "ka", true, c, "consul-builtin", 1],
      ["keep-alive p50", "kaP50", false, c, "consul-builtin", 1],
      ["keep-alive p99", "kaP99", false, c, "consul-builtin", 1],
      ["new connections/s", "nc", true, c, "consul-builtin", 1],
      ["new connection p50", "ncP50", false, c, "consul-builtin", 1],
      ["new connection p99", "ncP99", false, c, "consul-builtin", 1],
      ["idle KiB per connection, per proxy", "idle", false, c, "consul-builtin", 1],
      ["idle KiB per connection, per proxy, as left", "idleLeft", false, c, "consul-builtin", 1],
      ["CPU per 100 MB", "cpuMb", false, c, "consul-builtin", 1],
      ["CPU per keep-alive request", "cpuKa", false, c, "consul-builtin", 1],
      ["CPU per new connection", "cpuNc", false, c, "consul-builtin", 1],
      ["1 stream MB/s", "mbps1", true, h, "haproxy", 1],
      ["4 streams MB/s", "mbps4", true, h, "haproxy", 1],
      ["new connections/s", "nc", true, h, "haproxy", 1],
      ["keep-alive req/s", "ka", true, h, "haproxy", 0.8],
    ];
    lines.push(
      "",
      "Targets (issue #18): meshgate ÷ the peer, against the target:",
      "",
      "| figure | peer | target | measured | |",
      "| --- | --- | --- | --- | --- |",
    );
    for (const [label, key, up, base, peer, goal] of targets) {
      const r = ratio(m[key], base?.[key], up);
      const value = base && m[key] > 0 && base[key] > 0
        ? (up ? m[key] / base[key] : base[key] / m[key])
        : NaN;
      const verdict = Number.isNaN(value) ? "–" : value >= goal ? "met" : "missed";
      lines.push(`| ${label} | ${peer} | ≥ ${goal.toFixed(1)}× | ${r} | ${verdict} |`);
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
      const [label, key, up] of [
        ["throughput 1 stream", "mbps1", true],
        ["throughput 4 streams", "mbps4", true],
        ["keep-alive req/s", "ka", true],
        ["new connections/s", "nc", true],
        ["idle KiB per connection per proxy", "idle", false],
        ["idle KiB per connection per proxy, as left", "idleLeft", false],
      ] as const
    ) {
      const digits = key === "idle" || key === "idleLeft" ? 1 : 0;
      console.log(
        `summary: ${label}: meshgate ${fmt(m[key], digits)} vs haproxy ` +
          `${fmt(h?.[key] ?? NaN, digits)} (${ratio(m[key], h?.[key], up)})` +
          (c ? `, vs consul-builtin ${fmt(c[key], digits)} (${ratio(m[key], c[key], up)})` : ""),
      );
    }
  }
  for (const note of notes) console.log(banner(note));
  if (!smoke) {
    Deno.mkdirSync(new URL("./results", import.meta.url), { recursive: true });
    Deno.writeTextFileSync(new URL("./results/latest.md", import.meta.url), text);
    console.log("bench: wrote bench/results/latest.md");
  }
}

if (import.meta.main) await main();
