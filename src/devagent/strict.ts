/**
 * Request-body decoding as Consul's agent does it: Go `encoding/json` with unknown fields
 * rejected and field names matched case-insensitively.
 * @module
 */

/** A 400 answer with Consul's text. */
export class BadRequest extends Error {
  /**
   * @param message the plain-text body
   * @param status the HTTP status (400 unless Consul answers another)
   */
  constructor(message: string, readonly status: number = 400) {
    super(message);
    this.name = "BadRequest";
  }
}

/** Field names a struct accepts, with nested struct schemas; `true` = any value. */
export interface Schema {
  [field: string]: Schema | true;
}

/**
 * Checks `body` against `schema`, renaming case-insensitive matches to the canonical name.
 * @throws {BadRequest} `Request decode failed: json: unknown field "X"`
 */
export function strictDecode(
  body: unknown,
  schema: Schema,
  prefix = "Request decode failed",
): Record<string, unknown> {
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw new BadRequest(
      `${prefix}: json: cannot unmarshal ${
        Array.isArray(body) ? "array" : typeof body
      } into Go value`,
    );
  }
  const out: Record<string, unknown> = {};
  const fold = (field: string) => field.toLowerCase().replaceAll("_", "");
  const fields = new Map(Object.entries(schema).map(([name, sub]) => [fold(name), { name, sub }]));
  for (const [key, value] of Object.entries(body)) {
    const field = fields.get(fold(key));
    if (!field) throw new BadRequest(`${prefix}: json: unknown field "${key}"`);
    const { name, sub } = field;
    if (sub !== true && value !== null && value !== undefined) {
      out[name] = Array.isArray(value)
        ? value.map((v) => strictDecode(v, sub, prefix))
        : strictDecode(value, sub, prefix);
    } else {
      out[name] = value;
    }
  }
  return out;
}

/** Parses a JSON request body; an empty body is `EOF`, as Go reports it. */
export function parseJsonBody(text: string, prefix = "Request decode failed"): unknown {
  if (text.trim() === "") throw new BadRequest(`${prefix}: EOF`);
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new BadRequest(`${prefix}: ${(err as Error).message}`);
  }
}
