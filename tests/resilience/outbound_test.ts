// Faults of the data plane on the outbound leg, run on both legs (`-outbound-tls node` and
// `native`): a client of web's upstream listener → web's sidecar → mTLS → db's sidecar → an
// application that stops reading, reads slowly, half-closes first or resets. Backpressure holds a
// writer offering 1 GiB, every byte arrives in order, half-close travels both ways, and nothing is
// left open. `deno task soak` runs the same tests with more data.
import assert from "node:assert/strict";
import net from "node:net";
import type { OutboundTls } from "../../src/outbound/listener.ts";
import { eventually, nth } from "../_helpers.ts";
import { mesh } from "../e2e/_mesh.ts";
import { tcpClient } from "../e2e/_net.ts";
import { floodUntilHeld } from "./_flood.ts";

const SOAK = Deno.env.get("MESHGATE_SOAK") === "1";
const LEGS: OutboundTls[] = ["node", "native"];

/** A plain TCP application on 127.0.0.1:0 that hands each connection to `onSocket`. */
async function app(onSocket: (s: net.Socket) => void) {
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    s.on("error", () => {});
    onSocket(s);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as net.AddressInfo).port,
    async [Symbol.asyncDispose]() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** The web → db mesh with web's upstream on `leg` and db's application at `appPort`. */
function meshOn(leg: OutboundTls, appPort: number) {
  return mesh({ appPort, webLimits: { outboundTls: leg } });
}

/** `n` bytes of a pattern that shows reordering and loss (a counter mod a prime). */
function pattern(n: number): Uint8Array {
  return new Uint8Array(n).map((_, i) => (i * 7 + (i >> 16)) % 251);
}

/** Resolves when the socket has closed, or false after `ms`. */
function closedWithin(s: net.Socket, ms = 5000): Promise<boolean> {
  return new Promise((resolve) => {
    if (s.destroyed) return resolve(true);
    const t = setTimeout(() => resolve(false), ms);
    s.once("close", () => {
      clearTimeout(t);
      resolve(true);
    });
    s.resume();
  });
}

for (const leg of LEGS) {
  Deno.test(`outbound (${leg}): an application that stops reading holds back a client offering 1 GiB; memory stays bounded`, async () => {
    const stalled = new Set<net.Socket>();
    await using backend = await app((s) => {
      s.pause();
      stalled.add(s);
    });
    await using m = await meshOn(leg, backend.port);
    const upstream = nth(m.webProxy.upstreams, 0, "web's upstream");
    const offered = 1024; // MiB
    const flood = await floodUntilHeld(
      { PORT: String(m.upstreamPort), MIB: String(offered), PLAIN: "1" },
      () => upstream.connections.size === 1,
      () => [...upstream.connections][0]?.pipe.stats.aToB ?? 0,
    );
    console.log(
      `held (${leg}): ${offered} MiB offered; web's sidecar read ${flood.readMiB.toFixed(0)} MiB ` +
        `and stopped (writer: "${flood.last}"); this process (both proxies and the app) grew ` +
        `${flood.grownMiB.toFixed(0)} MiB`,
    );
    assert.ok(!flood.done, "the writer was held back");
    // Bound: db's 64 MiB pause threshold for a TLS source plus socket and TLS buffers on the way.
    assert.ok(flood.readMiB < 160, `read ${flood.readMiB} MiB`);
    assert.ok(flood.grownMiB < 256, `memory grew ${flood.grownMiB} MiB`);
    for (const s of stalled) s.destroy();
    await eventually(() => upstream.connections.size === 0, 10_000, "the connection to close");
  });

  Deno.test(`outbound (${leg}): a slow reader gets every byte, in order`, async () => {
    const received: Uint8Array[] = [];
    const done = Promise.withResolvers<void>();
    await using backend = await app((s) => {
      // Reads a little, then nothing for a while: the pipe's backpressure holds the rest.
      const slow = () => {
        s.pause();
        setTimeout(() => s.resume(), 20);
      };
      s.on("data", (c: Uint8Array) => {
        received.push(new Uint8Array(c));
        slow();
      });
      s.on("end", () => {
        s.end();
        done.resolve();
      });
    });
    await using m = await meshOn(leg, backend.port);
    const payload = pattern((SOAK ? 64 : 8) * 1024 * 1024);
    const client = await tcpClient(m.upstreamPort);
    client.on("error", () => {});
    client.end(payload);
    await done.promise;
    const got = new Uint8Array(received.reduce((n, c) => n + c.length, 0));
    let at = 0;
    for (const c of received) {
      got.set(c, at);
      at += c.length;
    }
    assert.equal(got.length, payload.length, "every byte arrived");
    assert.ok(got.every((b, i) => b === payload[i]), "in order");
    assert.ok(await closedWithin(client), "the client closed after the app's end");
    console.log(
      `held (${leg}): ${got.length} bytes to a slow reader, in order, in ${received.length} reads`,
    );
  });

  Deno.test(`outbound (${leg}): the application half-closes first and the client goes on sending`, async () => {
    let appGot = 0;
    const appEnded = Promise.withResolvers<void>();
    await using backend = await app((s) => {
      s.end("bye"); // its side is done at once; it keeps reading
      s.on("data", (c: Uint8Array) => (appGot += c.length));
      s.on("end", () => appEnded.resolve());
    });
    await using m = await meshOn(leg, backend.port);
    const client = await tcpClient(m.upstreamPort);
    client.on("error", () => {});
    let clientGot = "";
    const clientEnded = Promise.withResolvers<void>();
    client.on("data", (d) => (clientGot += d));
    client.on("end", () => clientEnded.resolve());
    await clientEnded.promise;
    assert.equal(clientGot, "bye", "the app's bytes and its end reached the client");
    // The connection is half-open: the client's direction still flows.
    const more = pattern(1024 * 1024);
    client.end(more);
    await appEnded.promise;
    assert.equal(appGot, more.length, "everything sent after the app's end arrived");
    assert.ok(await closedWithin(client), "both directions ended: the client closed");
    const upstream = nth(m.webProxy.upstreams, 0, "web's upstream");
    await eventually(() => upstream.connections.size === 0, 5000, "nothing left open");
    console.log(`held (${leg}): app ended first, then ${appGot} bytes still reached it`);
  });

  Deno.test(`outbound (${leg}): an application that resets mid-stream ends the client's stream; nothing is left open`, async () => {
    await using backend = await app((s) => {
      s.once("data", () => s.resetAndDestroy());
    });
    await using m = await meshOn(leg, backend.port);
    const client = await tcpClient(m.upstreamPort);
    client.on("error", () => {});
    const ended = new Promise<boolean>((resolve) => {
      const t = setTimeout(() => resolve(false), 5000);
      const done = () => {
        clearTimeout(t);
        resolve(true);
      };
      client.once("end", done);
      client.once("close", done);
    });
    client.resume();
    client.write("boom");
    // An end of stream, not a reset: Deno's node:tls reports a peer's reset as a clean end (checked
    // on loopback), so the node leg cannot tell them apart; Consul's proxy closes with a FIN too.
    assert.ok(await ended, "the client's stream ended after the app's reset");
    client.end();
    assert.ok(await closedWithin(client), "the client closed");
    const upstream = nth(m.webProxy.upstreams, 0, "web's upstream");
    await eventually(
      () => upstream.connections.size === 0 && m.dbProxy.inbound!.connections.size === 0,
      5000,
      "nothing left open on either sidecar",
    );
    console.log(`held (${leg}): a reset by the application ended the client's stream; 0 left open`);
  });
}
