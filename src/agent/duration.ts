/**
 * Go duration strings (`"5s"`, `"1m30s"`, `"300ms"`), which Consul uses for `wait`, timeouts
 * and TTLs.
 * @module
 */

const UNITS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  "µs": 1e-3,
  "μs": 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/**
 * Parses a Go duration into milliseconds.
 *
 * @example
 * ```ts
 * import { parseGoDuration } from "@meshgate/meshgate/agent";
 * console.log(parseGoDuration("1m30s")); // 90000
 * ```
 * @throws {RangeError} when the text is not a Go duration
 */
export function parseGoDuration(text: string): number {
  const s = String(text).trim();
  if (/^[-+]?0$/.test(s)) return 0; // as Go: a bare zero needs no unit, signed or not
  const m = /^([-+]?)((?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+$/.exec(s);
  if (!m) throw new RangeError(`invalid duration "${s.slice(0, 40)}"`);
  let total = 0;
  for (
    const part of s.replace(/^[-+]/, "").matchAll(/(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/g)
  ) {
    // Both groups are required, and the second admits only UNITS' keys.
    total += Number(part[1]) * UNITS[part[2]!]!;
  }
  return m[1] === "-" ? -total : total;
}

/**
 * Formats milliseconds as a Go duration, the way Go's `time.Duration.String` does for whole
 * units (`"5s"`, `"1m30s"`, `"72h0m0s"`).
 *
 * @example
 * ```ts
 * import { formatGoDuration } from "@meshgate/meshgate/agent";
 * console.log(formatGoDuration(5000)); // 5s
 * ```
 */
export function formatGoDuration(ms: number): string {
  if (ms === 0) return "0s";
  if (ms < 1000) return `${ms}ms`;
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor((ms % 3_600_000) / 60_000);
  const s = (ms % 60_000) / 1000;
  if (h) return `${h}h${m}m${s}s`;
  if (m) return `${m}m${s}s`;
  return `${s}s`;
}
