/** "Did you mean …?" for mistyped command and flag names. */

/**
 * Edit distance with adjacent transpositions (optimal string alignment): `trian` → `train`
 * is one edit, as a typist would count it.
 */
export function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[] = new Array<number>(rows * cols).fill(0);
  for (let i = 0; i < rows; i++) d[i * cols] = i;
  for (let j = 0; j < cols; j++) d[j] = j;
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(d[(i - 1) * cols + j]! + 1, d[i * cols + j - 1]! + 1, d[(i - 1) * cols + j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, d[(i - 2) * cols + j - 2]! + 1);
      d[i * cols + j] = best;
    }
  }
  return d[rows * cols - 1]!;
}

/**
 * The candidates closest to `input`, best first (ties keep the candidates' order), or none
 * when nothing is close. A candidate is close when it, or its first `input.length`
 * characters (so `trian` finds `train-mnist`), is within one edit for inputs up to four
 * characters and two edits for longer ones. Case is ignored.
 */
export function closest(input: string, candidates: readonly string[]): string[] {
  const typed = input.toLowerCase();
  const limit = typed.length <= 4 ? 1 : 2;
  const scored = candidates.map((c) => {
    const name = c.toLowerCase();
    const whole = editDistance(typed, name);
    const prefix = name.length > typed.length ? editDistance(typed, name.slice(0, typed.length)) : whole;
    // A whole-name match ranks before a prefix match at the same distance.
    return { c, score: Math.min(whole, prefix + 0.5) };
  });
  const near = scored.filter((s) => s.score <= limit && s.score < typed.length);
  if (near.length === 0) return [];
  const best = Math.min(...near.map((s) => s.score));
  return near.filter((s) => s.score === best).map((s) => s.c);
}

/** `; did you mean X?` / `; did you mean X or Y?`, or "" when nothing is close. */
export function didYouMean(input: string, candidates: readonly string[], show: (c: string) => string = (c) => c): string {
  const near = closest(input, candidates);
  return near.length === 0 ? "" : `; did you mean ${near.map(show).join(" or ")}?`;
}
