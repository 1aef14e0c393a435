import assert from "node:assert/strict";
import FakeTimers from "@sinonjs/fake-timers";
import net from "node:net";
import { Duplex } from "node:stream";
import { holdSocket, pipeSockets } from "../../src/net/pipe.ts";
import { echoServer, tcpClient } from "../e2e/_net.ts";

/**
 * A stream that behaves like Deno's node:tls client after a peer's missed close: writes are
 * never acknowledged and destroying it never emits 'close'.
 */
function deafSocket(): Duplex {
  return new Duplex({
    allowHalfOpen: true,
    emitClose: false,
    read() {},
    write(_chunk, _enc, _cb) {/* never acknowledged */},
  });
}

Deno.test("pipe: a side that never reports close does not keep the pipe open after destroy", async () => {
  const app = await echoServer();
  const plain = await tcpClient(app.port);
  const deaf = deafSocket();
  const pipe = pipeSockets(deaf, plain);
  pipe.destroy(new Error("shutting down"));
  const stats = await pipe.closed;
  assert.equal(stats.error?.message, "shutting down");
  assert.ok(plain.destroyed);
  await app.close();
});

Deno.test("pipe: after one side closes, the other gets lingerMs to finish, then is cut", async () => {
  const app = await echoServer();
  const plain = await tcpClient(app.port);
  const deaf = deafSocket();
  deaf.on("error", () => {});
  const pipe = pipeSockets(plain, deaf, { lingerMs: 50 });
  plain.write("x"); // echoed back and queued on the deaf side forever
  await new Promise((r) => setTimeout(r, 50));
  plain.destroy();
  const stats = await pipe.closed;
  assert.ok(deaf.destroyed, "the deaf side was cut after lingering");
  assert.equal(stats.aToB, 1, "the echoed byte was read and queued");
  await app.close();
});

/** Two connected loopback TCP sockets, both allowing half-open: [ours, theirs]. */
async function pair(): Promise<[net.Socket, net.Socket, () => Promise<void>]> {
  const accepted = Promise.withResolvers<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (s) => accepted.resolve(s));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as net.AddressInfo).port;
  const ours = net.connect({ host: "127.0.0.1", port, allowHalfOpen: true });
  await new Promise((r) => ours.once("connect", r));
  const theirs = await accepted.promise;
  return [ours, theirs, () => new Promise<void>((r) => server.close(() => r()))];
}

/** user ↔ [a | pipe | b] ↔ app: returns the two outer ends and the pipe. */
async function piped(options: Parameters<typeof pipeSockets>[2] = {}) {
  const [user, a, closeA] = await pair();
  const [b, app, closeB] = await pair();
  const pipe = pipeSockets(a, b, options);
  return {
    user,
    app,
    pipe,
    a,
    b,
    async close() {
      for (const s of [user, app, a, b]) s.destroy();
      await Promise.all([closeA(), closeB()]);
    },
  };
}

/** Everything `socket` reads until its peer ends; fails after `ms` (a lost end would hang). */
function readAll(socket: net.Socket, ms = 10_000): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const chunks: Uint8Array[] = [];
    const timer = setTimeout(() => reject(new Error(`no end within ${ms} ms`)), ms);
    socket.on("data", (c: Uint8Array) => chunks.push(c));
    socket.once("end", () => {
      clearTimeout(timer);
      const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
      let at = 0;
      for (const c of chunks) out.set(c, (at += c.length) - c.length);
      resolve(out);
    });
  });
}

Deno.test("pipe: half-close passes on; the other direction keeps flowing until it ends too", async () => {
  const t = await piped();
  const appGot = readAll(t.app);
  const userGot = readAll(t.user);
  t.user.end("request"); // the user is done sending
  assert.equal(new TextDecoder().decode(await appGot), "request", "the app saw the end");
  // The app answers after the user's end: the answer still reaches the user.
  t.app.write("part 1, ");
  await new Promise((r) => setTimeout(r, 20));
  t.app.end("part 2");
  assert.equal(new TextDecoder().decode(await userGot), "part 1, part 2");
  const stats = await t.pipe.closed;
  assert.equal(stats.aToB, 7);
  assert.equal(stats.bToA, 14);
  assert.equal(stats.error, undefined);
  await t.close();
});

Deno.test("pipe: a slow reader pauses the fast writer (backpressure), and every byte arrives", async () => {
  const t = await piped();
  const total = 32 * 1024 * 1024;
  const block = new Uint8Array(64 * 1024).fill(7);
  t.app.pause(); // the app does not read yet
  let written = 0;
  const writing = (async () => {
    while (written < total) {
      written += block.length;
      if (!t.user.write(block)) await new Promise((r) => t.user.once("drain", r));
    }
    t.user.end();
  })();
  await new Promise((r) => setTimeout(r, 300));
  // Held back at the pipe: far less than offered has crossed, and the writer is waiting.
  assert.ok(t.pipe.stats.aToB < total / 2, `moved ${t.pipe.stats.aToB} of ${total} unread bytes`);
  assert.ok(written < total, "the writer is held by flow control");
  const received = readAll(t.app);
  t.app.resume();
  const got = await received;
  await writing;
  assert.equal(got.length, total);
  assert.ok(got.every((v) => v === 7));
  t.app.end();
  const stats = await t.pipe.closed;
  assert.equal(stats.aToB, total);
  await t.close();
});

Deno.test("pipe: an error on one side destroys both and is the pipe's error", async () => {
  const t = await piped();
  t.a.emit("error", new Error("ECONNRESET by peer"));
  const stats = await t.pipe.closed;
  assert.equal(stats.error?.message, "ECONNRESET by peer");
  assert.ok(t.a.destroyed && t.b.destroyed);
  await t.close();
});

Deno.test("pipe: idleTimeoutMs cuts a pipe with no traffic either way, and traffic resets it", async () => {
  const t = await piped({ idleTimeoutMs: 150 });
  for (let i = 0; i < 4; i++) {
    await new Promise((r) => setTimeout(r, 60));
    t.user.write("x"); // keeps it alive past 150 ms in all
  }
  assert.equal(t.a.destroyed, false);
  const stats = await t.pipe.closed;
  assert.equal(stats.error?.message, "idle for 150 ms");
  assert.equal(stats.aToB, 4);
  await t.close();
});

Deno.test("pipe: destroy() after the pipe closed by itself sets no timer (settling is done)", async () => {
  const t = await piped({ idleTimeoutMs: 60_000 });
  t.user.end();
  t.app.end();
  const stats = await t.pipe.closed;
  const time = FakeTimers.install({ toFake: ["setTimeout", "clearTimeout"] });
  try {
    t.pipe.destroy(new Error("late"));
    assert.equal(time.countTimers(), 0, "a 2 s force-settle timer was left behind");
  } finally {
    time.uninstall();
  }
  assert.equal(stats.error?.message, "late", "as before: the error is recorded");
  await t.close();
});

Deno.test("pipe: what a held socket received comes first, and a held end is passed on", async () => {
  const [user, a, closeA] = await pair();
  const [b, app, closeB] = await pair();
  const hold = holdSocket(a);
  user.end("early bytes");
  await new Promise((r) => a.once("end", r));
  const held = hold.release();
  assert.equal(held.ended, true);
  const appGot = readAll(app);
  const pipe = pipeSockets(a, b, { held: { a: held } });
  assert.equal(new TextDecoder().decode(await appGot), "early bytes");
  app.end();
  const stats = await pipe.closed;
  assert.equal(stats.aToB, 11, "held bytes are counted");
  for (const s of [user, app]) s.destroy();
  await Promise.all([closeA(), closeB()]);
});

Deno.test("holdSocket stops reading past maxBytes and keeps what it read", async () => {
  const [user, a, close] = await pair();
  const hold = holdSocket(a, 1024);
  user.write(new Uint8Array(256 * 1024));
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(a.isPaused(), true);
  const held = hold.release();
  const bytes = held.chunks.reduce((n, c) => n + c.length, 0);
  assert.ok(bytes > 1024 && bytes < 256 * 1024, `held ${bytes}`);
  assert.equal(held.ended, false);
  user.destroy();
  a.destroy();
  await close();
});
