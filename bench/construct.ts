/**
 * Program construction under mocks: wall time from process start until every resource is
 * registered, and peak memory, per stack; the median of several fresh processes.
 * Goal (aks): under 3 s and under 600 MB.
 *
 *   npm run bench:construct            # 5 runs per stack
 *   npm run bench:construct -- 9       # 9 runs per stack
 */
import { execFileSync } from "node:child_process";
import * as path from "node:path";
import { machineInfo, median, writeResult } from "./machine";

const runs = Number(process.argv[2] ?? 5);
const stacks = ["dev", "aks", "gke"];
const tsx = path.join(__dirname, "..", "node_modules", ".bin", "tsx");

interface Sample {
  ms: number;
  maxRssMiB: number;
  resources: number;
}

const rows: Record<string, unknown>[] = [];
// Interleave stacks so that machine noise spreads over all of them alike.
const samples: Record<string, Sample[]> = Object.fromEntries(stacks.map((s) => [s, []]));
for (let i = 0; i < runs; i++) {
  for (const stack of stacks) {
    const out = execFileSync(tsx, [path.join(__dirname, "construct-child.ts"), stack], { encoding: "utf8" });
    samples[stack]!.push(JSON.parse(out.trim().split("\n").pop()!) as Sample);
  }
}
for (const stack of stacks) {
  const s = samples[stack]!;
  rows.push({
    stack,
    runs: s.length,
    resources: s[0]!.resources,
    medianMs: Math.round(median(s.map((x) => x.ms))),
    maxMs: Math.round(Math.max(...s.map((x) => x.ms))),
    medianPeakRssMiB: Math.round(median(s.map((x) => x.maxRssMiB))),
    maxPeakRssMiB: Math.round(Math.max(...s.map((x) => x.maxRssMiB))),
  });
}
console.table(rows);
const aks = rows.find((r) => r.stack === "aks")!;
const goal = { maxMs: 3000, maxPeakRssMiB: 600 };
const met = (aks.medianMs as number) < goal.maxMs && (aks.medianPeakRssMiB as number) < goal.maxPeakRssMiB;
console.log(`aks goal (<${goal.maxMs} ms, <${goal.maxPeakRssMiB} MiB): ${met ? "met" : "MISSED"}`);
const file = writeResult("construct", { machine: machineInfo(["@pulumi/pulumi", "@pulumi/azure-native", "@pulumi/gcp", "@pulumi/kubernetes", "tsx"]), goal, rows });
console.log(`wrote ${file}`);
