/**
 * One line per event, with levels and an optional JSON form. Fields that could carry secrets
 * (keys, tokens) are never logged: callers pass identities and reasons, and this module drops
 * any field whose name says it is secret.
 * @module
 */

/** Log levels, most verbose first. */
export type LogLevel = "trace" | "debug" | "info" | "warn" | "error";

const ORDER: Record<LogLevel, number> = { trace: 0, debug: 1, info: 2, warn: 3, error: 4 };
const SECRET = /key|token|secret|password/i;

/** Structured fields of one log line. */
export type LogFields = Record<string, string | number | boolean | bigint | undefined | null>;

/** A logger: one call, one line. */
export interface Logger {
  /** Writes one line at `level` when enabled. */
  log(level: LogLevel, message: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every line. */
  with(fields: LogFields): Logger;
  /** The minimum level written. */
  readonly level: LogLevel;
}

/** Options of {@linkcode createLogger}. */
export interface LoggerOptions {
  /** Minimum level. @default {"info"} */
  level?: LogLevel;
  /** One JSON object per line instead of text. @default {false} */
  json?: boolean;
  /** Where lines go. @default {console.error} */
  write?: (line: string) => void;
}

/**
 * Parses a level name as the Consul CLI spells it (`INFO`, `debug`, …).
 *
 * @example
 * ```ts
 * import { parseLogLevel } from "@meshgate/meshgate";
 * console.log(parseLogLevel("DEBUG")); // debug
 * ```
 * @throws {RangeError} for an unknown level
 */
export function parseLogLevel(text: string): LogLevel {
  const l = text.toLowerCase();
  if (Object.hasOwn(ORDER, l)) return l as LogLevel; // not `in`: "constructor" is in any object
  if (l === "warning") return "warn";
  throw new RangeError(`unknown log level "${text}" (trace, debug, info, warn, error)`);
}

/**
 * Creates a logger.
 *
 * @example
 * ```ts
 * import { createLogger } from "@meshgate/meshgate";
 * const log = createLogger({ level: "info", json: true, write: console.log });
 * log.log("info", "leaf renewed", { serial: "0a" });
 * ```
 */
export function createLogger(options: LoggerOptions = {}, base: LogFields = {}): Logger {
  const level = options.level ?? "info";
  const write = options.write ?? ((line: string) => console.error(line));
  return {
    level,
    with: (fields) => createLogger(options, { ...base, ...fields }),
    log(lvl, message, fields) {
      if (ORDER[lvl] < ORDER[level]) return;
      const all: LogFields = { ...base, ...fields };
      for (const k of Object.keys(all)) {
        if (SECRET.test(k) || all[k] === undefined) delete all[k];
      }
      if (options.json) {
        const obj: Record<string, unknown> = { "@timestamp": new Date().toISOString() };
        obj["@level"] = lvl;
        obj["@message"] = message;
        for (const [k, v] of Object.entries(all)) obj[k] = typeof v === "bigint" ? String(v) : v;
        write(JSON.stringify(obj));
      } else {
        const kv = Object.entries(all).map(([k, v]) => `${k}=${formatValue(v)}`).join(" ");
        write(
          `${new Date().toISOString()} [${lvl.toUpperCase().padEnd(5)}] ${message}${
            kv ? " " + kv : ""
          }`,
        );
      }
    },
  };
}

function formatValue(v: unknown): string {
  const s = String(v);
  return /[\s"=]/.test(s) ? JSON.stringify(s) : s;
}

/** A logger that writes nothing (the default in the library). */
export const silentLogger: Logger = {
  level: "error",
  log() {},
  with() {
    return silentLogger;
  },
};
