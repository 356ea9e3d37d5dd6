/** `m[actual][predicted]` counts. */
export function confusionMatrix(actual: ArrayLike<number>, predicted: ArrayLike<number>, numClasses: number): number[][] {
  const m = Array.from({ length: numClasses }, () => new Array<number>(numClasses).fill(0));
  for (let i = 0; i < actual.length; i++) m[actual[i]!]![predicted[i]!]!++;
  return m;
}

/** A text table: rows = actual label, columns = predicted label (by index). */
export function formatConfusionMatrix(m: number[][], labels: readonly string[]): string {
  const width = Math.max(4, ...m.flat().map((v) => String(v).length)) + 1;
  const nameWidth = Math.max(...labels.map((l, i) => `${i} ${l}`.length), "actual \\ predicted".length);
  const header = `${"actual \\ predicted".padEnd(nameWidth)} ${labels.map((_, j) => String(j).padStart(width)).join("")}`;
  const rows = m.map((row, i) => `${`${i} ${labels[i]}`.padEnd(nameWidth)} ${row.map((v) => String(v).padStart(width)).join("")}`);
  return [header, ...rows].join("\n");
}
