// Offers a flood from a separate writer process (`_writer.ts`) and waits until the proxy under
// test stops reading it: the backpressure tests of both directions share this.
import { eventually } from "../_helpers.ts";

/** What a flood found: what the proxy read before it stopped, and what this process grew by. */
export interface FloodResult {
  /** MiB the proxy read from the writer before it stopped reading. */
  readMiB: number;
  /** MiB this process's resident memory grew by meanwhile. */
  grownMiB: number;
  /** The writer's last line ("wrote <n>"; "done" if it was never held back). */
  last: string;
  /** Whether the writer wrote everything it offered (it was not held back). */
  done: boolean;
}

/**
 * Starts `_writer.ts` with `env` (PORT, MIB, and CERT/KEY/CA or PLAIN=1), waits for its
 * connection (`connected`), then until `read()` — the proxy's byte count from the writer — has
 * not grown for half a second, and kills the writer.
 */
export async function floodUntilHeld(
  env: Record<string, string>,
  connected: () => boolean,
  read: () => number,
): Promise<FloodResult> {
  const rssBefore = Deno.memoryUsage().rss;
  // The writer is its own process: only the proxies' (and the app's) memory is measured here.
  const writer = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("./_writer.ts", import.meta.url).pathname],
    env,
    stdout: "piped",
    stderr: "null",
  }).spawn();
  let out = "";
  const reading = (async () => {
    for await (const t of writer.stdout.pipeThrough(new TextDecoderStream())) out += t;
  })();
  try {
    await eventually(connected, 10_000, "the writer's connection");
    let last = -1;
    await eventually(
      async () => {
        const now = read();
        const still = now === last;
        last = now;
        await new Promise((r) => setTimeout(r, 500));
        return still;
      },
      60_000,
      "the proxy to stop reading",
    );
    return {
      readMiB: read() / 1024 / 1024,
      grownMiB: (Deno.memoryUsage().rss - rssBefore) / 1024 / 1024,
      last: out.trim().split("\n").at(-1) ?? "",
      done: out.includes("done"),
    };
  } finally {
    writer.kill("SIGKILL");
    await writer.status;
    await reading;
  }
}
