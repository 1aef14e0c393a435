// Shared test helpers: a test double on loopback with test-friendly timings.
import { AgentClient } from "../src/agent/client.ts";
import {
  type RunningDevAgent,
  startDevAgent,
  type StartDevAgentOptions,
} from "../src/devagent/server.ts";

/** Starts the Consul test double on 127.0.0.1:0 with fast, deterministic timings. */
export function devAgent(options: StartDevAgentOptions = {}): Promise<RunningDevAgent> {
  return startDevAgent({
    blockingJitter: false,
    rotationJitterMs: 0,
    tcpCheckIntervalMs: 100,
    ...options,
  });
}

/** A client for a running double, with fast watch defaults. */
export function clientFor(dev: { address: string }, token?: string): AgentClient {
  return new AgentClient({
    address: dev.address,
    token,
    watchDefaults: { minIntervalMs: 0, backoffBaseMs: 20, backoffMaxMs: 200 },
  });
}

/** Polls `check` until it returns true, up to `ms`. For waiting on outcomes, never for timing. */
export async function eventually(
  check: () => boolean | Promise<boolean>,
  ms = 5000,
  what = "condition",
): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

/** Takes the next value of an async iterator, failing after `ms`. */
export async function next<T>(it: AsyncIterator<T>, ms = 5000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const r = await Promise.race([
      it.next(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no value within ${ms} ms`)), ms);
      }),
    ]);
    if (r.done) throw new Error("iterator ended");
    return r.value;
  } finally {
    clearTimeout(timer);
  }
}

/** Reads a shared fixture from ../shared/fixtures/consul/. */
export function fixture(name: string): string {
  return Deno.readTextFileSync(new URL(`../../shared/fixtures/consul/${name}`, import.meta.url));
}

/** A port that was free a moment ago on 127.0.0.1 (for configs that need a fixed port). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** A child process whose stderr is collected (for log assertions) and stdout discarded. */
export function spawnLogged(command: string, args: string[], env?: Record<string, string>) {
  const child = new Deno.Command(command, { args, env, stdout: "piped", stderr: "piped" }).spawn();
  let logs = "";
  const reading = (async () => {
    for await (const c of child.stderr.pipeThrough(new TextDecoderStream())) logs += c;
  })();
  const discarding = child.stdout.cancel();
  return {
    child,
    /** Everything written to stderr so far. */
    logs: () => logs,
    /** Resolves with the exit code once the process and its pipes are done. */
    async exited(): Promise<number> {
      const { code } = await child.status;
      await Promise.all([reading, discarding]);
      return code;
    },
  };
}

/** Registers `db-1` (an echo app on loopback) with a sidecar on a free public port. */
export async function registerEchoDb(agent: AgentClient) {
  const { echoServer } = await import("./e2e/_net.ts");
  const app = await echoServer();
  const port = freePort();
  await agent.register({
    ID: "db-1",
    Name: "db",
    Port: app.port,
    Connect: { SidecarService: { Port: port } },
  });
  return { app, port };
}

/**
 * A mesh client of `port` (a sidecar's public listener): TLS with `service`'s leaf from `agent`,
 * trusting the agent's roots. Resolves once the handshake is done.
 */
export async function meshClient(agent: AgentClient, port: number, service = "web") {
  const { tlsClient } = await import("./e2e/_net.ts");
  const leaf = (await agent.leaf(service)).value;
  const roots = (await agent.roots()).value.Roots.map((r) => r.RootCert);
  return await tlsClient(port, { cert: leaf.CertPEM, key: leaf.PrivateKeyPEM, ca: roots });
}

/**
 * `items[index]` (a negative index counts from the end), failing the test with `what` named
 * when there is no such element — instead of a `!` that turns a missing element into a
 * TypeError somewhere later.
 */
export function nth<T>(items: ArrayLike<T>, index: number, what = "element"): T {
  const item = items[index < 0 ? items.length + index : index];
  if (item === undefined) {
    throw new Error(`expected ${what} at index ${index}, but there are ${items.length} items`);
  }
  return item;
}
