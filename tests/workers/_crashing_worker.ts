// A worker entry for tests: the real one, which throws an uncaught error once it is ready (as a
// bug in a worker would), so that the pool's handling of a dead worker can be watched.
import { serveWorker, type WorkerScope } from "../../src/workers/worker_main.ts";

const scope = self as unknown as WorkerScope;
serveWorker({
  addEventListener: (type, listener) => scope.addEventListener(type, listener),
  close: () => scope.close(),
  postMessage(message) {
    scope.postMessage(message);
    if (message.t === "ready") {
      setTimeout(() => {
        throw new Error("worker crashed on purpose");
      }, 100);
    }
  },
});
