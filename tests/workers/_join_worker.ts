// A worker for authorize_join_test.ts: joins the table it is given and asks for one call.
import { AuthorizeJoin, type JoinTable } from "../../src/workers/authorize_join.ts";

const scope = self as unknown as {
  onmessage: (e: MessageEvent<{ shared: JoinTable; key: string }>) => void;
  postMessage: (message: unknown) => void;
};
scope.onmessage = async (e) => {
  const join = new AuthorizeJoin(e.data.shared);
  let sent = false;
  const answer = await join.run(e.data.key, () => {
    sent = true;
    return Promise.resolve({ status: 200, statusText: "OK", headers: [], body: "worker's own" });
  });
  join.close();
  scope.postMessage({ body: answer.body, sent, stats: join.stats });
};
// Loaded: the test starts the main thread's call only now, so that a slow thread start (a loaded
// machine) cannot make that call older than the join's staleness bound before the worker asks.
scope.postMessage({ ready: true });
