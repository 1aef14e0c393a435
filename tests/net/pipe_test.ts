import assert from "node:assert/strict";
import { Duplex } from "node:stream";
import { pipeSockets } from "../../mod.ts";
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
