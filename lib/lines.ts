/**
 * Splits a stream of text into lines, looking at each chunk once: what Deno
 * std's `TextLineStream` does (a line ends at "\n", a "\r" before it is
 * dropped), as a push-style splitter whose unfinished line can be measured
 * and capped. Splitting the whole buffer again on every chunk costs the
 * square of a long line.
 * @module
 */

/** Feed it text with {@link push}; it hands back each line once it is complete. */
export class LineSplitter {
  #pending: string[] = [];
  #pendingLength = 0;

  /** Characters of the line still unfinished. */
  get pendingLength(): number {
    return this.#pendingLength;
  }

  /** Adds `text`; returns the lines it completes, without their ends. */
  push(text: string): string[] {
    const lines: string[] = [];
    let start = 0;
    for (let end = text.indexOf("\n"); end !== -1; end = text.indexOf("\n", start)) {
      const line = this.#pending.join("") + text.slice(start, end);
      lines.push(line.endsWith("\r") ? line.slice(0, -1) : line);
      this.#pending = [];
      this.#pendingLength = 0;
      start = end + 1;
    }
    if (start < text.length) {
      this.#pending.push(text.slice(start));
      this.#pendingLength += text.length - start;
    }
    return lines;
  }
}
