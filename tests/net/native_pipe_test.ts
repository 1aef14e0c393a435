// pipeConns between an accepted local Deno.Conn and a verified native mesh connection (real mTLS
// on loopback, certificates from our own PKI): bytes and counts both ways, half-close in either
// direction, backpressure against a peer that stops reading (1 GiB offered), a slow reader that
// gets every byte, a reset, the idle timeout, destroy, and the linger bound.
import assert from "node:assert/strict";
import type tls from "node:tls";
import { type ConnPipeOptions, pipeConns } from "../../src/net/native_pipe.ts";
import { dialMeshNative } from "../../src/outbound/native_tls.ts";
import {
  endpoint,
  meshServer,
  readAll,
  type Seen,
  simpleMesh,
} from "../outbound/_native_fixtures.ts";

const SOAK = Deno.env.get("MESHGATE_SOAK") === "1";

/** Writes all of `data`, however much each write takes. */
async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  for (let off = 0; off < data.length;) off += await conn.write(data.subarray(off));
}

/**
 * A client on a local listener, piped by pipeConns to a mesh server: node:tls (as meshgate's
 * inbound) running `serve`, or a Deno TLS server handing its accepted connection to `serveDeno`.
 */
async function hop(
  options: ConnPipeOptions & {
    serve?: (s: tls.TLSSocket, seen: Seen) => void;
    serveDeno?: (conn: Deno.TlsConn) => Promise<void>;
  } = {},
) {
  const { root, db, material } = await simpleMesh();
  const node = options.serveDeno
    ? undefined
    : await meshServer(db.pem, db.keyPem, [root.pem], options.serve);
  const denoServer = options.serveDeno
    ? Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert: db.pem, key: db.keyPem })
    : undefined;
  const served = denoServer
    ? denoServer.accept().then(async (c) => {
      try {
        await c.handshake();
        await options.serveDeno!(c);
      } finally {
        try {
          c.close();
        } catch { /* closed by the test */ }
      }
    })
    : Promise.resolve();
  const port = node?.port ?? (denoServer!.addr as Deno.NetAddr).port;
  const dialed = await dialMeshNative(material, endpoint(port), { timeoutMs: 3000 });
  assert.ok(dialed.ok, JSON.stringify(dialed));
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const local = await listener.accept();
  listener.close();
  const pipe = pipeConns(local, dialed.connection.conn, options);
  return {
    client,
    pipe,
    seen: () => node?.seen[0],
    async [Symbol.asyncDispose]() {
      pipe.destroy();
      await pipe.closed;
      try {
        client.close();
      } catch { /* closed by the test */ }
      denoServer?.close();
      await served.catch(() => {});
      await node?.[Symbol.asyncDispose]();
    },
  };
}

Deno.test("native pipe: bytes and counts both ways; the client's half-close reaches the server, which answers after it", async () => {
  await using h = await hop({
    serve: (s) => {
      let got = 0;
      s.on("data", (d: Uint8Array) => (got += d.length));
      s.on("end", () => s.end(`got ${got} bytes`));
    },
  });
  const sent = new Uint8Array(300_000).fill(7);
  await writeAll(h.client, sent);
  await h.client.closeWrite();
  assert.equal(await readAll(h.client), "got 300000 bytes");
  const stats = await h.pipe.closed;
  assert.equal(stats.aToB, 300_000);
  assert.equal(stats.bToA, "got 300000 bytes".length);
  assert.equal(stats.error, undefined);
});

Deno.test("native pipe: the server half-closes first and the client goes on sending", async () => {
  const { promise: serverGot, resolve } = Promise.withResolvers<string>();
  await using h = await hop({
    serve: (s) => {
      let text = "";
      s.end("banner"); // our side of the server is done; it still reads
      s.on("data", (d: Uint8Array) => (text += new TextDecoder().decode(d)));
      s.on("end", () => resolve(text));
    },
  });
  assert.equal(await readAll(h.client), "banner"); // then end-of-stream
  await writeAll(h.client, new TextEncoder().encode("still talking"));
  await h.client.closeWrite();
  assert.equal(await serverGot, "still talking");
  const stats = await h.pipe.closed;
  assert.deepEqual([stats.aToB, stats.bToA, stats.error], [13, 6, undefined]);
});

Deno.test("native pipe: a server that stops reading holds back a writer offering 1 GiB; memory stays bounded", async () => {
  const release = Promise.withResolvers<void>();
  await using h = await hop({
    serveDeno: async () => await release.promise, // handshake done, never reads
  });
  const offeredMiB = 1024;
  const chunk = new Uint8Array(1024 * 1024);
  const rssBefore = Deno.memoryUsage().rss;
  let written = 0;
  const writing = (async () => {
    for (let i = 0; i < offeredMiB; i++) {
      await writeAll(h.client, chunk);
      written += chunk.length;
    }
  })().catch(() => {});
  // Wait until the pipe stops reading: its count holds still for 500 ms.
  let last = -1;
  for (let i = 0; i < 60; i++) {
    await new Promise((r) => setTimeout(r, 500));
    if (h.pipe.stats.aToB === last) break;
    last = h.pipe.stats.aToB;
  }
  const readMiB = h.pipe.stats.aToB / 2 ** 20;
  const grownMiB = (Deno.memoryUsage().rss - rssBefore) / 2 ** 20;
  console.log(
    `offered ${offeredMiB} MiB; the client wrote ${(written / 2 ** 20).toFixed(1)} MiB, the pipe ` +
      `read ${readMiB.toFixed(1)} MiB and stopped; the process grew ${grownMiB.toFixed(1)} MiB`,
  );
  assert.equal(h.pipe.stats.aToB, last, "the pipe stopped reading");
  assert.ok(written < offeredMiB * 2 ** 20, "the writer was held back");
  // Kernel socket buffers on loopback (both hops) and one 16 KiB buffer: far below what was offered.
  assert.ok(readMiB < 64, `read ${readMiB} MiB`);
  assert.ok(grownMiB < 96, `grew ${grownMiB} MiB`);
  release.resolve();
  h.pipe.destroy();
  await h.pipe.closed;
  h.client.close();
  await writing;
});

Deno.test("native pipe: a slow reader gets every byte, in order", async () => {
  const mib = SOAK ? 1024 : 32;
  const received = Promise.withResolvers<{ bytes: number; sum: number }>();
  await using h = await hop({
    serveDeno: async (conn) => {
      const buf = new Uint8Array(64 * 1024);
      let bytes = 0;
      let sum = 0;
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) break;
        for (let i = 0; i < n; i++) sum = (sum * 31 + buf[i]!) >>> 0;
        bytes += n;
        if (bytes % (1024 * 1024) < n) await new Promise((r) => setTimeout(r, 2)); // slow
      }
      received.resolve({ bytes, sum });
    },
  });
  // A pattern that a lost, repeated or reordered chunk would change.
  const chunk = new Uint8Array(256 * 1024);
  let expected = 0;
  for (let i = 0; i < mib * 4; i++) {
    for (let j = 0; j < chunk.length; j++) chunk[j] = (i * 7 + j * 13) & 0xff;
    for (const b of chunk) expected = (expected * 31 + b) >>> 0;
    await writeAll(h.client, chunk);
  }
  await h.client.closeWrite();
  assert.deepEqual(await received.promise, { bytes: mib * 2 ** 20, sum: expected });
  const stats = await h.pipe.closed;
  assert.equal(stats.aToB, mib * 2 ** 20);
  assert.equal(stats.error, undefined);
});

Deno.test("native pipe: a server that resets ends the pipe with its error and closes the client", async () => {
  await using h = await hop({
    serve: (s) => s.once("data", () => s.destroy()),
  });
  const chunk = new Uint8Array(64 * 1024);
  const writing = (async () => {
    for (let i = 0; i < 4096; i++) await writeAll(h.client, chunk);
  })().catch((e) => e);
  const stats = await h.pipe.closed;
  assert.ok(stats.error, "the peer's error is kept");
  // The client's connection was closed by the pipe: its writes fail and its reads end.
  assert.ok((await writing) instanceof Error, "the client's writes fail once the pipe closed");
});

Deno.test("native pipe: idle for idleTimeoutMs closes both sides; traffic keeps it open", async () => {
  await using h = await hop({ idleTimeoutMs: 300, serve: (s) => s.pipe(s) });
  const started = Date.now();
  const one = new Uint8Array([1]);
  const buf = new Uint8Array(16);
  for (let i = 0; i < 5; i++) {
    await new Promise((r) => setTimeout(r, 150));
    await writeAll(h.client, one);
    assert.equal(await h.client.read(buf), 1); // echoed: still open
  }
  const stats = await h.pipe.closed;
  const lived = Date.now() - started;
  assert.equal(stats.error?.message, "idle for 300 ms");
  assert.ok(lived >= 750 + 300, `closed after ${lived} ms`);
  assert.equal(await h.client.read(buf), null, "the client sees the end");
});

Deno.test("native pipe: an idleTimeoutMs beyond a timer's range never cuts and spins no timer", async () => {
  const realSetTimeout = globalThis.setTimeout;
  let set = 0;
  globalThis.setTimeout = ((...args: Parameters<typeof setTimeout>) => {
    set++;
    return realSetTimeout(...args);
  }) as typeof setTimeout;
  try {
    await using h = await hop({ idleTimeoutMs: 2 ** 32, serve: (s) => s.pipe(s) });
    set = 0;
    await new Promise((r) => realSetTimeout(r, 100));
    assert.equal(set, 0, "timers set while the pipe sat idle (setTimeout overflows to 1 ms)");
    await writeAll(h.client, new Uint8Array([1]));
    assert.equal(await h.client.read(new Uint8Array(8)), 1, "still open");
  } finally {
    globalThis.setTimeout = realSetTimeout;
  }
});

Deno.test("native pipe: destroy() closes both sides and settles with its reason", async () => {
  await using h = await hop({ serve: (s) => s.pipe(s) });
  await writeAll(h.client, new Uint8Array([1, 2, 3]));
  assert.equal(await h.client.read(new Uint8Array(8)), 3);
  h.pipe.destroy(new Error("listener closing"));
  const stats = await h.pipe.closed;
  assert.equal(stats.error?.message, "listener closing");
  assert.deepEqual([stats.aToB, stats.bToA], [3, 3]);
  assert.equal(await h.client.read(new Uint8Array(8)), null);
});

/**
 * A connection whose peer has ended its sending and whose end never gets through: what is
 * written to it is buffered, its half-close never completes.
 */
function deafConn(): Deno.Conn & { closed: boolean } {
  const gone = Promise.withResolvers<never>();
  gone.promise.catch(() => {});
  const conn = {
    closed: false,
    read: () => Promise.resolve(null),
    write: (p: Uint8Array) => Promise.resolve(p.length),
    closeWrite: () => gone.promise,
    close() {
      conn.closed = true;
      gone.reject(new Deno.errors.BadResource("closed"));
    },
  };
  return conn as unknown as Deno.Conn & { closed: boolean };
}

Deno.test("native pipe: once both sides ended their sending, a peer that never takes the rest is cut after lingerMs", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const local = await listener.accept();
  listener.close();
  const deaf = deafConn();
  const pipe = pipeConns(local, deaf, { lingerMs: 200 });
  await writeAll(client, new TextEncoder().encode("last words"));
  await client.closeWrite(); // both reads end: the pipe owes the deaf side "last words"
  const started = Date.now();
  const stats = await pipe.closed;
  assert.ok(Date.now() - started >= 150, "it lingered");
  assert.ok(deaf.closed, "the deaf side was cut");
  assert.equal(stats.aToB, 10);
  assert.equal(await client.read(new Uint8Array(8)), null);
  client.close();
});
