import { describe, expect, it } from "vitest";
import { formatDuration, Progress } from "../src/train/progress";

function sink(isTTY: boolean) {
  const chunks: string[] = [];
  return { out: { isTTY, columns: 120, write: (s: string) => chunks.push(s) }, chunks };
}

describe("Progress", () => {
  it("prints plain lines with rate and ETA when not on a terminal", () => {
    let t = 0;
    const { out, chunks } = sink(false);
    const p = new Progress(out, { total: 100, examplesPerStep: 32, lineEverySteps: 25, now: () => t });
    for (let step = 1; step <= 100; step++) {
      t += 50; // 20 steps/s
      p.update({ step, loss: 1 / step, accuracy: step / 100 });
    }
    expect(chunks).toHaveLength(4);
    expect(chunks[0]).toBe("step 25/100 (25%)  loss 0.0400  acc 0.2500  640 img/s  ETA 0:04\n");
    expect(chunks[3]).toMatch(/^step 100\/100 \(100%\).*ETA 0:00\n$/);
    expect(chunks.join("")).not.toContain("\r");
  });

  it("redraws a bar in place on a terminal and ends it with a newline", () => {
    let t = 0;
    const { out, chunks } = sink(true);
    const p = new Progress(out, { total: 10, startStep: 0, now: () => t });
    for (let step = 1; step <= 10; step++) {
      t += 1000;
      p.update({ step, loss: 0.5 });
    }
    expect(chunks[0]).toMatch(/^\r\[=*>? *\] 1\/10 10%  loss 0\.5000  ETA 0:09/);
    expect(chunks.at(-1)).toBe("\n");
    expect(chunks.at(-2)).toMatch(/\[=+\] 10\/10 100%/);
  });

  it("counts the rate of a resumed run from its start step", () => {
    let t = 0;
    const p = new Progress(sink(false).out, { total: 1000, startStep: 900, now: () => t });
    t = 10_000;
    expect(p.stats(950)).toMatchObject({ stepsPerSec: 5, eta: 10 });
  });

  it("formats durations", () => {
    expect(formatDuration(5)).toBe("0:05");
    expect(formatDuration(95)).toBe("1:35");
    expect(formatDuration(3725)).toBe("1:02:05");
    expect(formatDuration(NaN)).toBe("?");
  });
});
