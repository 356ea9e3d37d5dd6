/** Facts about the machine and versions, stored with every benchmark result. */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

function pkgVersion(name: string): string | undefined {
  try {
    const file = require.resolve(`${name}/package.json`, { paths: [path.resolve(__dirname, "..")] });
    return (JSON.parse(fs.readFileSync(file, "utf8")) as { version: string }).version;
  } catch {
    return undefined;
  }
}

export function machineInfo(packages: string[]): Record<string, unknown> {
  return {
    date: new Date().toISOString(),
    host: os.hostname(),
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    loadAverage: os.loadavg(),
    platform: `${os.platform()} ${os.release()}`,
    node: process.version,
    packages: Object.fromEntries(packages.map((p) => [p, pkgVersion(p)])),
  };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function writeResult(name: string, result: unknown): string {
  const dir = path.join(__dirname, "results");
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${name}.json`);
  fs.writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  return file;
}
