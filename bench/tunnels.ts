// The ways from a client to a backend that the benchmark compares, all on 127.0.0.1: direct, a
// meshgate pair (two proxy processes, the test double as agent), a stunnel pair, a haproxy pair —
// the TLS ones with ECDSA P-256 certificates and client-certificate checks — and Consul's built-in
// proxy pair (two `consul connect proxy` processes and a real `consul agent -dev`).
import { x509 } from "../src/trust/_x509.ts";

/** A running tunnel: connect to `port` to reach the backend it was started for. */
export interface Tunnel {
  name: string;
  port: number;
  /** PIDs of the proxy processes, both sides (for CPU figures). */
  pids: number[];
  /** The same PIDs by side: the client side (the caller's) and the server side (the backend's). */
  sides?: { client: number[]; server: number[] };
  /**
   * The agent's PID, when the pair has one: the test double for meshgate (answering authorize),
   * the real Consul agent for consul-builtin (answering authorize and upstream discovery).
   */
  agentPid?: number;
  /** The meshgate server side's admin URL (authorize latency), when meshgate. */
  adminUrl?: string;
  /**
   * Runs a full garbage collection in both sides, when they have a collector that can be asked
   * (meshgate's V8 heaps): memory figures then read what is live, not garbage of earlier phases.
   */
  collectGarbage?: () => Promise<void>;
  close(): Promise<void>;
}

/** A free TCP port on loopback. */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Starts a child process, keeping its output for errors; `stop()` kills it. */
export function spawn(cmd: string, args: string[], env: Record<string, string> = {}) {
  const child = new Deno.Command(cmd, { args, env, stdout: "piped", stderr: "piped" }).spawn();
  let out = "";
  const drain = async (s: ReadableStream<Uint8Array>) => {
    for await (const t of s.pipeThrough(new TextDecoderStream())) out = (out + t).slice(-20_000);
  };
  const done = Promise.all([drain(child.stdout), drain(child.stderr)]);
  return {
    child,
    output: () => out,
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      const t = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
      }, 5000);
      await child.status;
      clearTimeout(t);
      await done;
    },
  };
}

/** Waits until something accepts TCP connections on `port`. */
export async function listening(
  port: number,
  what: string,
  ms = 20_000,
  output?: () => string,
): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(
    `${what} did not listen on ${port} within ${ms} ms${output ? `:\n${output()}` : ""}`,
  );
}

/** A CA plus server and client certificates (ECDSA P-256) for the stunnel and haproxy pairs. */
export async function pki(dir: string) {
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  const pem = async (k: CryptoKey) =>
    x509.PemConverter.encode(await crypto.subtle.exportKey("pkcs8", k), "PRIVATE KEY");
  const caKeys = await crypto.subtle.generateKey(alg, true, ["sign", "verify"]) as CryptoKeyPair;
  const now = Date.now();
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: "01",
    name: "CN=bench CA",
    keys: caKeys,
    signingAlgorithm: alg,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 86_400_000),
    extensions: [new x509.BasicConstraintsExtension(true, undefined, true)],
  });
  const issue = async (cn: string, serial: string) => {
    const keys = await crypto.subtle.generateKey(alg, true, ["sign", "verify"]) as CryptoKeyPair;
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial,
      subject: `CN=${cn}`,
      issuer: ca.subject,
      publicKey: keys.publicKey,
      signingKey: caKeys.privateKey,
      signingAlgorithm: alg,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + 86_400_000),
      extensions: [new x509.SubjectAlternativeNameExtension([{ type: "dns", value: cn }])],
    });
    const both = `${cert.toString("pem")}\n${await pem(keys.privateKey)}\n`;
    await Deno.writeTextFile(`${dir}/${cn}.pem`, both);
    return `${dir}/${cn}.pem`;
  };
  await Deno.writeTextFile(`${dir}/ca.pem`, ca.toString("pem") + "\n");
  return {
    ca: `${dir}/ca.pem`,
    server: await issue("server", "02"),
    client: await issue("client", "03"),
  };
}

/** The stunnel pair. */
export async function stunnelPair(dir: string, backend: number): Promise<Tunnel> {
  const p = await pki(dir);
  const [mid, front] = [freePort(), freePort()];
  const common = "foreground = yes\npid =\nsyslog = no\ndebug = 3\n";
  await Deno.writeTextFile(
    `${dir}/stunnel-server.conf`,
    `${common}[srv]\naccept = 127.0.0.1:${mid}\nconnect = 127.0.0.1:${backend}\n` +
      `cert = ${p.server}\nCAfile = ${p.ca}\nverifyChain = yes\nrequireCert = yes\n`,
  );
  await Deno.writeTextFile(
    `${dir}/stunnel-client.conf`,
    `${common}[cli]\nclient = yes\naccept = 127.0.0.1:${front}\nconnect = 127.0.0.1:${mid}\n` +
      `cert = ${p.client}\nCAfile = ${p.ca}\nverifyChain = yes\ncheckHost = server\n`,
  );
  const server = spawn("stunnel4", [`${dir}/stunnel-server.conf`]);
  const client = spawn("stunnel4", [`${dir}/stunnel-client.conf`]);
  await listening(mid, "stunnel (server)", 20_000, server.output);
  await listening(front, "stunnel (client)", 20_000, client.output);
  return {
    name: "stunnel",
    port: front,
    pids: [server.child.pid, client.child.pid],
    sides: { client: [client.child.pid], server: [server.child.pid] },
    close: async () => void await Promise.all([server.stop(), client.stop()]),
  };
}

/**
 * The haproxy pair (TCP mode, TLS with client certificates both ways). By default haproxy's
 * client side resumes TLS sessions with its server side; `reuse: false` (`no-ssl-reuse`) makes
 * every connection a full handshake, as meshgate's are (Deno's node:tls cannot resume).
 */
export async function haproxyPair(
  dir: string,
  backend: number,
  options: { reuse?: boolean; name?: string } = {},
): Promise<Tunnel> {
  const p = await pki(dir);
  const [mid, front] = [freePort(), freePort()];
  const global = "global\n  maxconn 8000\n  nbthread 1\ndefaults\n  mode tcp\n" +
    "  timeout connect 5s\n  timeout client 1h\n  timeout server 1h\n";
  await Deno.writeTextFile(
    `${dir}/haproxy-server.cfg`,
    `${global}frontend fe\n  bind 127.0.0.1:${mid} ssl crt ${p.server} ca-file ${p.ca} ` +
      `verify required\n  default_backend be\nbackend be\n  server app 127.0.0.1:${backend}\n`,
  );
  await Deno.writeTextFile(
    `${dir}/haproxy-client.cfg`,
    `${global}frontend fe\n  bind 127.0.0.1:${front}\n  default_backend be\nbackend be\n` +
      `  server mesh 127.0.0.1:${mid} ssl crt ${p.client} ca-file ${p.ca} verify required ` +
      `verifyhost server${options.reuse === false ? " no-ssl-reuse" : ""}\n`,
  );
  const server = spawn("haproxy", ["-f", `${dir}/haproxy-server.cfg`, "-db"]);
  const client = spawn("haproxy", ["-f", `${dir}/haproxy-client.cfg`, "-db"]);
  await listening(mid, "haproxy (server)", 20_000, server.output);
  await listening(front, "haproxy (client)", 20_000, client.output);
  return {
    name: options.name ?? "haproxy",
    port: front,
    pids: [server.child.pid, client.child.pid],
    sides: { client: [client.child.pid], server: [server.child.pid] },
    close: async () => void await Promise.all([server.stop(), client.stop()]),
  };
}

/**
 * The meshgate pair as in production: the test double as agent (its own process), the backend
 * registered with a sidecar served by one meshgate process, and a client-side meshgate process
 * with an upstream to it.
 */
export async function meshgatePair(
  backend: number,
  name: string,
  serverArgs: string[] = [],
  label = "meshgate",
  clientArgs: string[] = [],
): Promise<Tunnel> {
  const root = new URL("..", import.meta.url).pathname;
  const agentPort = freePort();
  const agent = spawn(Deno.execPath(), [
    "run",
    "-A",
    `${root}src/devagent/main.ts`,
    "-port",
    String(agentPort),
  ]);
  await listening(agentPort, "the test double");
  const http = `127.0.0.1:${agentPort}`;
  const [publicPort, front, adminPort] = [freePort(), freePort(), freePort()];
  const register = await fetch(`http://${http}/v1/agent/service/register`, {
    method: "PUT",
    body: JSON.stringify({
      ID: `${name}-1`,
      Name: name,
      Port: backend,
      Connect: { SidecarService: { Port: publicPort } },
    }),
  });
  await register.body?.cancel();
  // The CLI with a full collection on SIGUSR2, for the idle-memory figure (see collectGarbage).
  const cli = `${root}bench/_meshgate_gc.ts`;
  // MESHGATE_BENCH_CPU_PROF=<dir> writes a V8 CPU profile of each proxy process there on exit.
  const profDir = Deno.env.get("MESHGATE_BENCH_CPU_PROF");
  const prof = (side: string) =>
    profDir
      ? ["--cpu-prof", `--cpu-prof-dir=${profDir}`, `--cpu-prof-name=${side}-${name}.cpuprofile`]
      : [];
  const server = spawn(Deno.execPath(), [
    "run",
    "-A",
    "--v8-flags=--expose-gc",
    ...prof("server"),
    cli,
    "-sidecar-for",
    `${name}-1`,
    "-http-addr",
    http,
    "-admin-bind",
    `127.0.0.1:${adminPort}`,
    "-log-level",
    "warn",
    ...serverArgs,
  ]);
  const client = spawn(Deno.execPath(), [
    "run",
    "-A",
    "--v8-flags=--expose-gc",
    ...prof("client"),
    cli,
    "-service",
    "bench-client",
    "-upstream",
    `${name}:${front}`,
    "-http-addr",
    http,
    "-admin-bind",
    "",
    "-log-level",
    "warn",
    ...clientArgs,
  ]);
  await listening(publicPort, "meshgate (server side)");
  await listening(front, "meshgate (client side)");
  // Wait for the sidecar's health check to pass, so the client side has an endpoint.
  const until = Date.now() + 30_000;
  while (Date.now() < until) {
    const res = await fetch(`http://${http}/v1/health/connect/${name}?passing=1`);
    if ((await res.json()).length) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    name: label,
    port: front,
    pids: [server.child.pid, client.child.pid],
    sides: { client: [client.child.pid], server: [server.child.pid] },
    agentPid: agent.child.pid,
    adminUrl: `http://127.0.0.1:${adminPort}/`,
    collectGarbage: async () => {
      // Twice, seconds apart: after the load phases V8 returns freed pages over seconds, so a
      // reading right after one collection still holds them (measured: negative growth).
      for (const wait of [3000, 2000]) {
        for (const p of [server.child, client.child]) p.kill("SIGUSR2");
        await new Promise((r) => setTimeout(r, wait));
      }
    },
    close: async () => {
      await Promise.all([server.stop(), client.stop()]);
      await agent.stop();
    },
  };
}

const CONSUL_VERSION = "v1.22.7";

/**
 * The Consul binary: `MESHGATE_CONSUL_BIN`, else where `scripts/build_consul.sh` caches it
 * (`deno task consul:build`); undefined when there is none. Never builds: a build takes minutes.
 */
export function consulBinary(): string | undefined {
  const home = Deno.env.get("HOME") ?? "";
  const cache = Deno.env.get("MESHGATE_CACHE") ?? `${home}/.cache/meshgate`;
  for (
    const path of [Deno.env.get("MESHGATE_CONSUL_BIN"), `${cache}/consul-${CONSUL_VERSION}/consul`]
  ) {
    if (!path) continue;
    try {
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // not there
    }
  }
  return undefined;
}

/**
 * Writes `request` through `port` and resolves once at least one byte comes back; rejects on
 * EOF, an error, or after `ms`.
 */
export async function forwardsOnce(port: number, request: Uint8Array, ms = 5000): Promise<void> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const timer = setTimeout(() => conn.close(), ms);
  try {
    for (let off = 0; off < request.length;) off += await conn.write(request.subarray(off));
    const n = await conn.read(new Uint8Array(256));
    if (!n) throw new Error("closed without an answer");
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed by the timer */ }
  }
}

/**
 * Consul's built-in proxy pair as its documentation sets it up: a real `consul agent -dev` (its
 * own process, every port free), an intention allowing web → db (a `service-intentions` config
 * entry), `consul connect proxy -service db -listen … -service-addr <backend> -register` (the
 * server side, registered with a TTL check it keeps passing) and `consul connect proxy -service
 * web -upstream db:…` (the client side). Resolves once db's proxy passes its health check and
 * `probe` written to the client side gets an answer from the backend (end to end).
 */
export async function consulBuiltinPair(
  binary: string,
  dir: string,
  backend: number,
  probe: Uint8Array,
): Promise<Tunnel> {
  const ports = {
    http: freePort(),
    serf_lan: freePort(),
    serf_wan: freePort(),
    server: freePort(),
  };
  const hcl = `ports { http = ${ports.http}, https = -1, grpc = -1, grpc_tls = -1, dns = -1, ` +
    `serf_lan = ${ports.serf_lan}, serf_wan = ${ports.serf_wan}, server = ${ports.server} }`;
  const agent = spawn(binary, [
    "agent",
    "-dev",
    "-bind=127.0.0.1",
    "-client=127.0.0.1",
    "-log-level=warn",
    `-hcl=${hcl}`,
    `-hcl=data_dir = "${dir}"`,
    "-hcl=connect { enabled = true }",
  ]);
  const http = `127.0.0.1:${ports.http}`;
  const started: { stop(): Promise<void> }[] = [];
  const close = async () => {
    await Promise.all(started.map((p) => p.stop()));
    await agent.stop();
  };
  try {
    const until = Date.now() + 60_000;
    const ready = async (what: string, check: () => Promise<boolean>, logs: () => string) => {
      while (true) {
        if (await check().catch(() => false)) return;
        if (Date.now() > until) throw new Error(`consul-builtin: ${what} within 60 s:\n${logs()}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    };
    await ready("the agent elected no leader or had no Connect CA", async () => {
      const leader = await fetch(`http://${http}/v1/status/leader`).then((r) => r.text());
      if (leader.length <= 4) return false;
      const roots = await fetch(`http://${http}/v1/agent/connect/ca/roots`);
      return roots.ok && (await roots.json()).Roots?.length > 0;
    }, agent.output);
    const intention = await fetch(`http://${http}/v1/config`, {
      method: "PUT",
      body: JSON.stringify({
        Kind: "service-intentions",
        Name: "db",
        Sources: [{ Name: "web", Action: "allow" }],
      }),
    });
    if (!intention.ok) {
      throw new Error(`consul-builtin: intention web → db: ${await intention.text()}`);
    }
    await intention.body?.cancel();
    const [publicPort, front] = [freePort(), freePort()];
    const server = spawn(binary, [
      "connect",
      "proxy",
      `-http-addr=${http}`,
      "-log-level=warn",
      "-service=db",
      `-listen=127.0.0.1:${publicPort}`,
      `-service-addr=127.0.0.1:${backend}`,
      "-register",
    ]);
    started.push(server);
    const client = spawn(binary, [
      "connect",
      "proxy",
      `-http-addr=${http}`,
      "-log-level=warn",
      "-service=web",
      `-upstream=db:127.0.0.1:${front}`,
    ]);
    started.push(client);
    const logs = () => `db proxy:\n${server.output()}\nweb proxy:\n${client.output()}`;
    await ready("db's proxy did not pass its health check", async () => {
      const res = await fetch(`http://${http}/v1/health/connect/db?passing=1`);
      return (await res.json()).length > 0;
    }, logs);
    await ready(
      "the web proxy's upstream did not forward to the backend",
      () => forwardsOnce(front, probe).then(() => true),
      logs,
    );
    return {
      name: "consul-builtin",
      port: front,
      pids: [server.child.pid, client.child.pid],
      sides: { client: [client.child.pid], server: [server.child.pid] },
      agentPid: agent.child.pid,
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

/** No tunnel. */
export function direct(backend: number): Tunnel {
  return { name: "direct", port: backend, pids: [], close: () => Promise.resolve() };
}
