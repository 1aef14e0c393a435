// Preloaded into a proxy process by memory tests: collects garbage every 200 ms, so that its
// resident memory measures what it keeps, not what V8 has yet to collect (Deno does not report
// TLS buffers as external memory pressure, so V8 alone lets them pile up).
const gc = (globalThis as { gc?: () => void }).gc;
if (gc) Deno.unrefTimer(setInterval(gc, 200));
