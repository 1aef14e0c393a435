// What Deno's own socket layers cost, measured in one process: CPU per 1 KiB ping-pong round
// trip (two writes and two reads) over loopback with node:net, Deno.connect and node:tls, and
// through one in-process hop of meshgate's byte pipe. The floor a Deno proxy cannot go under.
import net from "node:net";
import tls from "node:tls";
import { ConnectCA } from "../src/devagent/ca.ts";
import { pipeSockets } from "../src/net/pipe.ts";

/** One primitive's figure. */
export interface PrimitiveCost {
  name: string;
  /** CPU µs (user + system, this process) per round trip. */
  cpuUs: number;
}

const MSG = new Uint8Array(1024);

/** Ping-pongs `rounds` times over a connected node socket; resolves when done. */
function pingPong(socket: net.Socket, rounds: number): Promise<void> {
  let n = 0;
  let got = 0;
  const done = Promise.withResolvers<void>();
  socket.on("data", (d: Uint8Array) => {
    got += d.length;
    while (got >= MSG.length) {
      got -= MSG.length;
      if (++n >= rounds) return done.resolve();
      socket.write(MSG);
    }
  });
  socket.write(MSG);
  return done.promise;
}

function listen(server: net.Server): Promise<number> {
  return new Promise((r) =>
    server.listen(0, "127.0.0.1", () => r((server.address() as net.AddressInfo).port))
  );
}

const echo = (s: net.Socket) => {
  s.on("error", () => {});
  s.on("data", (d: Uint8Array) => s.write(d));
};

async function timed(rounds: number, fn: () => Promise<void>): Promise<number> {
  const before = process.cpuUsage();
  await fn();
  const used = process.cpuUsage(before);
  return (used.user + used.system) / rounds;
}

/** Ping-pongs over `client` once it is `ready`, then closes it and the `servers`. */
async function pingPongOver(
  client: net.Socket,
  ready: string,
  rounds: number,
  servers: net.Server[],
): Promise<number> {
  await new Promise((r) => client.once(ready, r));
  try {
    return await timed(rounds, () => pingPong(client, rounds));
  } finally {
    client.destroy();
    for (const s of servers) await new Promise((r) => s.close(r));
  }
}

async function nodeNet(rounds: number): Promise<number> {
  const server = net.createServer({ noDelay: true }, echo);
  const port = await listen(server);
  const c = net.connect({ port, host: "127.0.0.1", noDelay: true });
  return await pingPongOver(c, "connect", rounds, [server]);
}

async function denoNet(rounds: number): Promise<number> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const serving = (async () => {
    const conn = await listener.accept();
    const buf = new Uint8Array(65536);
    for (;;) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) break;
      await conn.write(buf.subarray(0, n));
    }
    conn.close();
  })();
  const c = await Deno.connect({
    hostname: "127.0.0.1",
    port: (listener.addr as Deno.NetAddr).port,
  });
  c.setNoDelay(true);
  const buf = new Uint8Array(65536);
  try {
    return await timed(rounds, async () => {
      for (let i = 0; i < rounds; i++) {
        await c.write(MSG);
        for (let got = 0; got < MSG.length;) got += (await c.read(buf)) ?? MSG.length;
      }
    });
  } finally {
    c.close();
    await serving;
    listener.close();
  }
}

async function nodeTls(rounds: number): Promise<number> {
  const ca = await ConnectCA.create();
  const { cert } = await ca.signLeaf("bench");
  const server = tls.createServer({ cert: cert.CertPEM, key: cert.PrivateKeyPEM }, echo);
  const port = await listen(server);
  const c = tls.connect({
    port,
    host: "127.0.0.1",
    rejectUnauthorized: false,
    checkServerIdentity: () => undefined,
  } as tls.ConnectionOptions);
  return await pingPongOver(c, "secureConnect", rounds, [server]);
}

/** client → plain hop through pipeSockets → echo: the pipe's own cost is the difference. */
async function pipeHop(rounds: number): Promise<number> {
  const backend = net.createServer({ noDelay: true }, echo);
  const backendPort = await listen(backend);
  const hop = net.createServer({ noDelay: true, allowHalfOpen: true }, (a) => {
    const b = net.connect({
      port: backendPort,
      host: "127.0.0.1",
      noDelay: true,
      allowHalfOpen: true,
    });
    pipeSockets(a, b);
  });
  const port = await listen(hop);
  const c = net.connect({ port, host: "127.0.0.1", noDelay: true });
  return await pingPongOver(c, "connect", rounds, [hop, backend]);
}

/** Measures every primitive (best of `reps`). */
export async function measurePrimitives(rounds = 20_000, reps = 3): Promise<PrimitiveCost[]> {
  const kinds: [string, (n: number) => Promise<number>][] = [
    ["node:net echo", nodeNet],
    ["Deno.connect echo", denoNet],
    ["node:tls echo", nodeTls],
    ["node:net through one pipeSockets hop", pipeHop],
  ];
  const out: PrimitiveCost[] = [];
  for (const [name, fn] of kinds) {
    let best = Infinity;
    for (let r = 0; r < reps; r++) best = Math.min(best, await fn(rounds));
    out.push({ name, cpuUs: best });
  }
  return out;
}

if (import.meta.main) {
  for (const p of await measurePrimitives()) {
    console.log(`${p.name}: ${p.cpuUs.toFixed(1)} µs CPU per round trip`);
  }
}
