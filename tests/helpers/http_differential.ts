/**
 * A differential test of the web layer's request parsing against Deno.serve:
 * generated heads (odd framing, header counts, obs-text, LF and CRLF mixed,
 * empty lines before the request line, pipelined requests) are sent in
 * random chunks to both servers over loopback, and what each handler saw is
 * compared. Used by tests/web_differential_test.ts (a few thousand cases,
 * fixed seed) and by `deno task fuzz:web` (as many as asked, any seed).
 * @module
 */

import { HttpServer } from "../../web/server.ts";

/** A seeded generator, so that a failing case can be replayed. */
export { seededRandom as randomSource } from "./fake_clock.ts";

/** What a server made of one case's bytes. */
export interface Outcome {
  /** Requests the handler saw, in order: method, target, headers. */
  readonly requests: string[];
  /** Status codes on the wire, in order. */
  readonly statuses: number[];
}

/** One generated case. */
export interface Case {
  readonly bytes: Uint8Array;
  /** Where the bytes are cut into writes. */
  readonly cuts: number[];
  /** What the generator put in, for reading a failure. */
  readonly description: string;
  /** Where this server is meant to be stricter than Deno.serve (RFC 9112 and Go): why. */
  readonly stricter?: string;
  /**
   * How many requests come up to and including the first with a chunked body: this server does
   * not read such a body and closes the connection after its response (RFC 9112 §6.3 leaves it
   * the choice), where Deno.serve reads on.
   */
  readonly closesAfter?: number;
  /**
   * How many requests come up to and including the first with a Content-Length body: Deno.serve
   * closes the connection after the response when the handler did not read the body, where this
   * server reads and drops it (up to its limit) and goes on; both are allowed (RFC 9112 §9.3).
   */
  readonly referenceStopsAfter?: number;
  /**
   * Where Deno.serve leaves the bytes unanswered and this server, as Go and RFC 9112 §2.2,
   * reads them: why.
   */
  readonly lenient?: string;
}

const latin1 = (text: string) => Uint8Array.from(text, (c) => c.charCodeAt(0));

/** Generates one case from `random`. */
export function generateCase(random: () => number): Case {
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const chance = (p: number) => random() < p;
  const notes: string[] = [];
  let stricter: string | undefined;
  let lenient: string | undefined;
  let closesAfter: number | undefined;
  let referenceStopsAfter: number | undefined;
  let text = "";
  // A third of the cases are well formed throughout, so that pipelined requests get past the first.
  const clean = chance(0.33);
  const odd = <T>(usual: readonly T[], all: readonly T[]): T => pick(clean ? usual : all);
  const count = chance(0.6) ? 1 : chance(0.5) ? 2 : 3;
  for (let r = 0; r < count; r++) {
    let lastEol = "";
    const eol = () => (lastEol = chance(0.9) ? "\r\n" : "\n");
    if (chance(0.1)) {
      text += eol();
      notes.push("empty line first");
    }
    const method = odd(["GET", "HEAD", "POST"], [
      "GET",
      "GET",
      "HEAD",
      "POST",
      "OPTIONS",
      "PUT",
      "G@T",
    ]);
    const target = odd(["/", "/metrics", "/healthz?x=1", "/a/b%20c"], [
      "/",
      "/metrics",
      "/healthz?x=1",
      "/a/b%20c",
      "/x?q=%ff&r=~",
      "/with#fragment",
      "http://localhost/abs",
      "/\t/tab",
      "/\x00nul",
      "/caf\xe9",
      "//double",
      "*",
    ]);
    const version = odd(
      ["HTTP/1.1", "HTTP/1.1", "HTTP/1.0"],
      ["HTTP/1.1", "HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.1 "],
    );
    const space = !clean && chance(0.05) ? "  " : " ";
    text += `${method}${space}${target} ${version}${eol()}`;
    notes.push(`${JSON.stringify(method)} ${JSON.stringify(target)} ${JSON.stringify(version)}`);
    const hosts = version === "HTTP/1.1"
      ? (clean || chance(0.9) ? 1 : chance(0.5) ? 0 : 2)
      : (chance(0.5) ? 1 : 0);
    for (let h = 0; h < hosts; h++) text += `Host: example${h}${eol()}`;
    if (version === "HTTP/1.1" && hosts !== 1) {
      stricter = "HTTP/1.1 needs exactly one Host (RFC 9112 §3.2; Go answers 400)";
    }
    if (version === "HTTP/1.0" && hosts > 1) stricter = "two Host headers";
    const fields = !clean && chance(0.05)
      ? 95 + Math.floor(random() * 10)
      : Math.floor(random() * 6);
    for (let f = 0; f < fields; f++) {
      const name = odd(
        ["X-A", "x-b", "Accept", "User-Agent", `X-N${f}`],
        ["X-A", "x-b", "Accept", "User-Agent", `X-N${f}`, "Bad Name", "X:Colon"],
      );
      const value = odd(["plain", "  padded  ", "caf\xe9", "tab\there", "", "a, b"], [
        "plain",
        "  padded  ",
        "caf\xe9",
        "tab\there",
        "",
        "a, b",
        "nul\x00byte",
        "del\x7f",
      ]);
      const before = !clean && chance(0.03) ? " " : "";
      text += `${name}${before}:${value}${eol()}`;
      if (!clean && chance(0.02)) text += ` folded${eol()}`;
    }
    const framing = odd(
      ["none", "none", "length"],
      ["none", "none", "none", "length", "two-lengths", "bad-length", "te"],
    );
    let body = "";
    switch (framing) {
      case "length":
        body = pick(["", "x", `GET /smuggled HTTP/1.1${"\r\n"}Host: x${"\r\n\r\n"}`]);
        text += `Content-Length: ${body.length}${eol()}`;
        if (body.length > 0) referenceStopsAfter ??= r + 1;
        break;
      case "two-lengths":
        body = "abcd";
        text += `Content-Length: 4${eol()}Content-Length: ${pick(["4", "5"])}${eol()}`;
        stricter = "two Content-Length headers (RFC 9112 §6.3 allows refusing even equal ones)";
        break;
      case "bad-length":
        text += `Content-Length: ${pick(["abc", "-1", "+0", "1 2", "0x10"])}${eol()}`;
        break;
      case "te":
        text += `Transfer-Encoding: chunked${eol()}`;
        body = `4${"\r\n"}abcd${"\r\n"}0${"\r\n\r\n"}`;
        closesAfter ??= r + 1;
        if (chance(0.3)) {
          text += `Content-Length: 3${eol()}`;
          stricter = "Transfer-Encoding with Content-Length (RFC 9112 §6.3: 400 and close)";
        }
        break;
    }
    notes.push(`${fields} fields, framing ${framing}`);
    const lineBefore = lastEol;
    text += eol() + body;
    if (lineBefore === "\n" && lastEol === "\r\n" && !lenient) {
      lenient = "a head whose last line ends in LF and whose empty line in CRLF";
    }
  }
  const bytes = latin1(text);
  const cuts = Array.from(
    { length: Math.floor(random() * 4) },
    () => Math.floor(random() * bytes.length),
  ).sort((a, b) => a - b);
  return {
    bytes,
    cuts,
    description: notes.join("; "),
    ...(stricter ? { stricter } : {}),
    ...(lenient ? { lenient } : {}),
    ...(closesAfter ? { closesAfter } : {}),
    ...(referenceStopsAfter ? { referenceStopsAfter } : {}),
  };
}

function record(request: Request, into: string[]): Response {
  const url = new URL(request.url);
  // A combined value's trailing white space is not part of it (RFC 9110 §5.5); Headers made by
  // hand and Deno.serve's differ there only.
  const headers = [...request.headers].map(([name, value]) =>
    `${name}=${JSON.stringify(value.trimEnd())}`
  );
  into.push(`${request.method} ${url.pathname}${url.search} [${headers.join(" ")}]`);
  return new Response("ok\n");
}

/** Two servers to compare: the web layer's, and Deno.serve. */
export class Servers implements AsyncDisposable {
  readonly ours: HttpServer;
  readonly reference: Deno.HttpServer<Deno.NetAddr>;
  #sink: string[] = [];

  constructor() {
    this.ours = new HttpServer(
      Deno.listen({ hostname: "127.0.0.1", port: 0 }),
      (request) => Promise.resolve(record(request, this.#sink)),
      { headerTimeoutMs: 2_000 },
    );
    this.reference = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      (request) => record(request, this.#sink),
    );
  }

  /** What each server made of `testCase`. */
  async run(testCase: Case): Promise<{ ours: Outcome; reference: Outcome }> {
    const ours = await this.#send(this.ours.addr.port, testCase);
    const reference = await this.#send(this.reference.addr.port, testCase);
    return { ours, reference };
  }

  async #send(port: number, testCase: Case): Promise<Outcome> {
    const requests: string[] = [];
    this.#sink = requests;
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const reading = readAll(conn);
    let at = 0;
    try {
      for (const cut of [...testCase.cuts, testCase.bytes.length]) {
        if (cut > at) {
          await conn.write(testCase.bytes.subarray(at, cut));
          at = cut;
          await new Promise((resolve) => setTimeout(resolve, 1));
        }
      }
      await conn.closeWrite();
    } catch { /* the server closed first */ }
    const text = await reading;
    const statuses = [...text.matchAll(/HTTP\/1\.[01] (\d{3})/g)].map((match) => Number(match[1]));
    return { requests, statuses };
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.ours.shutdown();
    await this.reference.shutdown();
  }
}

async function readAll(conn: Deno.Conn): Promise<string> {
  const timer = setTimeout(() => conn.close(), 5_000);
  const decoder = new TextDecoder("latin1");
  const buffer = new Uint8Array(16_384);
  let text = "";
  try {
    for (;;) {
      const read = await conn.read(buffer);
      if (read === null) break;
      text += decoder.decode(buffer.subarray(0, read), { stream: true });
    }
  } catch { /* closed by the timer or reset */ }
  clearTimeout(timer);
  try {
    conn.close();
  } catch { /* closed */ }
  return text;
}

/**
 * Whether the two outcomes agree: the same requests reached the handler, in
 * order. Where the case is one this server is meant to refuse and Deno.serve
 * takes, this server's requests must be a prefix of the reference's
 * (everything before the refused one) and it must have answered with a 4xx.
 * Where Deno.serve is meant to leave the bytes unanswered, the reference's
 * requests must be a prefix of this server's.
 */
export function agree(testCase: Case, outcome: { ours: Outcome; reference: Outcome }): boolean {
  const { ours, reference } = outcome;
  const same = ours.requests.length === reference.requests.length &&
    ours.requests.every((request, i) => request === reference.requests[i]);
  if (same) return true;
  if (
    testCase.closesAfter !== undefined && ours.requests.length <= testCase.closesAfter &&
    ours.requests.every((request, i) => request === reference.requests[i])
  ) {
    return true;
  }
  if (
    testCase.referenceStopsAfter !== undefined &&
    reference.requests.length >= Math.min(testCase.referenceStopsAfter, ours.requests.length) &&
    reference.requests.every((request, i) => request === ours.requests[i])
  ) {
    return true;
  }
  if (testCase.lenient && reference.requests.every((request, i) => request === ours.requests[i])) {
    return true;
  }
  if (!testCase.stricter) return false;
  const prefix = ours.requests.every((request, i) => request === reference.requests[i]);
  return prefix && ours.statuses.some((status) => status >= 400 && status < 500);
}
