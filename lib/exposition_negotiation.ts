/**
 * Which exposition a scrape asks for, apart from the encoders: the protobuf
 * one (lib/exposition_proto.ts, with `@bufbuild/protobuf`) is loaded only
 * when a scrape first asks for it, since loading the library costs a few MiB
 * of resident memory that a Prometheus reading text never uses.
 * @module
 */

/** The content type of the delimited protobuf exposition. */
export const PROTOBUF_CONTENT_TYPE =
  "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

/**
 * Which exposition a scrape's `Accept` header asks for, the way
 * client_golang's `expfmt.Negotiate` decides: the media ranges by quality,
 * highest first (ties in the order given), and the first that names a
 * format served wins — the delimited `MetricFamily` protobuf, or text (any
 * text, OpenMetrics or `*` range is answered with the text format).
 */
export function negotiateExposition(accept: string | null): "protobuf" | "text" {
  if (!accept) return "text";
  const ranges = accept.split(",").map((range, order) => {
    const [type = "", ...parameters] = range.split(";").map((part) => part.trim());
    const values = new Map<string, string>();
    for (const parameter of parameters) {
      const equals = parameter.indexOf("=");
      if (equals > 0) {
        values.set(
          parameter.slice(0, equals).trim().toLowerCase(),
          parameter.slice(equals + 1).trim().replace(/^"|"$/g, ""),
        );
      }
    }
    const quality = Number(values.get("q") ?? "1");
    return {
      type: type.toLowerCase(),
      values,
      quality: Number.isFinite(quality) ? quality : 0,
      order,
    };
  }).filter((range) => range.quality > 0)
    .sort((a, b) => b.quality - a.quality || a.order - b.order);
  for (const range of ranges) {
    if (range.type === "application/vnd.google.protobuf") {
      if (
        range.values.get("proto") === "io.prometheus.client.MetricFamily" &&
        range.values.get("encoding") === "delimited"
      ) {
        return "protobuf";
      }
      continue;
    }
    if (
      range.type === "text/plain" || range.type === "application/openmetrics-text" ||
      range.type === "text/*" || range.type === "*/*"
    ) {
      return "text";
    }
  }
  return "text";
}
