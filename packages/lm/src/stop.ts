/**
 * Watches generated text for stop strings. Text that could still turn into a stop string is held back, so a stream
 * never shows part of a stop string; `push` returns what is safe to emit and whether a stop string was reached.
 */
export class StopStrings {
  private pending = '';
  private readonly longest: number;

  constructor(private readonly stops: readonly string[]) {
    for (const s of stops)
      if (typeof s !== 'string' || s.length === 0) throw new RangeError('stop strings must be non-empty');
    this.longest = Math.max(0, ...stops.map((s) => s.length));
  }

  /** Adds a text delta; returns the text that can be shown and whether generation must stop. */
  push(delta: string): { text: string; stopped: boolean } {
    if (this.stops.length === 0) return { text: delta, stopped: false };
    this.pending += delta;
    let cut = -1;
    for (const s of this.stops) {
      const i = this.pending.indexOf(s);
      if (i !== -1 && (cut === -1 || i < cut)) cut = i;
    }
    if (cut !== -1) {
      const text = this.pending.slice(0, cut);
      this.pending = '';
      return { text, stopped: true };
    }
    // Hold back the longest suffix that is a prefix of some stop string.
    let hold = 0;
    for (let len = Math.min(this.longest - 1, this.pending.length); len > 0; len--) {
      const tail = this.pending.slice(this.pending.length - len);
      if (this.stops.some((s) => s.startsWith(tail))) {
        hold = len;
        break;
      }
    }
    const text = this.pending.slice(0, this.pending.length - hold);
    this.pending = this.pending.slice(this.pending.length - hold);
    return { text, stopped: false };
  }

  /** Text still held back (emitted when generation ends for another reason). */
  flush(): string {
    const t = this.pending;
    this.pending = '';
    return t;
  }
}
