// Test servers and clients for the data-plane tests: real sockets on loopback.
import net from "node:net";
import tls from "node:tls";

/**
 * An echo server on 127.0.0.1:0 that also records how many connections it got; with `greeting`,
 * it first writes that to each connection.
 */
export async function echoServer(greeting?: string): Promise<
  { port: number; connections: () => number; close: () => Promise<void> }
> {
  let count = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    count++;
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    s.on("error", () => {});
    if (greeting !== undefined) s.write(greeting);
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as net.AddressInfo).port,
    connections: () => count,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/** A TLS client with the given certificate; resolves once the handshake completes. */
export function tlsClient(
  port: number,
  opts: {
    cert?: string;
    key?: string;
    ca: string[];
    minVersion?: tls.SecureVersion;
    maxVersion?: tls.SecureVersion;
  },
): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: "127.0.0.1",
      port,
      cert: opts.cert,
      key: opts.key,
      ca: opts.ca,
      minVersion: opts.minVersion,
      maxVersion: opts.maxVersion,
      allowHalfOpen: true,
      checkServerIdentity: () => undefined,
    } as tls.ConnectionOptions, () => resolve(socket));
    socket.once("error", reject);
  });
}

/** Writes `payload`, ends the write side, and collects everything read until the peer closes. */
export function roundTrip(
  socket: net.Socket | tls.TLSSocket,
  payload: Uint8Array | string,
): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const chunks: Uint8Array[] = [];
    socket.on("data", (c: Uint8Array) => chunks.push(new Uint8Array(c)));
    socket.once("end", () => {
      let n = 0;
      for (const c of chunks) n += c.length;
      const out = new Uint8Array(n);
      let at = 0;
      for (const c of chunks) {
        out.set(c, at);
        at += c.length;
      }
      socket.end();
      resolve(out);
    });
    socket.once("error", reject);
    socket.write(payload);
    socket.end();
  });
}

/** Resolves with what happened to a socket: the bytes read, or that it closed/errored. */
export function outcome(socket: net.Socket | tls.TLSSocket, payload: string): Promise<string> {
  return new Promise((resolve) => {
    let data = "";
    socket.on("data", (c) => (data += c.toString()));
    socket.on("error", () => {});
    socket.on("close", () => resolve(data === "" ? "closed" : data));
    socket.write(payload, () => {});
    setTimeout(() => socket.end(), 200);
  });
}

/** Connects plain TCP to 127.0.0.1:port. */
export function tcpClient(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: "127.0.0.1", port, allowHalfOpen: true }, () => resolve(s));
    s.once("error", reject);
  });
}
