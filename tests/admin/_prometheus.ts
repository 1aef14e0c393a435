// A strict parser of the Prometheus text format (0.0.4) for tests: it fails on anything a
// scraper would reject, so a metrics test checks the format as well as the values.

/** One sample. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The parsed exposition. */
export interface Exposition {
  samples: Sample[];
  /** The `# TYPE` of a metric family. */
  type(family: string): string | undefined;
  /** The sum of the samples of `name` whose labels include `labels` (NaN when none). */
  value(name: string, labels?: Record<string, string>): number;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

function parseLabels(text: string, line: string): Record<string, string> {
  const labels: Record<string, string> = {};
  const re = /\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\[\\"n])*)"\s*(,|$)/y;
  let at = 0;
  while (at < text.length) {
    re.lastIndex = at;
    const m = re.exec(text);
    if (!m) throw new Error(`bad labels in: ${line}`);
    const name = m[1]!; // both groups are required by the pattern
    if (name in labels) throw new Error(`duplicate label ${name} in: ${line}`);
    labels[name] = m[2]!.replace(/\\(["\\n])/g, (_, c) => (c === "n" ? "\n" : c));
    at = re.lastIndex;
  }
  return labels;
}

export function parseExposition(text: string): Exposition {
  if (!text.endsWith("\n")) throw new Error("exposition must end with a newline");
  const types = new Map<string, string>();
  const helps = new Set<string>();
  const samples: Sample[] = [];
  for (const line of text.split("\n").slice(0, -1)) {
    if (line.startsWith("# HELP ")) {
      const name = line.split(" ")[2];
      if (!name) throw new Error(`HELP without a metric name: ${line}`);
      if (helps.has(name)) throw new Error(`second HELP for ${name}`);
      helps.add(name);
      continue;
    }
    if (line.startsWith("# TYPE ")) {
      const [, , name, type] = line.split(" ");
      if (!name) throw new Error(`TYPE without a metric name: ${line}`);
      if (!type || !["counter", "gauge", "histogram", "summary", "untyped"].includes(type)) {
        throw new Error(`bad type: ${line}`);
      }
      if (types.has(name)) throw new Error(`second TYPE for ${name}`);
      if (type === "counter" && !name.endsWith("_total")) {
        throw new Error(`counter ${name} does not end in _total`);
      }
      types.set(name, type);
      continue;
    }
    if (line.startsWith("#") || line === "") continue;
    const m = /^([^{\s]+)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!m) throw new Error(`bad sample line: ${line}`);
    const [, name = "", labels = "", text] = m; // the labels group is optional
    if (!NAME.test(name)) throw new Error(`bad sample line: ${line}`);
    const value = text === "+Inf" ? Infinity : text === "-Inf" ? -Infinity : Number(text);
    if (Number.isNaN(value) && text !== "NaN") throw new Error(`bad value: ${line}`);
    const family = name.replace(/_(bucket|sum|count)$/, "");
    if (!types.has(name) && !types.has(family)) throw new Error(`sample before its TYPE: ${line}`);
    samples.push({ name, labels: parseLabels(labels, line), value });
  }
  // Histograms: cumulative buckets ending in +Inf equal to _count.
  for (const [family, type] of types) {
    if (type !== "histogram") continue;
    const series = new Map<string, Sample[]>();
    for (const s of samples.filter((x) => x.name === `${family}_bucket`)) {
      const { le: _le, ...rest } = s.labels;
      const key = JSON.stringify(rest);
      series.set(key, [...(series.get(key) ?? []), s]);
    }
    for (const [key, buckets] of series) {
      let below = -Infinity;
      for (const { value } of buckets) {
        if (value < below) throw new Error(`${family} not cumulative`);
        below = value;
      }
      const last = buckets.at(-1)!;
      if (last.labels.le !== "+Inf") throw new Error(`${family} lacks le="+Inf"`);
      const count = samples.find((x) =>
        x.name === `${family}_count` && JSON.stringify(x.labels) === key
      );
      if (count?.value !== last.value) throw new Error(`${family}: +Inf bucket != _count`);
    }
  }
  return {
    samples,
    type: (family) => types.get(family),
    value(name, labels = {}) {
      const hits = samples.filter((s) =>
        s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)
      );
      return hits.length ? hits.reduce((a, s) => a + s.value, 0) : NaN;
    },
  };
}
