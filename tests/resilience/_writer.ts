// A separate process that writes MiB chunks over mTLS as fast as the socket accepts them, so a
// test can measure the proxy's memory without counting the writer's buffers.
// Env: PORT, CERT, KEY, CA (PEM), MIB (how much to offer). Prints "wrote <n>" as it goes.
import tls from "node:tls";

const env = (k: string) => Deno.env.get(k)!;
const socket = tls.connect({
  host: "127.0.0.1",
  port: Number(env("PORT")),
  cert: env("CERT"),
  key: env("KEY"),
  ca: [env("CA")],
  checkServerIdentity: () => undefined,
}, async () => {
  const chunk = new Uint8Array(1024 * 1024);
  const total = Number(env("MIB"));
  for (let i = 1; i <= total; i++) {
    if (!socket.write(chunk)) await new Promise((r) => socket.once("drain", r));
    if (i % 16 === 0) console.log(`wrote ${i}`);
  }
  console.log("done");
});
socket.on("error", (e) => console.log(`error ${e.message}`));
