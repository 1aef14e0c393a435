// Request-body decoding as Consul's agent does it (src/devagent/strict.ts): unknown fields are a
// 400 naming the field as sent, names match in any case (and snake_case), nested structs and
// lists of structs are checked too, an empty body is Go's EOF.
import assert from "node:assert/strict";
import { BadRequest, parseJsonBody, type Schema, strictDecode } from "../../src/devagent/strict.ts";

const SCHEMA: Schema = {
  Name: true,
  LocalBindPort: true,
  Meta: true,
  Check: { TTL: true, Status: true },
  Upstreams: { DestinationName: true },
};

const refused = (fn: () => unknown, message: string, status = 400) =>
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof BadRequest, String(e));
    assert.equal(e.name, "BadRequest");
    assert.equal(e.message, message);
    assert.equal(e.status, status);
    return true;
  });

Deno.test("strictDecode: names in any case or snake_case become the schema's; values are kept", () => {
  const out = strictDecode({
    name: "web",
    local_bind_port: 9191,
    META: { anyKey: 1, Unknown_Inside: true }, // `true`: any value, not checked
    check: { ttl: "10s" },
    upstreams: [{ destination_name: "db" }, { DestinationName: "cache" }],
  }, SCHEMA);
  assert.deepEqual(out, {
    Name: "web",
    LocalBindPort: 9191,
    Meta: { anyKey: 1, Unknown_Inside: true },
    Check: { TTL: "10s" },
    Upstreams: [{ DestinationName: "db" }, { DestinationName: "cache" }],
  });
  // null and undefined pass for a struct field, as Go leaves the field empty.
  assert.deepEqual(strictDecode({ Check: null }, SCHEMA), { Check: null });
  assert.deepEqual(strictDecode({}, SCHEMA), {});
});

Deno.test("strictDecode: an unknown field anywhere is Consul's 400, naming it as sent", () => {
  refused(
    () => strictDecode({ Nmae: "web" }, SCHEMA),
    'Request decode failed: json: unknown field "Nmae"',
  );
  refused(
    () => strictDecode({ Check: { TTL: "1s", Interval: "1s" } }, SCHEMA),
    'Request decode failed: json: unknown field "Interval"',
  );
  refused(
    () => strictDecode({ Upstreams: [{ DestinationName: "db" }, { destination: "x" }] }, SCHEMA),
    'Request decode failed: json: unknown field "destination"',
  );
  // Not a way around the schema: prototype keys and look-alikes are fields like any other.
  refused(
    () => strictDecode(JSON.parse('{"__proto__": {"Name": "x"}}'), SCHEMA),
    'Request decode failed: json: unknown field "__proto__"',
  );
  refused(
    () => strictDecode({ constructor: 1 }, SCHEMA),
    'Request decode failed: json: unknown field "constructor"',
  );
  refused(
    () => strictDecode({ "Name ": "web" }, SCHEMA),
    'Request decode failed: json: unknown field "Name "',
  );
  refused(
    () => strictDecode({ "Na-me": "web" }, SCHEMA),
    'Request decode failed: json: unknown field "Na-me"',
  );
  // The prefix is the caller's.
  refused(
    () => strictDecode({ x: 1 }, SCHEMA, "Failed to decode request body"),
    'Failed to decode request body: json: unknown field "x"',
  );
});

Deno.test("strictDecode: a body or struct that is not an object says what it is", () => {
  refused(
    () => strictDecode(["web"], SCHEMA),
    "Request decode failed: json: cannot unmarshal array into Go value",
  );
  refused(
    () => strictDecode("web", SCHEMA),
    "Request decode failed: json: cannot unmarshal string into Go value",
  );
  refused(
    () => strictDecode(7, SCHEMA),
    "Request decode failed: json: cannot unmarshal number into Go value",
  );
  refused(
    () => strictDecode({ Check: "10s" }, SCHEMA),
    "Request decode failed: json: cannot unmarshal string into Go value",
  );
  refused(
    () => strictDecode({ Upstreams: [1] }, SCHEMA),
    "Request decode failed: json: cannot unmarshal number into Go value",
  );
});

Deno.test("parseJsonBody: an empty body is EOF; bad JSON is a 400 with the parser's words", () => {
  assert.deepEqual(parseJsonBody('{"Name":"web"}'), { Name: "web" });
  assert.equal(parseJsonBody("null"), null);
  refused(() => parseJsonBody(""), "Request decode failed: EOF");
  refused(() => parseJsonBody(" \n\t"), "Request decode failed: EOF");
  assert.throws(
    () => parseJsonBody("{Name:", "Failed to decode"),
    (e: unknown) =>
      e instanceof BadRequest && e.status === 400 && /^Failed to decode: \S/.test(e.message),
  );
});

Deno.test("BadRequest carries another status when Consul answers one", () => {
  const e = new BadRequest("not found", 404);
  assert.equal(e.status, 404);
  assert.equal(new BadRequest("x").status, 400);
  assert.ok(e instanceof Error);
});
