// Starts a real `consul agent -dev` on loopback with every port free, for the integration suite.
// The binary comes from `deno task consul:build` (MESHGATE_CONSUL_BIN, or the default cache).

const VERSION = "v1.22.7";

/** The Consul binary, or undefined when it has not been built here. */
export function consulBinary(): string | undefined {
  const explicit = Deno.env.get("MESHGATE_CONSUL_BIN");
  const home = Deno.env.get("HOME") ?? "";
  const cache = Deno.env.get("MESHGATE_CACHE") ?? `${home}/.cache/meshgate`;
  for (const path of [explicit, `${cache}/consul-${VERSION}/consul`]) {
    if (!path) continue;
    try {
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // not there
    }
  }
  return undefined;
}

/** Says loudly, once per file, that real-Consul tests are skipped. */
export function announceSkip(file: string): void {
  console.warn(
    `\n*** ${file}: SKIPPED — no Consul binary. Run \`deno task consul:build\` (needs Go). ***\n`,
  );
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** A `consul agent` process started by {@linkcode spawnDevConsul}. */
export interface DevConsulProcess {
  /** Kills the process if it runs (SIGTERM, SIGKILL after 5 s) and removes `dir`. Idempotent. */
  stop(): Promise<void>;
  /** Everything the agent printed (the last 256 KiB), across restarts. */
  logs(): string;
  /** Sends `signal` and waits until the process is gone (SIGKILL after `graceMs`). */
  kill(signal?: Deno.Signal, graceMs?: number): Promise<void>;
  /** Starts the process again (same arguments, same `dir`); resolves once `ready()` says so. */
  start(): Promise<void>;
  /** The process ID while it runs. */
  readonly pid: number | undefined;
  /** Whether the process runs. */
  readonly isRunning: boolean;
}

/** How {@linkcode spawnDevConsul} runs the agent. */
export interface SpawnConsulOptions {
  /** Pass `-dev` (in memory, a server that bootstraps alone). @default {true} */
  dev?: boolean;
  /** `-log-level`. @default {"warn"} */
  logLevel?: string;
  /** How long `ready()` may take before the agent is killed and its log tail thrown. @default {60000} */
  readyTimeoutMs?: number;
}

/**
 * Starts `consul agent` on loopback (`-dev` unless `options.dev` is false) with `extraArgs`, and
 * resolves once `ready()` says so (polled every 100 ms; an agent that exits, or is not ready
 * within `readyTimeoutMs`, fails with its log tail). `dir` (its data or config directory) is
 * removed when it stops. The one way the integration suite starts a Consul agent: the dev
 * agents of {@linkcode startConsul} and {@linkcode startConsulWithAcls}, and the servers and
 * clients of {@linkcode startConsulAgent}.
 */
export async function spawnDevConsul(
  binary: string,
  extraArgs: string[],
  dir: string,
  ready: () => Promise<boolean>,
  options: SpawnConsulOptions = {},
): Promise<DevConsulProcess> {
  const args = [
    "agent",
    ...(options.dev ?? true ? ["-dev"] : []),
    "-bind=127.0.0.1",
    "-client=127.0.0.1",
    `-log-level=${options.logLevel ?? "warn"}`,
    ...extraArgs,
  ];
  const readyTimeoutMs = options.readyTimeoutMs ?? 60_000;
  let log = "";
  let child: Deno.ChildProcess | undefined;
  let draining: Promise<unknown> = Promise.resolve();
  let stopped = false;
  const collect = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      log = (log + chunk).slice(-262_144);
    }
  };
  const kill = async (signal: Deno.Signal = "SIGTERM", graceMs = 5000) => {
    const c = child;
    if (!c) return;
    try {
      c.kill(signal);
    } catch {
      // already gone
    }
    const timer = setTimeout(() => {
      try {
        c.kill("SIGKILL");
      } catch {
        // gone
      }
    }, graceMs);
    await c.status;
    clearTimeout(timer);
    await draining;
    if (child === c) child = undefined;
  };
  const stop = async () => {
    stopped = true;
    await kill();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  const start = async () => {
    if (stopped) throw new Error("consul: stopped for good");
    if (child) throw new Error(`consul: already running (pid ${child.pid})`);
    const c = new Deno.Command(binary, { args, stdout: "piped", stderr: "piped" }).spawn();
    child = c;
    draining = Promise.all([collect(c.stdout), collect(c.stderr)]);
    let exited = false;
    c.status.then(() => (exited = true));
    const deadline = Date.now() + readyTimeoutMs;
    while (true) {
      if (exited) {
        await kill();
        throw new Error(`consul exited at start:\n${log.slice(-3000)}`);
      }
      try {
        if (await ready()) return;
      } catch {
        // not up yet
      }
      if (Date.now() > deadline) {
        await kill("SIGKILL");
        throw new Error(
          `consul did not become ready within ${readyTimeoutMs / 1000} s:\n${log.slice(-3000)}`,
        );
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  try {
    await start();
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    stop,
    logs: () => log,
    kill,
    start,
    get pid() {
      return child?.pid;
    },
    get isRunning() {
      return child !== undefined;
    },
  };
}

/** Whether a dev agent at `url` has a leader and a Connect CA (with `fetchFn`, e.g. over mTLS). */
export async function hasLeaderAndRoots(
  url: string,
  fetchFn: (input: string, init?: RequestInit) => Promise<Response> = fetch,
  headers: Record<string, string> = {},
): Promise<boolean> {
  const leader = await fetchFn(`${url}/v1/status/leader`, { headers }).then((r) => r.text());
  if (leader.length <= 4) return false;
  const roots = await fetchFn(`${url}/v1/agent/connect/ca/roots`, { headers });
  return roots.ok && !!(await roots.json()).Roots?.length;
}

/** A running Consul dev agent. */
export interface RealConsul extends AsyncDisposable {
  url: string;
  address: string;
  binary: string;
  stop(): Promise<void>;
  /** Everything the agent printed so far (at `-log-level=warn`). */
  logs(): string;
}

/** Starts `consul agent -dev` and waits for its leader and its Connect CA. */
export async function startConsul(): Promise<RealConsul> {
  const binary = consulBinary();
  if (!binary) throw new Error("no consul binary");
  const ports = {
    http: freePort(),
    serf_lan: freePort(),
    serf_wan: freePort(),
    server: freePort(),
  };
  const dataDir = await Deno.makeTempDir({ prefix: "meshgate-consul-" });
  const hcl = `ports { http = ${ports.http}, https = -1, grpc = -1, grpc_tls = -1, dns = -1, ` +
    `serf_lan = ${ports.serf_lan}, serf_wan = ${ports.serf_wan}, server = ${ports.server} }`;
  const url = `http://127.0.0.1:${ports.http}`;
  const { stop, logs } = await spawnDevConsul(
    binary,
    [`-hcl=${hcl}`, `-hcl=data_dir = "${dataDir}"`, `-hcl=connect { enabled = true }`],
    dataDir,
    () => hasLeaderAndRoots(url),
  );
  return {
    url,
    address: `127.0.0.1:${ports.http}`,
    binary,
    stop,
    logs,
    [Symbol.asyncDispose]: stop,
  };
}

/** A running Consul dev agent with ACLs on and `default_policy = "deny"`. */
export interface AclConsul extends RealConsul {
  /** The initial management token (`acl.tokens.initial_management`), also the agent's token. */
  managementToken: string;
}

/**
 * Starts `consul agent -dev` with `acl { enabled = true, default_policy = "deny" }` and a fresh
 * initial management token (also given to the agent as its own token, as operators do so that
 * it can sync its node), from a config file in a temp dir. Waits until the leader has
 * bootstrapped that token and the Connect CA answers.
 */
export async function startConsulWithAcls(): Promise<AclConsul> {
  const binary = consulBinary();
  if (!binary) throw new Error("no consul binary");
  const managementToken = crypto.randomUUID();
  const ports = {
    http: freePort(),
    serf_lan: freePort(),
    serf_wan: freePort(),
    server: freePort(),
  };
  const dir = await Deno.makeTempDir({ prefix: "meshgate-consul-acl-" });
  const configFile = `${dir}/agent.hcl`;
  await Deno.writeTextFile(
    configFile,
    `data_dir = "${dir}/data"
ports {
  http = ${ports.http}
  https = -1
  grpc = -1
  grpc_tls = -1
  dns = -1
  serf_lan = ${ports.serf_lan}
  serf_wan = ${ports.serf_wan}
  server = ${ports.server}
}
connect { enabled = true }
acl {
  enabled = true
  default_policy = "deny"
  enable_token_persistence = false
  tokens {
    initial_management = "${managementToken}"
    agent = "${managementToken}"
  }
}
`,
  );
  const url = `http://127.0.0.1:${ports.http}`;
  const headers = { "X-Consul-Token": managementToken };
  // Ready once the leader has bootstrapped the management token and the Connect CA answers.
  const { stop, logs } = await spawnDevConsul(
    binary,
    [`-config-file=${configFile}`],
    dir,
    async () => {
      const self = await fetch(`${url}/v1/acl/token/self`, { headers });
      await self.body?.cancel();
      return self.ok && await hasLeaderAndRoots(url, fetch, headers);
    },
  );
  return {
    url,
    address: `127.0.0.1:${ports.http}`,
    binary,
    managementToken,
    stop,
    logs,
    [Symbol.asyncDispose]: stop,
  };
}

/**
 * Runs the `consul` CLI against `consul` as an operator does (`CONSUL_HTTP_ADDR`,
 * `CONSUL_HTTP_TOKEN`) and returns its standard output; throws with its error output when it
 * exits non-zero.
 */
export async function consulCli(
  consul: RealConsul,
  token: string,
  args: string[],
): Promise<string> {
  const out = await new Deno.Command(consul.binary, {
    args,
    env: { CONSUL_HTTP_ADDR: consul.address, CONSUL_HTTP_TOKEN: token },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(
      `consul ${args.join(" ")}: exit ${out.code}: ${new TextDecoder().decode(out.stderr)}`,
    );
  }
  return text;
}

/** An ACL token as `consul acl token create -format json` prints it. */
export interface AclToken {
  /** The secret, sent as `X-Consul-Token`. */
  SecretID: string;
  /** The public ID, which Consul's "Permission denied" messages name. */
  AccessorID: string;
}

/**
 * Creates an ACL token with the management token, as an operator does:
 * `consul acl token create -service-identity <svc>` for each of `serviceIdentities`, plus, with
 * `rules`, a policy of those rules (`consul acl policy create`) linked to the token.
 */
export async function createAclToken(
  consul: AclConsul,
  options: { description: string; serviceIdentities?: string[]; rules?: string },
): Promise<AclToken> {
  const args = ["acl", "token", "create", "-format", "json", "-description", options.description];
  for (const svc of options.serviceIdentities ?? []) args.push("-service-identity", svc);
  if (options.rules !== undefined) {
    const name = `policy-${crypto.randomUUID().slice(0, 8)}`;
    await consulCli(consul, consul.managementToken, [
      "acl",
      "policy",
      "create",
      "-name",
      name,
      "-rules",
      options.rules,
    ]);
    args.push("-policy-name", name);
  }
  return JSON.parse(await consulCli(consul, consul.managementToken, args)) as AclToken;
}

// ---------------------------------------------------------------------------------------------
// Agents of any shape (servers, clients, several datacenters), for the multi-datacenter and
// server-cluster suites.

const handedOut = new Set<number>();

/**
 * `count` ports that accept a TCP listener on 127.0.0.1 right now, scanning `from`..`to` (a
 * helper's own range, outside the kernel's ephemeral range so that no outgoing socket takes one
 * while an agent restarts). A port is handed out once per process.
 */
export function reservePorts(count: number, range: { from: number; to: number }): number[] {
  const out: number[] = [];
  for (let port = range.from; port <= range.to && out.length < count; port++) {
    if (handedOut.has(port)) continue;
    try {
      Deno.listen({ hostname: "127.0.0.1", port }).close();
    } catch {
      continue; // taken
    }
    handedOut.add(port);
    out.push(port);
  }
  if (out.length < count) {
    throw new Error(
      `reservePorts: only ${out.length} of ${count} free ports in ${range.from}-${range.to}`,
    );
  }
  return out;
}

/** The ports of one agent (DNS, HTTPS and gRPC are off). */
export interface ConsulPorts {
  /** HTTP API. */
  http: number;
  /** Serf LAN gossip (TCP and UDP). */
  serfLan: number;
  /** Serf WAN gossip (servers). */
  serfWan: number;
  /** Server RPC and Raft. */
  server: number;
}

/** Four ports for one agent from `range` (see {@linkcode reservePorts}). */
export function reserveAgentPorts(range: { from: number; to: number }): ConsulPorts {
  const [http, serfLan, serfWan, server] = reservePorts(4, range) as [
    number,
    number,
    number,
    number,
  ];
  return { http, serfLan, serfWan, server };
}

/** How to start one agent with {@linkcode startConsulAgent}. */
export interface ConsulAgentOptions {
  /** Node name, unique in the cluster. */
  node: string;
  /** Its ports; the agent keeps them across restarts. */
  ports: ConsulPorts;
  /** `-datacenter`. @default {"dc1"} */
  datacenter?: string;
  /** `-dev` (in-memory, a server that bootstraps alone). */
  dev?: boolean;
  /** `-server`. */
  server?: boolean;
  /** `-bootstrap-expect`. */
  bootstrapExpect?: number;
  /** `-retry-join` addresses (`127.0.0.1:<serf_lan>`). */
  retryJoin?: string[];
  /** `-retry-join-wan` addresses (`127.0.0.1:<serf_wan>`). */
  retryJoinWan?: string[];
  /** More `-hcl` fragments. */
  hcl?: string[];
  /** `-log-level`. @default {"warn"} */
  logLevel?: string;
}

/** One real agent process, which can be killed and started again on the same data dir. */
export interface ConsulAgent extends AsyncDisposable {
  /** The node name. */
  readonly node: string;
  /** The datacenter. */
  readonly datacenter: string;
  /** Its ports. */
  readonly ports: ConsulPorts;
  /** `http://127.0.0.1:<http>`. */
  readonly url: string;
  /** `127.0.0.1:<http>`, for `AgentClient({ address })`. */
  readonly address: string;
  /** The binary. */
  readonly binary: string;
  /** The data dir (kept across restarts, removed by `stop()`). */
  readonly dataDir: string;
  /** The process ID while it runs. */
  readonly pid: number | undefined;
  /** Whether the process runs. */
  readonly isRunning: boolean;
  /** Its log so far (the last 256 KiB), across restarts. */
  logs(): string;
  /** Sends `signal` and waits until the process is gone (SIGKILL after `graceMs`). */
  kill(signal?: Deno.Signal, graceMs?: number): Promise<void>;
  /** Starts the process again (same flags, same data dir); resolves once HTTP answers. */
  start(): Promise<void>;
  /** Kills the process if it runs and removes the data dir. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts one `consul agent` on loopback and waits until its HTTP API answers (not for a leader:
 * a cluster has none until enough servers joined; see {@linkcode waitForLeader}).
 */
export async function startConsulAgent(options: ConsulAgentOptions): Promise<ConsulAgent> {
  const binary = consulBinary();
  if (!binary) throw new Error("no consul binary");
  const { node, ports } = options;
  const datacenter = options.datacenter ?? "dc1";
  const dataDir = await Deno.makeTempDir({ prefix: `meshgate-consul-${node}-` });
  const args = [
    `-node=${node}`,
    `-datacenter=${datacenter}`,
    `-data-dir=${dataDir}`,
    "-hcl=disable_update_check = true",
    `-hcl=ports { http = ${ports.http}, https = -1, grpc = -1, grpc_tls = -1, dns = -1, ` +
    `serf_lan = ${ports.serfLan}, serf_wan = ${ports.serfWan}, server = ${ports.server} }`,
    ...(options.server ? ["-server"] : []),
    ...(options.bootstrapExpect ? [`-bootstrap-expect=${options.bootstrapExpect}`] : []),
    ...(options.retryJoin ?? []).flatMap((a) => [`-retry-join=${a}`, "-retry-interval=1s"]),
    ...(options.retryJoinWan ?? []).flatMap((
      a,
    ) => [`-retry-join-wan=${a}`, "-retry-interval-wan=1s"]),
    ...(options.hcl ?? []).map((h) => `-hcl=${h}`),
  ];
  const url = `http://127.0.0.1:${ports.http}`;
  // Ready once HTTP answers: a cluster has no leader until enough servers joined.
  const agent = await spawnDevConsul(binary, args, dataDir, async () => {
    const res = await fetch(`${url}/v1/agent/self`, { signal: AbortSignal.timeout(2000) });
    await res.body?.cancel();
    return res.ok;
  }, { dev: options.dev ?? false, logLevel: options.logLevel, readyTimeoutMs: 30_000 });
  return {
    node,
    datacenter,
    ports,
    url,
    address: `127.0.0.1:${ports.http}`,
    binary,
    dataDir,
    get pid() {
      return agent.pid;
    },
    get isRunning() {
      return agent.isRunning;
    },
    logs: agent.logs,
    kill: agent.kill,
    start: agent.start,
    stop: agent.stop,
    [Symbol.asyncDispose]: agent.stop,
  };
}

/**
 * Polls `check` every `intervalMs` until it returns a value other than `undefined`/`false`, or
 * fails after `ms` with `what` (and `detail()`, e.g. agent logs). Errors thrown by `check` count
 * as "not yet"; the last one is in the failure message.
 */
export async function waitUntil<T>(
  what: string,
  ms: number,
  check: () => T | undefined | false | Promise<T | undefined | false>,
  options: { intervalMs?: number; detail?: () => string } = {},
): Promise<T> {
  const started = Date.now();
  let last = "";
  while (true) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v as T;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    if (Date.now() - started > ms) {
      throw new Error(
        `timed out after ${ms} ms waiting for ${what}` + (last ? ` (last error: ${last})` : "") +
          (options.detail ? `\n${options.detail()}` : ""),
      );
    }
    await new Promise((r) => setTimeout(r, options.intervalMs ?? 100));
  }
}

/** `GET` a Consul HTTP path as JSON, with a 5 s timeout; throws on a non-2xx answer. */
export async function consulGet<T = unknown>(url: string, path: string): Promise<T> {
  const res = await fetch(`${url}${path}`, { signal: AbortSignal.timeout(5000) });
  const text = await res.text();
  if (!res.ok) throw new Error(`GET ${path}: HTTP ${res.status}: ${text.slice(0, 300)}`);
  return JSON.parse(text) as T;
}

/**
 * Waits until the agent at `url` knows a Raft leader and returns its server address
 * (`127.0.0.1:<server port>`); `not` skips a leader that is known to be dead.
 */
export function waitForLeader(
  url: string,
  ms: number,
  options: { not?: string; detail?: () => string } = {},
): Promise<string> {
  return waitUntil(`a Raft leader seen by ${url}`, ms, async () => {
    const leader = await consulGet<string>(url, "/v1/status/leader");
    return leader && leader !== options.not ? leader : undefined;
  }, { intervalMs: 100, detail: options.detail });
}
