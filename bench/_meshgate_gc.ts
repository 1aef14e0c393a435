/**
 * The meshgate CLI for the bench, with one addition: SIGUSR2 runs a full garbage collection
 * (`--v8-flags=--expose-gc`). The idle-memory figure reads live memory before and after the
 * idle connections open; without it, garbage left by the load phases (collected at some point
 * while the connections open) made meshgate's growth look near zero. Bench only, never the
 * product: the proxy does not collect on a signal.
 * @module
 */
import { runCli } from "../src/cli/main.ts";

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("bench/_meshgate_gc.ts: run with --v8-flags=--expose-gc");
Deno.addSignalListener("SIGUSR2", () => gc());
Deno.exit(await runCli(Deno.args));
