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

/** A running Consul dev agent. */
export interface RealConsul extends AsyncDisposable {
  url: string;
  address: string;
  binary: string;
  stop(): Promise<void>;
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
  const child = new Deno.Command(binary, {
    args: [
      "agent",
      "-dev",
      "-bind=127.0.0.1",
      "-client=127.0.0.1",
      "-log-level=warn",
      `-hcl=${hcl}`,
      `-hcl=data_dir = "${dataDir}"`,
      `-hcl=connect { enabled = true }`,
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const logs: string[] = [];
  const collect = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) logs.push(chunk);
  };
  const draining = Promise.all([collect(child.stdout), collect(child.stderr)]);
  const url = `http://127.0.0.1:${ports.http}`;
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch {
      // already gone
    }
    const timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch {
        // gone
      }
    }, 5000);
    await child.status;
    clearTimeout(timer);
    await draining;
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  };
  const deadline = Date.now() + 60_000;
  while (true) {
    try {
      const leader = await fetch(`${url}/v1/status/leader`).then((r) => r.text());
      if (leader.length > 4) {
        const roots = await fetch(`${url}/v1/agent/connect/ca/roots`);
        if (roots.ok && (await roots.json()).Roots?.length) break;
      }
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`consul did not become ready within 60 s:\n${logs.join("").slice(-2000)}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    url,
    address: `127.0.0.1:${ports.http}`,
    binary,
    stop,
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
  const child = new Deno.Command(binary, {
    args: [
      "agent",
      "-dev",
      "-bind=127.0.0.1",
      "-client=127.0.0.1",
      "-log-level=warn",
      `-config-file=${configFile}`,
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const logs: string[] = [];
  const collect = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) logs.push(chunk);
  };
  const draining = Promise.all([collect(child.stdout), collect(child.stderr)]);
  const url = `http://127.0.0.1:${ports.http}`;
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch {
      // already gone
    }
    const timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch {
        // gone
      }
    }, 5000);
    await child.status;
    clearTimeout(timer);
    await draining;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  const headers = { "X-Consul-Token": managementToken };
  const deadline = Date.now() + 60_000;
  while (true) {
    try {
      const self = await fetch(`${url}/v1/acl/token/self`, { headers });
      await self.body?.cancel();
      if (self.ok) {
        const roots = await fetch(`${url}/v1/agent/connect/ca/roots`, { headers });
        if (roots.ok && (await roots.json()).Roots?.length) break;
      }
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`consul did not become ready within 60 s:\n${logs.join("").slice(-2000)}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    url,
    address: `127.0.0.1:${ports.http}`,
    binary,
    managementToken,
    stop,
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
