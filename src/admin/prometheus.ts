/**
 * A minimal Prometheus registry and text exposition (format 0.0.4): counters, gauges and
 * histograms with labels, plus collectors that fill values at scrape time.
 * @module
 */

/** Label values by label name. */
export type Labels = Record<string, string>;

/** A Prometheus metric type. */
export type MetricKind = "counter" | "gauge" | "histogram";

/** Escapes a label value: backslash, double quote and newline. */
function escapeLabel(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function labelText(labels: Labels, extra?: [string, string]): string {
  const pairs = Object.entries(labels).sort(([a], [b]) => a.localeCompare(b));
  if (extra) pairs.push(extra);
  if (pairs.length === 0) return "";
  return `{${pairs.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(",")}}`;
}

function num(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

function header(name: string, help: string, kind: MetricKind): string[] {
  return [
    `# HELP ${name} ${help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}`,
    `# TYPE ${name} ${kind}`,
  ];
}

/** What every metric has: a name, help text, a type and its series. */
export abstract class Metric {
  /** The series by their label text. */
  readonly values: Map<string, { labels: Labels; value: number }> = new Map();
  /** The metric name. */
  readonly name: string;
  /** The `# HELP` text. */
  readonly help: string;
  /** The `# TYPE`. */
  readonly kind: MetricKind;
  /**
   * Creates the metric.
   * @param name the metric name
   * @param help the `# HELP` text
   * @param kind the `# TYPE`
   */
  constructor(name: string, help: string, kind: MetricKind) {
    if (!NAME.test(name)) throw new Error(`invalid metric name ${name}`);
    this.name = name;
    this.help = help;
    this.kind = kind;
  }
  /** The series of `labels`, created at 0. */
  protected slot(labels: Labels): { labels: Labels; value: number } {
    const key = labelText(labels);
    let s = this.values.get(key);
    if (!s) this.values.set(key, s = { labels: { ...labels }, value: 0 });
    return s;
  }
  /** Drops every series (collectors that rebuild gauges at scrape time use it). */
  reset(): void {
    this.values.clear();
  }
  /** The exposition lines of this metric. */
  render(): string[] {
    const lines = header(this.name, this.help, this.kind);
    for (const { labels, value } of this.values.values()) {
      lines.push(`${this.name}${labelText(labels)} ${num(value)}`);
    }
    return lines;
  }
}

/**
 * A monotonically increasing count; its name ends in `_total`.
 *
 * @example
 * ```ts
 * import { Counter } from "@meshgate/meshgate/admin";
 * const c = new Counter("demo_total", "Demo events.");
 * c.inc({ kind: "a" });
 * console.log(c.render().join("\n"));
 * ```
 */
export class Counter extends Metric {
  /**
   * Creates the metric.
   * @param name must end in `_total`
   * @param help the `# HELP` text
   */
  constructor(name: string, help: string) {
    if (!name.endsWith("_total")) throw new Error(`counter ${name} must end in _total`);
    super(name, help, "counter");
  }
  /** Adds `by` (≥ 0) to the series of `labels`. */
  inc(labels: Labels = {}, by = 1): void {
    if (by < 0) throw new Error("counters only go up");
    this.slot(labels).value += by;
  }
  /** Sets a series to an absolute count kept elsewhere (must not go down). */
  set(labels: Labels, value: number): void {
    this.slot(labels).value = value;
  }
}

/**
 * A value that goes up and down.
 *
 * @example
 * ```ts
 * import { Gauge } from "@meshgate/meshgate/admin";
 * const g = new Gauge("demo_open", "Open things.");
 * g.set({}, 3);
 * ```
 */
export class Gauge extends Metric {
  /**
   * Creates the metric.
   * @param name the metric name
   * @param help the `# HELP` text
   */
  constructor(name: string, help: string) {
    super(name, help, "gauge");
  }
  /** Sets the series of `labels`. */
  set(labels: Labels, value: number): void {
    this.slot(labels).value = value;
  }
}

/**
 * Observations counted into cumulative buckets, with their sum and count.
 *
 * @example
 * ```ts
 * import { Histogram } from "@meshgate/meshgate/admin";
 * const h = new Histogram("demo_seconds", "Durations.", [0.1, 1]);
 * h.observe({}, 0.25);
 * ```
 */
export class Histogram extends Metric {
  readonly #buckets: number[];
  readonly #series = new Map<
    string,
    { labels: Labels; counts: number[]; sum: number; n: number }
  >();
  /**
   * Creates the metric.
   * @param name the metric name
   * @param help the `# HELP` text
   * @param buckets upper bounds (`le`), without `+Inf`
   */
  constructor(name: string, help: string, buckets: number[]) {
    super(name, help, "histogram");
    this.#buckets = [...buckets].sort((a, b) => a - b);
  }
  /** Records one observation. */
  observe(labels: Labels, value: number): void {
    const key = labelText(labels);
    let s = this.#series.get(key);
    if (!s) {
      s = { labels: { ...labels }, counts: this.#buckets.map(() => 0), sum: 0, n: 0 };
      this.#series.set(key, s);
    }
    this.#buckets.forEach((le, i) => {
      if (value <= le) s.counts[i]!++; // counts has one slot per bucket
    });
    s.sum += value;
    s.n++;
  }
  /** Drops every series. */
  override reset(): void {
    this.#series.clear();
  }
  /** The exposition lines: buckets, sum and count per series. */
  override render(): string[] {
    const lines = header(this.name, this.help, "histogram");
    for (const s of this.#series.values()) {
      this.#buckets.forEach((le, i) => {
        lines.push(`${this.name}_bucket${labelText(s.labels, ["le", num(le)])} ${s.counts[i]}`);
      });
      lines.push(`${this.name}_bucket${labelText(s.labels, ["le", "+Inf"])} ${s.n}`);
      lines.push(`${this.name}_sum${labelText(s.labels)} ${num(s.sum)}`);
      lines.push(`${this.name}_count${labelText(s.labels)} ${s.n}`);
    }
    return lines;
  }
}

/**
 * Metrics by name, rendered in registration order.
 *
 * @example
 * ```ts
 * import { Registry } from "@meshgate/meshgate/admin";
 * const r = new Registry();
 * r.counter("demo_requests_total", "Requests.").inc({ code: "200" });
 * console.log(r.render());
 * ```
 */
export class Registry {
  readonly #metrics: Metric[] = [];
  readonly #collectors: (() => void)[] = [];

  #add<M extends Metric>(m: M): M {
    if (this.#metrics.some((x) => x.name === m.name)) throw new Error(`duplicate ${m.name}`);
    this.#metrics.push(m);
    return m;
  }

  /** Registers a counter. */
  counter(name: string, help: string): Counter {
    return this.#add(new Counter(name, help));
  }

  /** Registers a gauge. */
  gauge(name: string, help: string): Gauge {
    return this.#add(new Gauge(name, help));
  }

  /** Registers a histogram with the given upper bounds (seconds, bytes…). */
  histogram(name: string, help: string, buckets: number[]): Histogram {
    return this.#add(new Histogram(name, help, buckets));
  }

  /** Runs `fn` before every render, to set values read from live state. */
  onCollect(fn: () => void): void {
    this.#collectors.push(fn);
  }

  /** The text exposition (`text/plain; version=0.0.4`). */
  render(): string {
    for (const fn of this.#collectors) fn();
    return this.#metrics.flatMap((m) => m.render()).join("\n") + "\n";
  }
}

/** The content type of {@linkcode Registry.render}'s output. */
export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";
