/**
 * Reading Prometheus text output in tests, through a parser package rather
 * than regular expressions.
 * @module
 */

import parsePrometheusTextFormat from "parse-prometheus-text-format";

interface Sample {
  labels?: Record<string, string>;
  value?: string;
  buckets?: Record<string, string>;
  count?: string;
  sum?: string;
}

interface Family {
  name: string;
  type: string;
  metrics: Sample[];
}

/** Parsed exposition text with lookups by name and labels. */
export class Exposition {
  readonly families: Map<string, Family>;

  constructor(text: string) {
    const families = parsePrometheusTextFormat(text) as Family[];
    this.families = new Map(families.map((family) => [family.name, family]));
  }

  /** Samples of `name` whose labels include `labels`. */
  samples(name: string, labels: Record<string, string> = {}): Sample[] {
    const family = this.families.get(name);
    if (!family) return [];
    return family.metrics.filter((sample) =>
      Object.entries(labels).every(([key, value]) => (sample.labels ?? {})[key] === value)
    );
  }

  /** The value of the single sample of a counter or gauge; throws when there is not exactly one. */
  value(name: string, labels: Record<string, string> = {}): number {
    const samples = this.samples(name, labels);
    if (samples.length !== 1) {
      throw new Error(`Expected one ${name}${JSON.stringify(labels)} sample, found ${samples.length}`);
    }
    return Number(samples[0]!.value);
  }

  /** Count and sum of the single histogram series matching `labels`. */
  histogram(name: string, labels: Record<string, string> = {}): { count: number; sum: number; buckets: Record<string, number> } {
    const samples = this.samples(name, labels);
    if (samples.length !== 1) {
      throw new Error(`Expected one ${name}${JSON.stringify(labels)} histogram, found ${samples.length}`);
    }
    const sample = samples[0]!;
    return {
      count: Number(sample.count),
      sum: Number(sample.sum),
      buckets: Object.fromEntries(Object.entries(sample.buckets ?? {}).map(([le, count]) => [le, Number(count)])),
    };
  }
}
