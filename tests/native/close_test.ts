// ConnectService.close() is idempotent (#17.1): a second close() while the first drains an
// open connection resolves only when the first does, not at once.
import assert from "node:assert/strict";
import { connect } from "../../src/native/service.ts";
import { clientFor, devAgent, eventually } from "../_helpers.ts";

Deno.test("native: a second close() while draining resolves only when the first does", async () => {
  await using dev = await devAgent();
  const agent = clientFor(dev);
  await using db = await connect({ service: "db", agent });
  await using web = await connect({ service: "web", agent });
  const listener = await db.listen({ hostname: "127.0.0.1", port: 0 });
  await agent.register({
    ID: "db-1",
    Name: "db",
    Port: listener.address.port,
    Connect: { Native: true },
  });
  const served = (async () => {
    for await (const { socket } of listener) socket.pipe(socket);
  })();
  const s = await web.dial("db");
  let got = "";
  s.on("data", (d) => (got += d));
  const echo = async (line: string) => {
    const before = got.length;
    s.write(line);
    await eventually(() => got.slice(before) === line, 5000, `"${line}" echoed`);
  };
  await echo("open;");

  const order: string[] = [];
  const first = db.close(60_000).then(() => order.push("first"));
  const second = db.close(60_000).then(() => order.push("second"));
  assert.equal(db.close(), db.close(), "every caller gets the same drain");
  await echo("draining;"); // the open connection still flows while the service drains
  assert.equal(order.join(), "", "neither close() resolved while the connection is open");
  order.push("connection closed");
  s.destroy();
  await Promise.all([first, second]);
  assert.deepEqual(order, ["connection closed", "first", "second"]);
  assert.equal(db.phase, "stopped");
  await listener.close(); // ends the iteration (the service closed its gateway, not the queue)
  await served;
  await agent.close();
});
