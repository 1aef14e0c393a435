// A separate process that writes MiB chunks as fast as the socket accepts them, so a test can
// measure the proxy's memory without counting the writer's buffers: over mTLS to a public
// listener, or with PLAIN=1 over plain TCP to an upstream listener.
// Env: PORT, MIB (how much to offer); CERT, KEY, CA (PEM) unless PLAIN=1. Prints "wrote <n>"
// as it goes and "done" at the end.
import net from "node:net";
import tls from "node:tls";

const env = (k: string) => Deno.env.get(k)!;
const plain = Deno.env.get("PLAIN") === "1";
const write = async () => {
  const chunk = new Uint8Array(1024 * 1024);
  const total = Number(env("MIB"));
  for (let i = 1; i <= total; i++) {
    if (!socket.write(chunk)) await new Promise((r) => socket.once("drain", r));
    if (i % 16 === 0) console.log(`wrote ${i}`);
  }
  console.log("done");
};
const socket: net.Socket = plain
  ? net.connect({ host: "127.0.0.1", port: Number(env("PORT")) }, write)
  : tls.connect({
    host: "127.0.0.1",
    port: Number(env("PORT")),
    cert: env("CERT"),
    key: env("KEY"),
    ca: [env("CA")],
    checkServerIdentity: () => undefined,
  }, write);
socket.on("error", (e) => console.log(`error ${e.message}`));
