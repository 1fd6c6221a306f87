/**
 * A target's recent past for the status page: its last results (a fixed
 * ring, so a target costs the same however long it lives), when its state
 * last changed, and its failures by reason.
 * @module
 */

/** Results kept per target: 30 probes, 7.5 minutes at the default 15 s interval. */
export const HISTORY_LENGTH = 30;

/** One past probe as the status page draws it. */
export interface PastProbe {
  /** Wall-clock time, ms since the epoch. */
  readonly at: number;
  /** Latency in seconds; null when the probe failed. */
  readonly seconds: number | null;
  /** Why it failed; null when it succeeded. */
  readonly reason: string | null;
}

/** The recent past of one target. */
export class TargetHistory {
  readonly #at = new Float64Array(HISTORY_LENGTH);
  /** NaN marks a failure. */
  readonly #seconds = new Float64Array(HISTORY_LENGTH);
  readonly #reasons: Array<string | null> = new Array(HISTORY_LENGTH).fill(null);
  #next = 0;
  #size = 0;
  #lastState: "up" | "down" | undefined;
  #since: number | undefined;
  readonly #failures = new Map<string, number>();

  /** Records one probe: a latency, or the reason it failed. */
  record(at: number, outcome: { ok: true; seconds: number } | { ok: false; reason: string }): void {
    this.#at[this.#next] = at;
    this.#seconds[this.#next] = outcome.ok ? outcome.seconds : NaN;
    this.#reasons[this.#next] = outcome.ok ? null : outcome.reason;
    this.#next = (this.#next + 1) % HISTORY_LENGTH;
    this.#size = Math.min(HISTORY_LENGTH, this.#size + 1);
    const state = outcome.ok ? "up" : "down";
    if (state !== this.#lastState) {
      this.#lastState = state;
      this.#since = at;
    }
    if (!outcome.ok) {
      this.#failures.set(outcome.reason, (this.#failures.get(outcome.reason) ?? 0) + 1);
    }
  }

  /** When the target last changed between up and down (ms since the epoch). */
  get since(): number | undefined {
    return this.#since;
  }

  /** Failures since the target appeared, by reason. */
  failures(): Record<string, number> {
    return Object.fromEntries(this.#failures);
  }

  /** The kept probes, oldest first. */
  probes(): PastProbe[] {
    const probes: PastProbe[] = [];
    for (let i = 0; i < this.#size; i++) {
      const index = (this.#next - this.#size + i + HISTORY_LENGTH) % HISTORY_LENGTH;
      const seconds = this.#seconds[index]!;
      probes.push({
        at: this.#at[index]!,
        seconds: Number.isNaN(seconds) ? null : seconds,
        reason: this.#reasons[index] ?? null,
      });
    }
    return probes;
  }
}
