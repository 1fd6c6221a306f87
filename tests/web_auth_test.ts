/**
 * What the web config puts in front of the handler, in process: bcrypt on
 * the worker (remembered outcomes, unknown users refused alike, a bounded
 * line), bearer tokens, excluded paths, the rate limit, and headers.
 */

import bcrypt from "bcryptjs";
import { guard, PasswordChecker } from "../web/auth.ts";
import type { WebConfig } from "../web/config.ts";
import { assert } from "./helpers/assert.ts";

const HASH = bcrypt.hashSync("right", 4);

function config(overrides: Partial<WebConfig> = {}): WebConfig {
  return {
    tls: undefined,
    headers: {},
    users: new Map([["alice", HASH]]),
    tokens: [],
    excludedPaths: undefined,
    rateLimit: undefined,
    digest: "test",
    ...overrides,
  };
}

function basic(user: string, password: string): HeadersInit {
  return { authorization: `Basic ${btoa(`${user}:${password}`)}` };
}

Deno.test("web auth: bcrypt on the worker, with every outcome remembered", async () => {
  const passwords = new PasswordChecker();
  try {
    assert.equal(await passwords.verify("alice", "right", HASH, 4), true);
    assert.equal(await passwords.verify("alice", "wrong", HASH, 4), false);
    assert.equal(await passwords.verify("mallory", "right", undefined, 4), false);
    // Remembered: the same answers again, from the map.
    assert.equal(await passwords.verify("alice", "right", HASH, 4), true);
    assert.equal(await passwords.verify("alice", "wrong", HASH, 4), false);
  } finally {
    passwords.close();
  }
});

Deno.test("web auth: past 16 comparisons waiting, a guess is turned away at once", async () => {
  const passwords = new PasswordChecker();
  const slow = bcrypt.hashSync("right", 10);
  try {
    const verdicts = await Promise.all(
      Array.from({ length: 24 }, (_, i) => passwords.verify("alice", `guess-${i}`, slow, 10)),
    );
    assert.equal(verdicts.filter((verdict) => verdict === "busy").length, 8);
    assert.ok(
      verdicts.filter((verdict) => verdict !== "busy").every((verdict) => verdict === false),
    );
  } finally {
    passwords.close();
  }
});

Deno.test("web auth: basic and bearer credentials, excluded paths, rate limit and headers", async () => {
  const passwords = new PasswordChecker();
  let current = config({
    tokens: ["t0ken"],
    headers: { "X-Frame-Options": "deny" },
  });
  const handler = guard(() => Promise.resolve(new Response("ok")), {
    config: () => current,
    defaultExcludedPaths: ["/healthz"],
    passwords,
    realm: "test",
  });
  const status = async (path: string, headers: HeadersInit = {}) => {
    const response = await handler(new Request(`http://localhost${path}`, { headers }));
    await response.body?.cancel();
    return response;
  };
  try {
    assert.equal((await status("/metrics")).status, 401);
    assert.equal((await status("/metrics")).headers.get("www-authenticate"), 'Basic realm="test"');
    assert.equal((await status("/metrics", basic("alice", "right"))).status, 200);
    assert.equal((await status("/metrics", basic("alice", "wrong"))).status, 401);
    assert.equal((await status("/metrics", { authorization: "Bearer t0ken" })).status, 200);
    assert.equal((await status("/metrics", { authorization: "Bearer t0ke" })).status, 401);
    assert.equal((await status("/metrics", { authorization: "Basic !!!" })).status, 401);
    assert.equal((await status("/healthz")).status, 200, "excluded by default");
    assert.equal((await status("/metrics")).headers.get("x-frame-options"), "deny");

    current = config({ excludedPaths: ["/metrics"], users: new Map(), tokens: ["t0ken"] });
    assert.equal((await status("/metrics")).status, 200, "excluded by the config");
    assert.equal((await status("/healthz")).status, 401, "the config's list replaces the default");
    assert.equal((await status("/healthz")).headers.get("www-authenticate"), 'Bearer realm="test"');

    current = config({ users: new Map(), rateLimit: { intervalMs: 60_000, burst: 2 } });
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push((await status("/metrics")).status);
    assert.deepEqual(statuses, [200, 200, 429, 429]);
    assert.equal((await status("/metrics")).headers.get("retry-after"), "60");
    assert.equal((await status("/healthz")).status, 200, "probes are not rate limited");
  } finally {
    passwords.close();
  }
});
