/** Text output of `mlp predict`: top-k table and an ASCII rendering of small greyscale images. */

export interface Scored {
  readonly index: number;
  readonly label: string;
  readonly score: number;
}

/** The `k` highest scores, best first (ties keep class order). */
export function topK(scores: ArrayLike<number>, labels: readonly string[] | undefined, k: number): Scored[] {
  const all: Scored[] = Array.from({ length: scores.length }, (_, i) => ({ index: i, label: labels?.[i] ?? String(i), score: scores[i]! }));
  return all.sort((a, b) => b.score - a.score || a.index - b.index).slice(0, Math.max(1, k));
}

const RAMP = " .:-=+*#%@";

/** One text line per pixel row, two characters per pixel (terminal cells are tall). */
export function asciiImage(grey: Uint8Array, width: number, height: number): string[] {
  const lines: string[] = [];
  for (let y = 0; y < height; y++) {
    let line = "";
    for (let x = 0; x < width; x++) {
      const c = RAMP[Math.min(RAMP.length - 1, Math.floor((grey[y * width + x]! / 256) * RAMP.length))]!;
      line += c + c;
    }
    lines.push(line);
  }
  return lines;
}

/** The answer block: headline and a bar per class. */
export function formatTop(top: readonly Scored[], title: string): string[] {
  const w = Math.max(...top.map((t) => t.label.length));
  const best = top[0]!;
  return [
    title,
    "",
    `  answer: ${best.label} (${(best.score * 100).toFixed(1)}%)`,
    "",
    ...top.map((t) => `  ${t.label.padEnd(w)}  ${t.score.toFixed(4)}  ${"█".repeat(Math.round(Math.max(0, Math.min(1, t.score)) * 20))}`),
  ];
}

/** Joins two blocks of lines side by side, the left padded to its widest line. */
export function sideBySide(left: readonly string[], right: readonly string[], gap = 4): string[] {
  const w = Math.max(0, ...left.map((l) => l.length));
  const top = Math.max(0, Math.floor((left.length - right.length) / 2));
  return Array.from({ length: Math.max(left.length, right.length + top) }, (_, i) => {
    const r = right[i - top] ?? "";
    return `${(left[i] ?? "").padEnd(w)}${" ".repeat(gap)}${r}`.trimEnd();
  });
}
