/**
 * Reading Prometheus text output in tests. (The npm parser
 * parse-prometheus-text-format drops the labels of histogram series, so the
 * few lines needed are here.)
 * @module
 */

/** One sample line: name, labels, value. */
export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?\s*/gy;

/** Parses the text exposition format into samples. */
export function parseSamples(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const match = LINE.exec(line);
    if (!match) {
      throw new Error(`Cannot parse metrics line: current value is ${JSON.stringify(line)}`);
    }
    const labels: Record<string, string> = {};
    LABEL.lastIndex = 0;
    const body = match[2] ?? "";
    let label: RegExpExecArray | null;
    while ((label = LABEL.exec(body)) !== null) {
      labels[label[1]!] = label[2]!.replace(/\\n/g, "\n").replace(/\\(.)/g, "$1");
    }
    samples.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return samples;
}

/** Parsed exposition text with lookups by name and labels. */
export class Exposition {
  readonly all: readonly Sample[];

  constructor(text: string) {
    this.all = parseSamples(text);
  }

  /** Samples of `name` whose labels include `labels`. */
  samples(name: string, labels: Record<string, string> = {}): Sample[] {
    return this.all.filter((sample) =>
      sample.name === name &&
      Object.entries(labels).every(([key, value]) => sample.labels[key] === value)
    );
  }

  /** The value of the single sample matching; throws when there is not exactly one. */
  value(name: string, labels: Record<string, string> = {}): number {
    const samples = this.samples(name, labels);
    if (samples.length !== 1) {
      throw new Error(
        `Expected one ${name}${JSON.stringify(labels)} sample, found ${samples.length}`,
      );
    }
    return samples[0]!.value;
  }

  /** Count, sum and cumulative buckets of the single histogram series matching `labels`. */
  histogram(
    name: string,
    labels: Record<string, string> = {},
  ): { count: number; sum: number; buckets: Map<string, number> } {
    const buckets = new Map(
      this.samples(`${name}_bucket`, labels).map((sample) => [sample.labels.le!, sample.value]),
    );
    return {
      count: this.value(`${name}_count`, labels),
      sum: this.value(`${name}_sum`, labels),
      buckets,
    };
  }
}
