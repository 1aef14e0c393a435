/**
 * Consul's `filter=` expressions (hashicorp/go-bexpr) for the double's list endpoints, enough
 * for what service-resolver subsets and proxies write: `Service.Meta.version == v1`,
 * `Service.Tags contains canary`, `!=`, `not contains`, `in`, `is empty`, `matches`, `and`,
 * `or`, `not` and parentheses. Values are quoted (`"v1"`, `` `v1` ``) or bare words.
 * @module
 */
import { BadRequest } from "./strict.ts";

type Token =
  | { kind: "word"; text: string }
  | { kind: "string"; text: string }
  | { kind: "op"; text: "==" | "!=" | "(" | ")" };

type Node =
  | { kind: "and" | "or"; left: Node; right: Node }
  | { kind: "not"; inner: Node }
  | {
    kind: "match";
    selector: string[];
    op:
      | "=="
      | "!="
      | "contains"
      | "not contains"
      | "is empty"
      | "is not empty"
      | "matches"
      | "not matches";
    value: string;
  };

function fail(expression: string, why: string): never {
  throw new BadRequest(`Failed to create boolean expression evaluator: ${why} in "${expression}"`);
}

function tokenize(expression: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < expression.length) {
    const ch = expression.charAt(i);
    if (/\s/.test(ch)) {
      i++;
    } else if (ch === "(" || ch === ")") {
      tokens.push({ kind: "op", text: ch });
      i++;
    } else if (expression.startsWith("==", i) || expression.startsWith("!=", i)) {
      tokens.push({ kind: "op", text: expression.slice(i, i + 2) as "==" | "!=" });
      i += 2;
    } else if (ch === '"' || ch === "`") {
      let text = "";
      let j = i + 1;
      for (; j < expression.length && expression[j] !== ch; j++) {
        if (ch === '"' && expression[j] === "\\" && j + 1 < expression.length) j++;
        text += expression[j];
      }
      if (j >= expression.length) fail(expression, "unterminated string");
      tokens.push({ kind: "string", text });
      i = j + 1;
    } else {
      const m = /^[^\s()"`=!]+/.exec(expression.slice(i));
      if (!m) fail(expression, `unexpected "${ch}"`);
      tokens.push({ kind: "word", text: m[0] });
      i += m[0].length;
    }
  }
  return tokens;
}

function parse(expression: string): Node {
  const tokens = tokenize(expression);
  let pos = 0;
  const peekWord = (w: string) => {
    const t = tokens[pos];
    return t?.kind === "word" && t.text === w;
  };
  const value = (): string => {
    const t = tokens[pos++];
    if (!t || t.kind === "op") fail(expression, "expected a value");
    return t.text;
  };
  const selector = (): string[] => {
    const t = tokens[pos++];
    if (t?.kind !== "word" || !/^[A-Za-z_][\w.-]*$/.test(t.text)) {
      fail(expression, `expected a selector, got ${t ? `"${t.text}"` : "the end"}`);
    }
    return t.text.split(".");
  };
  const primary = (): Node => {
    const t = tokens[pos];
    if (t?.kind === "op" && t.text === "(") {
      pos++;
      const inner = or();
      const close = tokens[pos++];
      if (close?.kind !== "op" || close.text !== ")") fail(expression, 'expected ")"');
      return inner;
    }
    // `value in Selector` / `value not in Selector`
    const next = tokens[pos + 1];
    const after = tokens[pos + 2];
    if (
      next?.kind === "word" &&
      (next.text === "in" || (next.text === "not" && after?.kind === "word" && after.text === "in"))
    ) {
      const v = value();
      const negated = peekWord("not");
      pos += negated ? 2 : 1;
      return {
        kind: "match",
        selector: selector(),
        op: negated ? "not contains" : "contains",
        value: v,
      };
    }
    const sel = selector();
    const op = tokens[pos++];
    if (op?.kind === "op" && (op.text === "==" || op.text === "!=")) {
      return { kind: "match", selector: sel, op: op.text, value: value() };
    }
    if (op?.kind === "word") {
      const negated = op.text === "not" && (peekWord("contains") || peekWord("matches"));
      const what = negated ? (tokens[pos++] as { text: string }).text : op.text;
      if (what === "contains") {
        return {
          kind: "match",
          selector: sel,
          op: negated ? "not contains" : what,
          value: value(),
        };
      }
      if (what === "matches") {
        const v = value();
        try {
          new RegExp(v);
        } catch {
          fail(expression, `invalid regular expression "${v}"`);
        }
        return { kind: "match", selector: sel, op: negated ? "not matches" : what, value: v };
      }
      if (op.text === "is") {
        const negated = peekWord("not");
        if (negated) pos++;
        if (!peekWord("empty")) fail(expression, 'expected "empty"');
        pos++;
        return {
          kind: "match",
          selector: sel,
          op: negated ? "is not empty" : "is empty",
          value: "",
        };
      }
    }
    return fail(expression, `expected an operator after "${sel.join(".")}"`);
  };
  const not = (): Node => {
    if (peekWord("not")) {
      pos++;
      return { kind: "not", inner: not() };
    }
    return primary();
  };
  const and = (): Node => {
    let left = not();
    while (peekWord("and")) {
      pos++;
      left = { kind: "and", left, right: not() };
    }
    return left;
  };
  const or = (): Node => {
    let left = and();
    while (peekWord("or")) {
      pos++;
      left = { kind: "or", left, right: and() };
    }
    return left;
  };
  if (tokens.length === 0) fail(expression, "empty expression");
  const root = or();
  const extra = tokens[pos];
  if (extra) fail(expression, `unexpected "${extra.text}"`);
  return root;
}

function select(value: unknown, path: string[]): unknown {
  let v = value;
  for (const key of path) {
    if (v === null || typeof v !== "object" || Array.isArray(v)) return undefined;
    const o = v as Record<string, unknown>;
    // Struct fields match case-insensitively in go-bexpr; map keys (Meta) exactly first.
    v = key in o
      ? o[key]
      : Object.entries(o).find(([k]) => k.toLowerCase() === key.toLowerCase())?.[1];
  }
  return v;
}

function evaluate(node: Node, item: unknown): boolean {
  switch (node.kind) {
    case "and":
      return evaluate(node.left, item) && evaluate(node.right, item);
    case "or":
      return evaluate(node.left, item) || evaluate(node.right, item);
    case "not":
      return !evaluate(node.inner, item);
    case "match": {
      const v = select(item, node.selector);
      switch (node.op) {
        case "==":
        case "!=": {
          const same = v !== undefined && v !== null && typeof v !== "object" &&
            String(v) === node.value;
          return node.op === "==" ? same : !same;
        }
        case "contains":
        case "not contains": {
          const has = Array.isArray(v)
            ? v.some((x) => String(x) === node.value)
            : typeof v === "string"
            ? v.includes(node.value)
            : v !== null && typeof v === "object" && node.value in v;
          return node.op === "contains" ? has : !has;
        }
        case "is empty":
        case "is not empty": {
          const empty = v === undefined || v === null || v === "" ||
            (Array.isArray(v) && v.length === 0) ||
            (typeof v === "object" && Object.keys(v as object).length === 0);
          return node.op === "is empty" ? empty : !empty;
        }
        case "matches":
        case "not matches": {
          const hit = typeof v === "string" && new RegExp(node.value).test(v);
          return node.op === "matches" ? hit : !hit;
        }
      }
    }
  }
}

/**
 * Compiles a `filter=` expression into a predicate over one list item (a health entry, a
 * service).
 *
 * @example
 * ```ts
 * import { compileFilter } from "./filter.ts";
 * const v1 = compileFilter("Service.Meta.version == v1");
 * console.log(v1({ Service: { Meta: { version: "v1" } } })); // true
 * ```
 * @throws {BadRequest} (400) when the expression cannot be parsed, as Consul answers
 */
export function compileFilter(expression: string): (item: unknown) => boolean {
  const root = parse(expression);
  return (item) => evaluate(root, item);
}
