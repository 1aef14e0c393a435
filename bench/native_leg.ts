// The outbound leg's primitives, node:tls vs Deno.connectTls (issue #18.2): CPU of the hop
// process (local accept → mTLS dial with our verification → pipe) per 1 KiB round trip, per new
// connection and per 100 MiB, and the latency of a request written in two pieces. The mTLS echo
// server (node:tls, as meshgate's inbound) and the client each run in their own process, so
// only the hop's CPU is counted.
//
//   deno run -A bench/native_leg.ts [dial|rtt|conn|bulk|split|idle|all] [repetitions]
import net from "node:net";
import tls from "node:tls";
import { ConnectCA } from "../src/devagent/ca.ts";
import { pipeConns } from "../src/net/native_pipe.ts";
import { pipeSockets } from "../src/net/pipe.ts";
import { dialMesh, type MeshEndpoint } from "../src/outbound/dialer.ts";
import { dialMeshNative } from "../src/outbound/native_tls.ts";
import { TlsMaterial } from "../src/trust/material.ts";

const self = new URL(import.meta.url).pathname;
const [mode = "all", repsArg = "3"] = Deno.args;
const MSG = new Uint8Array(1024);

async function writeAll(c: Deno.Conn, b: Uint8Array): Promise<void> {
  for (let o = 0; o < b.length;) o += await c.write(b.subarray(o));
}

// --- child processes ------------------------------------------------------------------------

if (mode === "server") {
  // Env: CERT KEY CA; REQ=1: answers 200 bytes per 200 received (a request/response server).
  const env = (k: string) => Deno.env.get(k)!;
  const server = tls.createServer({
    cert: env("CERT"),
    key: env("KEY"),
    ca: [env("CA")],
    requestCert: true,
    rejectUnauthorized: true,
    allowHalfOpen: true,
  }, (s) => {
    s.setNoDelay(true);
    s.on("error", () => {});
    if (Deno.env.get("REQ")) {
      let n = 0;
      s.on("data", (d: Uint8Array) => {
        for (n += d.length; n >= 200; n -= 200) s.write(new Uint8Array(200));
      });
      s.on("end", () => s.end());
      return;
    }
    // Not s.pipe(s): Deno 2.9's node:tls loses an end-of-stream that arrives while the socket
    // is paused (see src/net/pipe.ts), and pipe() pauses it under backpressure.
    s.on("data", (d: Uint8Array) => s.write(d));
    s.on("end", () => s.end());
  });
  server.listen(0, "127.0.0.1", () => console.log((server.address() as net.AddressInfo).port));
  await new Promise(() => {});
}

if (mode === "client") {
  // Args: port n kind; prints "start", then "end <detail>" around the measured part.
  const [, portArg, nArg, kind] = Deno.args;
  const port = Number(portArg);
  const n = Number(nArg);
  const buf = new Uint8Array(256 * 1024);
  const connect = async () => {
    const c = await Deno.connect({ hostname: "127.0.0.1", port });
    c.setNoDelay(true);
    return c;
  };
  const roundTrip = async (c: Deno.Conn, out: Uint8Array, want: number) => {
    await writeAll(c, out);
    for (let got = 0; got < want;) got += (await c.read(buf)) ?? want;
  };
  if (kind === "rtt") {
    const c = await connect();
    for (let i = 0; i < 500; i++) await roundTrip(c, MSG, MSG.length);
    console.log("start");
    for (let i = 0; i < n; i++) await roundTrip(c, MSG, MSG.length);
    console.log("end");
    c.close();
  } else if (kind === "conn") {
    console.log("start");
    for (let i = 0; i < n; i++) {
      const c = await connect();
      await roundTrip(c, MSG, MSG.length);
      c.close();
    }
    console.log("end");
  } else if (kind === "idle") {
    // n connections that each carried 1 KiB end to end, then held open until killed.
    console.log("start");
    const open: Deno.Conn[] = [];
    for (let i = 0; i < n; i++) {
      const c = await connect();
      await roundTrip(c, MSG, MSG.length);
      open.push(c);
    }
    console.log("end");
    setInterval(() => {}, 1 << 30); // open connections alone do not keep the process alive
    await new Promise(() => {});
  } else if (kind === "bulk") {
    const c = await connect();
    console.log("start");
    const total = n * 1024 * 1024;
    const reading = (async () => {
      let got = 0;
      for (let r; (r = await c.read(buf)) !== null;) got += r;
      return got;
    })();
    const chunk = new Uint8Array(256 * 1024);
    for (let sent = 0; sent < total; sent += chunk.length) await writeAll(c, chunk);
    await c.closeWrite();
    const got = await reading;
    console.log(`end ${got === total ? "ok" : `got ${got} of ${total}`}`);
    c.close();
  } else if (kind === "split") {
    // A 200-byte request written as two 100-byte pieces; the server answers once it has both.
    const c = await connect();
    const piece = new Uint8Array(100);
    const times: number[] = [];
    console.log("start");
    for (let i = 0; i < n; i++) {
      const t = performance.now();
      await writeAll(c, piece);
      await writeAll(c, piece);
      for (let got = 0; got < 200;) got += (await c.read(buf)) ?? 200;
      times.push(performance.now() - t);
    }
    times.sort((a, b) => a - b);
    const q = (p: number) => times[Math.min(times.length - 1, Math.floor(p * times.length))]!;
    console.log(`end p50 ${q(0.5).toFixed(2)} ms, p99 ${q(0.99).toFixed(2)} ms`);
    c.close();
  }
  Deno.exit(0);
}

// --- the hops -------------------------------------------------------------------------------

const ca = await ConnectCA.create();
const db = (await ca.signLeaf("db")).cert;
const web = (await ca.signLeaf("web")).cert;
const roots = ca.roots.map((r) => r.RootCert);
const material = new TlsMaterial();
await material.setRoots({
  ActiveRootID: ca.activeRoot.ID,
  TrustDomain: ca.trustDomain,
  Roots: ca.roots,
});
await material.setLeaf({ ...web, CreateIndex: 1, ModifyIndex: 1 });

async function startServer(req: boolean) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", self, "server"],
    env: {
      CERT: db.CertPEM,
      KEY: db.PrivateKeyPEM,
      CA: roots.join("\n"),
      ...(req ? { REQ: "1" } : {}),
    },
    stdout: "piped",
  }).spawn();
  const reader = child.stdout.getReader();
  const port = Number(new TextDecoder().decode((await reader.read()).value).trim());
  reader.releaseLock();
  return {
    port,
    async close() {
      child.kill();
      await child.status;
      await child.stdout.cancel().catch(() => {});
    },
  };
}

type Hop = { port: number; close(): Promise<void> };
/** pipeConns' buffer per direction (PIPE_BUFFER env). */
const BUFFER_BYTES = Number(Deno.env.get("PIPE_BUFFER") ?? 16 * 1024);
type HopKind = "node" | "native";

/** Today: node:net accept → dialMesh (node:tls) → pipeSockets. */
async function nodeHop(upstream: MeshEndpoint): Promise<Hop> {
  const server = net.createServer(
    { allowHalfOpen: true, pauseOnConnect: true, noDelay: true },
    async (client) => {
      client.on("error", () => {});
      const r = await dialMesh(material, upstream, 5000);
      if (!r.ok) return void client.destroy();
      pipeSockets(client, r.connection.socket, { held: { b: r.connection.held.release() } });
    },
  );
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

/** Native: Deno.listen accept → dialMeshNative (Deno.connectTls) → pipeConns. */
function nativeHop(upstream: MeshEndpoint): Hop {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepting = (async () => {
    for await (const client of listener) {
      client.setNoDelay(true);
      void dialMeshNative(material, upstream, { timeoutMs: 5000 }).then((r) => {
        if (r.ok) pipeConns(client, r.connection.conn, { bufferBytes: BUFFER_BYTES });
        else client.close();
      });
    }
  })();
  return {
    port: listener.addr.port,
    async close() {
      listener.close();
      await accepting.catch(() => {});
    },
  };
}

function cpuUs(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

async function pssKiB(): Promise<number> {
  const text = await Deno.readTextFile("/proc/self/smaps_rollup");
  return Number(/^Pss:\s+(\d+) kB/m.exec(text)?.[1] ?? NaN);
}

/** Runs the client against `port`; the hop's CPU (this process) between its start and end. */
async function drive(port: number, n: number, kind: string) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", self, "client", String(port), String(n), kind],
    stdout: "piped",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  const line = async () => {
    while (!text.includes("\n")) {
      const { value, done } = await lines.read();
      if (done) throw new Error("client ended early");
      text += value;
    }
    const i = text.indexOf("\n");
    const l = text.slice(0, i);
    text = text.slice(i + 1);
    return l;
  };
  await line();
  const pss0 = kind === "idle" ? await pssKiB() : 0;
  const t0 = cpuUs();
  const w0 = performance.now();
  const last = await line();
  const result = { cpuUs: cpuUs() - t0, ms: performance.now() - w0, detail: last.slice(4) };
  if (kind === "idle") {
    await new Promise((r) => setTimeout(r, 10_000)); // let V8 drop the handshakes' garbage
    result.detail = `${((await pssKiB() - pss0) / n).toFixed(1)} KiB Pss per idle connection`;
    child.kill();
  }
  await child.status;
  await lines.cancel().catch(() => {});
  return result;
}

/** CPU of this process per dial + verification alone (no client, no pipe), `n` in a row. */
async function dials(kind: HopKind, upstream: MeshEndpoint, n: number) {
  const t0 = cpuUs();
  const w0 = performance.now();
  for (let i = 0; i < n; i++) {
    if (kind === "node") {
      const r = await dialMesh(material, upstream, 5000);
      if (!r.ok) throw new Error(r.failure.detail);
      r.connection.socket.destroy();
    } else {
      const r = await dialMeshNative(material, upstream, { timeoutMs: 5000 });
      if (!r.ok) throw new Error(JSON.stringify(r));
      r.connection.conn.close();
    }
  }
  return { cpuUs: (cpuUs() - t0) / n, ms: (performance.now() - w0) / n };
}

const reps = Number(repsArg);
// LEG=node|native runs one leg only (idle memory is best read in a process of its own).
const kinds: HopKind[] = Deno.env.get("LEG")
  ? [Deno.env.get("LEG") as HopKind]
  : ["node", "native"];
const label = {
  node: "node:net + node:tls + pipeSockets",
  native: "Deno.listen + Deno.connectTls + pipeConns",
};
const measures = mode === "all" ? ["dial", "rtt", "conn", "bulk", "split", "idle"] : [mode];
for (const measure of measures) {
  const server = await startServer(measure === "split");
  const upstream = { address: "127.0.0.1", port: server.port, service: "db", id: "db-1" };
  for (let rep = 0; rep < reps; rep++) {
    for (const kind of kinds) {
      if (measure === "dial") {
        const r = await dials(kind, upstream, 300);
        console.log(
          `dial #${rep + 1} ${kind}: ${(r.cpuUs / 1000).toFixed(2)} ms CPU per dial + ` +
            `verification (${r.ms.toFixed(2)} ms each, in a row)`,
        );
        continue;
      }
      const hop = kind === "node" ? await nodeHop(upstream) : nativeHop(upstream);
      let out: string;
      if (measure === "rtt") {
        const r = await drive(hop.port, 20_000, "rtt");
        out = `${(r.cpuUs / 20_000).toFixed(1)} µs hop CPU per 1 KiB round trip`;
      } else if (measure === "conn") {
        const r = await drive(hop.port, 300, "conn");
        out = `${(r.cpuUs / 300 / 1000).toFixed(2)} ms hop CPU per new connection ` +
          `(accept, dial + verify, 1 KiB round trip, close); ${(300 / r.ms * 1000).toFixed(0)}/s`;
      } else if (measure === "idle") {
        const r = await drive(hop.port, 1000, "idle");
        out = `1000 connections that carried 1 KiB: ${r.detail}`;
      } else if (measure === "bulk") {
        const r = await drive(hop.port, 256, "bulk");
        out =
          `${(r.cpuUs / 1000 / 2.56 / 2).toFixed(0)} ms hop CPU per 100 MiB (256 MiB each way, ` +
          `${r.ms.toFixed(0)} ms, ${r.detail})`;
      } else {
        const r = await drive(hop.port, 200, "split");
        out = `request in two writes: ${r.detail}`;
      }
      console.log(`${measure} #${rep + 1} ${label[kind]}: ${out}`);
      await hop.close();
    }
  }
  await server.close();
}
