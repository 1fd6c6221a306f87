import { type Job, LATE_START_TOLERANCE_MS, Scheduler } from "../lib/scheduler.ts";
import { assert } from "./helpers/assert.ts";
import { createFakeClock, seededRandom } from "./helpers/fake_clock.ts";

function recordingJobs(
  count: number,
  clock: { now(): number },
  starts: Map<string, number[]>,
): Job[] {
  return Array.from({ length: count }, (_, index) => ({
    key: `job-${index}`,
    run: () => {
      const list = starts.get(`job-${index}`) ?? [];
      list.push(clock.now());
      starts.set(`job-${index}`, list);
      return Promise.resolve();
    },
  }));
}

Deno.test("scheduler: 100 jobs spread evenly over the interval, ±10% of a slot of jitter", async () => {
  const clock = createFakeClock();
  const starts = new Map<string, number[]>();
  const scheduler = new Scheduler({
    intervalMs: 10_000,
    timeoutMs: 2_000,
    concurrency: 100,
    clock,
    random: seededRandom(1),
  });
  scheduler.update(recordingJobs(100, clock, starts));
  scheduler.start();
  await clock.tick(10_000 * 5 - 1);
  await scheduler.stop();

  const firsts = [...starts.values()].map((times) => times[0]!).sort((a, b) => a - b);
  assert.equal(firsts.length, 100);
  const slot = 100;
  firsts.forEach((at, index) => {
    assert.ok(Math.abs(at - (index + 0.1) * slot) <= 0.1 * slot + 1, `job ${index} first at ${at}`);
  });
  for (let index = 1; index < firsts.length; index++) {
    assert.ok(firsts[index]! - firsts[index - 1]! >= 0.8 * slot - 2, "no two jobs fire together");
  }
  for (const times of starts.values()) {
    assert.equal(times.length, 5, "each job once per interval");
    for (let run = 1; run < times.length; run++) {
      assert.equal(times[run]! - times[run - 1]!, 10_000);
    }
  }
});

Deno.test("scheduler: two instances with different randomness do not fire in lockstep", async () => {
  const offsets = [];
  for (const seed of [7, 8]) {
    const clock = createFakeClock();
    const starts = new Map<string, number[]>();
    const scheduler = new Scheduler({
      intervalMs: 1_000,
      timeoutMs: 500,
      concurrency: 1,
      clock,
      random: seededRandom(seed),
    });
    scheduler.update(recordingJobs(1, clock, starts));
    scheduler.start();
    await clock.tick(999);
    await scheduler.stop();
    offsets.push(starts.get("job-0")![0]!);
  }
  assert.notEqual(offsets[0], offsets[1]);
  for (const offset of offsets) assert.ok(offset >= 0 && offset <= 200, `first run at ${offset}`);
});

Deno.test("scheduler: at most one run per job in flight; a missed slot counts as late", async () => {
  const clock = createFakeClock();
  const late: string[] = [];
  let runs = 0;
  let release = () => {};
  const scheduler = new Scheduler({
    intervalMs: 1_000,
    timeoutMs: 500,
    concurrency: 10,
    clock,
    random: () => 0.5,
    onLate: (key) => late.push(key),
  });
  scheduler.update([{
    key: "stuck",
    // Ignores its signal on purpose: the scheduler must still not start a second run.
    run: () => {
      runs++;
      return new Promise<void>((resolve) => (release = resolve));
    },
  }]);
  scheduler.start();
  await clock.tick(3_500);
  assert.equal(runs, 1);
  assert.deepEqual(late, ["stuck", "stuck", "stuck"]);
  release();
  await clock.tick(1_000);
  assert.equal(runs, 2);
  release();
  await scheduler.stop();
});

Deno.test("scheduler: concurrency is bounded and queued starts count as late", async () => {
  const clock = createFakeClock();
  let running = 0;
  let most = 0;
  const late: number[] = [];
  const scheduler = new Scheduler({
    intervalMs: 1_000,
    timeoutMs: 900,
    concurrency: 2,
    clock,
    random: () => 0.5,
    onLate: (_key, lateBy) => late.push(lateBy),
  });
  scheduler.update(Array.from({ length: 10 }, (_, index) => ({
    key: `slow-${index}`,
    run: async (signal) => {
      running++;
      most = Math.max(most, running);
      await new Promise<void>((resolve) => {
        clock.setTimeout(resolve, 300);
        signal.addEventListener("abort", () => resolve());
      });
      running--;
    },
  })));
  scheduler.start();
  await clock.tick(999);
  await scheduler.stop();
  assert.equal(most, 2);
  assert.ok(late.length > 0 && late.every((lateBy) => lateBy > LATE_START_TOLERANCE_MS));
});

Deno.test("scheduler: a busy event loop shows as late starts", async () => {
  const clock = createFakeClock();
  const late: number[] = [];
  const scheduler = new Scheduler({
    intervalMs: 1_000,
    timeoutMs: 500,
    concurrency: 1,
    clock,
    random: () => 0.5,
    onLate: (_key, lateBy) => late.push(lateBy),
  });
  scheduler.update([{ key: "a", run: () => Promise.resolve() }]);
  scheduler.start();
  await clock.tick(1_000);
  assert.deepEqual(late, []);
  clock.lag = 200; // the loop was blocked for 200 ms
  await clock.tick(1_000);
  assert.deepEqual(late, [200]);
  await scheduler.stop();
});

Deno.test("scheduler: the deadline aborts a run with a TimeoutError", async () => {
  const clock = createFakeClock();
  const reasons: string[] = [];
  const scheduler = new Scheduler({
    intervalMs: 1_000,
    timeoutMs: 300,
    concurrency: 1,
    clock,
    random: () => 0.5,
  });
  scheduler.update([{
    key: "hangs",
    run: (signal) =>
      new Promise<void>((resolve) =>
        signal.addEventListener("abort", () => {
          reasons.push((signal.reason as Error).name);
          resolve();
        })
      ),
  }]);
  scheduler.start();
  await clock.tick(400);
  assert.deepEqual(reasons, ["TimeoutError"]);
  await scheduler.stop();
});

Deno.test("scheduler: update removes, adds and keeps jobs; removal aborts in-flight runs", async () => {
  const clock = createFakeClock();
  const starts = new Map<string, number[]>();
  const aborted: string[] = [];
  const scheduler = new Scheduler({
    intervalMs: 1_000,
    timeoutMs: 900,
    concurrency: 10,
    clock,
    random: () => 0.5,
  });
  const [a, b] = recordingJobs(2, clock, starts);
  const hanging: Job = {
    key: "hanging",
    run: (signal) =>
      new Promise<void>((resolve) =>
        signal.addEventListener("abort", () => {
          aborted.push((signal.reason as Error).message);
          resolve();
        })
      ),
  };
  scheduler.update([a!, b!, hanging]);
  scheduler.start();
  await clock.tick(800);
  assert.equal(scheduler.size, 3);
  scheduler.update([a!]);
  assert.deepEqual(aborted, ["Job hanging removed"]);
  assert.equal(scheduler.size, 1);
  const [, , c] = recordingJobs(3, clock, starts);
  scheduler.update([a!, c!]);
  await clock.tick(2_200);
  await scheduler.stop();
  assert.equal(starts.get("job-1")!.length, 1, "removed job ran no more");
  assert.deepEqual(starts.get("job-0")!.map((at) => at - starts.get("job-0")![0]!), [
    0,
    1_000,
    2_000,
  ]);
  assert.ok(starts.get("job-2")!.length >= 2, "added job runs");
});

Deno.test("scheduler: first round and liveness", async () => {
  const clock = createFakeClock();
  const scheduler = new Scheduler({
    intervalMs: 1_000,
    timeoutMs: 500,
    concurrency: 4,
    clock,
    random: () => 0.5,
  });
  scheduler.update(recordingJobs(4, clock, new Map()));
  assert.equal(scheduler.firstRoundDone, false);
  scheduler.start();
  await clock.tick(500);
  assert.equal(scheduler.firstRoundDone, false);
  await clock.tick(600);
  assert.equal(scheduler.firstRoundDone, true);
  assert.equal(scheduler.alive, true);
  clock.lag = 10_000; // no timer has fired for 10 s
  assert.equal(scheduler.alive, false);
  await scheduler.stop();
  assert.equal(scheduler.alive, false);
});

Deno.test("scheduler: an empty scheduler is ready and alive", () => {
  const scheduler = new Scheduler({ intervalMs: 1_000, timeoutMs: 500, concurrency: 1 });
  scheduler.start();
  assert.equal(scheduler.firstRoundDone, true);
  assert.equal(scheduler.alive, true);
});

Deno.test("scheduler: a timeout at or above the interval is refused", () => {
  assert.throws(() => new Scheduler({ intervalMs: 1_000, timeoutMs: 1_000, concurrency: 1 }), {
    message: /current timeout 1000 ms is not below the interval 1000 ms/,
  });
});
