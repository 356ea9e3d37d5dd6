/**
 * Static checks of trainer/Dockerfile (no Docker engine here, so it is checked by reading):
 * pinned base images, both variants and their backends, a non-root user, the entrypoint
 * path that `tsc -p trainer` really produces, the proto directory where the server looks for
 * it, and a .dockerignore that lets in exactly what the Dockerfile copies.
 */
import { readFileSync } from "node:fs";
import * as path from "node:path";
import * as ts from "typescript";
import { describe, expect, it } from "vitest";

const TRAINER = path.resolve(__dirname, "..");
const DOCKERFILE = readFileSync(path.join(TRAINER, "Dockerfile"), "utf8");
const DOCKERIGNORE = readFileSync(path.join(TRAINER, ".dockerignore"), "utf8");
const PKG = JSON.parse(readFileSync(path.join(TRAINER, "package.json"), "utf8")) as {
  dependencies: Record<string, string>;
  scripts: Record<string, string>;
  bin: Record<string, string>;
  engines: { node: string };
};

interface Instruction {
  readonly keyword: string;
  readonly args: string;
}
interface Stage {
  readonly from: string;
  readonly name?: string;
  readonly instructions: Instruction[];
}
interface Dockerfile {
  /** ARGs declared before the first FROM, with their defaults. */
  readonly globalArgs: Map<string, string | undefined>;
  readonly stages: Stage[];
}

/** Instructions with line continuations joined and comments dropped, grouped into stages. */
function parseDockerfile(text: string): Dockerfile {
  const lines: string[] = [];
  let current = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line.startsWith("#") && !current) continue;
    if (line.startsWith("#")) continue; // comment inside a continued instruction
    if (line.endsWith("\\")) {
      current += `${line.slice(0, -1)} `;
      continue;
    }
    current += line;
    if (current.trim()) lines.push(current.trim());
    current = "";
  }
  const globalArgs = new Map<string, string | undefined>();
  const stages: Stage[] = [];
  for (const line of lines) {
    const [keyword, ...rest] = line.split(/\s+/);
    const ins = { keyword: keyword!.toUpperCase(), args: rest.join(" ") };
    if (ins.keyword === "FROM") {
      const m = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args);
      if (!m) throw new Error(`cannot parse FROM ${ins.args}`);
      stages.push({ from: m[1]!, name: m[2], instructions: [] });
    } else if (stages.length === 0) {
      if (ins.keyword !== "ARG") throw new Error(`only ARG may precede FROM; got ${ins.keyword}`);
      const [name, value] = ins.args.split("=", 2) as [string, string | undefined];
      globalArgs.set(name, value);
    } else {
      stages.at(-1)!.instructions.push(ins);
    }
  }
  return { globalArgs, stages };
}

/** `${X}` and `$X` substituted from `vars`; throws on an unknown variable. */
function substitute(s: string, vars: ReadonlyMap<string, string | undefined>): string {
  return s.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a: string | undefined, b: string | undefined) => {
    const v = vars.get((a ?? b)!);
    if (v === undefined) throw new Error(`unknown build arg ${a ?? b} in ${s}`);
    return v;
  });
}

/** The stages a build of `variant` goes through, from the final stage back to its bases. */
function chain(df: Dockerfile, variant: string): Stage[] {
  const vars = new Map(df.globalArgs).set("VARIANT", variant);
  const out: Stage[] = [];
  let stage: Stage | undefined = df.stages.at(-1);
  while (stage) {
    out.push(stage);
    const from = substitute(stage.from, vars);
    stage = df.stages.find((s) => s.name === from);
  }
  return out;
}

/**
 * Stages a BuildKit build of `variant` runs: the final stage and, recursively, the stages
 * they are based on (FROM) or copy from (COPY --from).
 */
function neededStages(df: Dockerfile, variant: string): Stage[] {
  const vars = new Map(df.globalArgs).set("VARIANT", variant);
  const byName = new Map(df.stages.filter((s) => s.name).map((s) => [s.name!, s]));
  const seen = new Set<Stage>();
  const visit = (s: Stage | undefined) => {
    if (!s || seen.has(s)) return;
    seen.add(s);
    visit(byName.get(substitute(s.from, vars)));
    for (const i of s.instructions) {
      const from = /--from=(\S+)/.exec(i.args)?.[1];
      if (i.keyword === "COPY" && from) visit(byName.get(substitute(from, vars)));
    }
  };
  visit(df.stages.at(-1));
  return df.stages.filter((s) => seen.has(s));
}

/** Base images (not stages) the build of `variant` pulls, build args substituted. */
function baseImages(df: Dockerfile, variant: string): string[] {
  const vars = new Map(df.globalArgs).set("VARIANT", variant);
  const names = new Set(df.stages.map((s) => s.name));
  return [
    ...new Set(
      neededStages(df, variant)
        .map((s) => substitute(s.from, vars))
        .filter((f) => !names.has(f)),
    ),
  ];
}

/** An image reference is pinned when it has a digest, or a tag with a full x.y.z version. */
function isPinned(image: string): boolean {
  if (/@sha256:[0-9a-f]{64}$/.test(image)) return true;
  const tag = /:([^/:]+)$/.exec(image)?.[1];
  return tag !== undefined && tag !== "latest" && /(^|\D)\d+\.\d+\.\d+(\D|$)/.test(tag);
}

/** ENV values set along the chain (later stages win), `KEY=value` pairs only. */
function envOf(stages: Stage[]): Map<string, string> {
  const env = new Map<string, string>();
  for (const s of [...stages].reverse()) {
    for (const i of s.instructions.filter((x) => x.keyword === "ENV")) {
      for (const m of i.args.matchAll(/(\w+)=("[^"]*"|\S+)/g)) env.set(m[1]!, m[2]!.replace(/^"|"$/g, ""));
    }
  }
  return env;
}

/** The last USER of the chain (the final stage's own, else inherited). */
function userOf(stages: Stage[]): string | undefined {
  for (const s of stages) {
    const users = s.instructions.filter((i) => i.keyword === "USER");
    if (users.length) return users.at(-1)!.args;
  }
  return undefined;
}

const isNonRoot = (user: string | undefined) => user !== undefined && /^[1-9]\d*(:[1-9]\d*)?$/.test(user);

/** Output path of `src/cli.ts` relative to trainer/, as `tsc -p trainer` computes it. */
function compiledCliPath(): string {
  const configFile = path.join(TRAINER, "tsconfig.json");
  const parsed = ts.getParsedCommandLineOfConfigFile(
    configFile,
    {},
    {
      ...ts.sys,
      onUnRecoverableConfigFileDiagnostic: (d) => {
        throw new Error(ts.flattenDiagnosticMessageText(d.messageText, "\n"));
      },
    },
  );
  if (!parsed) throw new Error(`cannot parse ${configFile}`);
  const cli = path.join(TRAINER, "src", "cli.ts");
  expect(parsed.fileNames).toContain(cli);
  const js = ts.getOutputFileNames(parsed, cli, false).find((f) => f.endsWith(".js"));
  if (!js) throw new Error("tsc emits no .js for src/cli.ts");
  return path.relative(TRAINER, js).split(path.sep).join("/");
}

/** Exec-form ENTRYPOINT as an array. */
function entrypoint(stages: Stage[]): string[] {
  for (const s of stages) {
    const e = s.instructions.filter((i) => i.keyword === "ENTRYPOINT").at(-1);
    if (e) return JSON.parse(e.args) as string[];
  }
  throw new Error("no ENTRYPOINT");
}

const df = parseDockerfile(DOCKERFILE);
const VARIANTS = ["gpu", "cpu"] as const;

describe("trainer/Dockerfile", () => {
  it("pins every base image of both variants (full version tag or digest, never latest)", () => {
    for (const v of VARIANTS) {
      const images = baseImages(df, v);
      expect(images.length).toBeGreaterThan(0);
      for (const image of images) expect(isPinned(image), `${v}: ${image}`).toBe(true);
    }
    expect(DOCKERFILE).not.toMatch(/:latest\b/);
    // The checker itself rejects what it must.
    expect(isPinned("node:20-bookworm-slim")).toBe(false);
    expect(isPinned("node:latest")).toBe(false);
    expect(isPinned("nvidia/cuda")).toBe(false);
    expect(isPinned(`node@sha256:${"a".repeat(64)}`)).toBe(true);
  });

  it("builds on a supported Node.js LTS line (bookworm-slim), the same version everywhere, within the trainer's engines", () => {
    const nodeVersion = df.globalArgs.get("NODE_VERSION")!;
    expect(df.globalArgs.get("NODE_IMAGE")).toBe(`node:${nodeVersion}-bookworm-slim`);
    const [major, minor] = nodeVersion.split(".").map(Number) as [number, number];
    // LTS lines are the even majors; 20 reached end of life in April 2026, 22 is supported
    // until April 2027 and 24 until April 2028.
    expect(major % 2).toBe(0);
    expect(major).toBeGreaterThanOrEqual(22);
    const min = /^>=(\d+)\.(\d+)/.exec(PKG.engines.node)!;
    expect(major > Number(min[1]) || minor >= Number(min[2])).toBe(true);
    const builder = df.stages.find((s) => s.name === "builder")!;
    expect(builder.from).toBe("${NODE_IMAGE}");
  });

  it("has a gpu (default) and a cpu variant selected by the VARIANT build arg", () => {
    expect(df.globalArgs.get("VARIANT")).toBe("gpu");
    expect(df.stages.at(-1)!.from).toBe("runtime-${VARIANT}");
    expect(chain(df, "gpu").map((s) => s.name)).toEqual(["final", "runtime-gpu"]);
    expect(chain(df, "cpu").map((s) => s.name)).toEqual(["final", "runtime-cpu"]);
    expect(() => chain(df, "tpu")).not.toThrow(); // an unknown variant just has no stage…
    expect(chain(df, "tpu").map((s) => s.name)).toEqual(["final"]); // …and fails in Docker
  });

  it("sets MLP_TFJS_BACKEND per variant to a value src/tf.ts and src/serve/tf.ts understand", () => {
    const tfTs = readFileSync(path.join(TRAINER, "src", "tf.ts"), "utf8");
    expect(tfTs).toContain('process.env.MLP_TFJS_BACKEND === "gpu"');
    const serveTf = readFileSync(path.join(TRAINER, "src", "serve", "tf.ts"), "utf8");
    expect(serveTf).toContain('["auto", "node", "gpu", "js"]');
    expect(envOf(chain(df, "gpu")).get("MLP_TFJS_BACKEND")).toBe("gpu");
    // "node": the native CPU package, and `mlp serve` refuses to fall back to pure JS.
    expect(envOf(chain(df, "cpu")).get("MLP_TFJS_BACKEND")).toBe("node");
  });

  it("installs tfjs-node-gpu at the trainer's tfjs-node version on a CUDA/cuDNN base that matches its libtensorflow", () => {
    const tfjsNode = PKG.dependencies["@tensorflow/tfjs-node"]!;
    expect(df.globalArgs.get("TFJS_NODE_VERSION")).toBe(tfjsNode);
    const depsGpu = df.stages.find((s) => s.name === "deps-gpu")!;
    const install = depsGpu.instructions.find((i) => i.keyword === "RUN" && i.args.includes("npm install"))!;
    expect(install.args).toMatch(/npm install --no-save --omit=dev .*"@tensorflow\/tfjs-node-gpu@\$\{TFJS_NODE_VERSION\}"/);
    // tfjs-node(-gpu) downloads libtensorflow LIBTENSORFLOW_VERSION; TensorFlow's tested GPU
    // build configurations give the CUDA and cuDNN it needs.
    const constants = readFileSync(require.resolve("@tensorflow/tfjs-node/scripts/deps-constants.js", { paths: [TRAINER] }), "utf8");
    const lib = /LIBTENSORFLOW_VERSION = '(\d+\.\d+)\.\d+'/.exec(constants)?.[1];
    const CUDA_FOR_TF: Record<string, { cuda: string; cudnn: string }> = { "2.9": { cuda: "11.2", cudnn: "8" } };
    const want = CUDA_FOR_TF[lib!];
    expect(want, `libtensorflow ${lib}: add its CUDA/cuDNN to this table and update CUDA_IMAGE`).toBeDefined();
    const cuda = df.globalArgs.get("CUDA_IMAGE")!;
    expect(cuda).toMatch(new RegExp(`^nvidia/cuda:${want!.cuda.replace(".", "\\.")}\\.\\d+-cudnn${want!.cudnn}-runtime-ubuntu\\d+\\.\\d+$`));
    expect(baseImages(df, "gpu")).toContain(cuda);
    expect(baseImages(df, "cpu")).not.toContain(cuda);
    expect(neededStages(df, "gpu").map((s) => s.name)).toEqual(["builder", "deps-gpu", "runtime-gpu", "final"]);
    expect(neededStages(df, "cpu").map((s) => s.name)).toEqual(["builder", "deps-cpu", "runtime-cpu", "final"]);
  });

  it("runs npm ci for the trainer workspace, builds with tsc, and prunes dev dependencies", () => {
    const runs = df.stages
      .find((s) => s.name === "builder")!
      .instructions.filter((i) => i.keyword === "RUN")
      .map((i) => i.args);
    const ci = runs.findIndex((r) => /npm ci --workspace trainer --include-workspace-root/.test(r));
    const build = runs.findIndex((r) => r.includes("npm run build -w trainer"));
    const prune = runs.findIndex((r) => /npm ci --workspace trainer --omit=dev/.test(r));
    expect(ci).toBeGreaterThanOrEqual(0);
    expect(build).toBeGreaterThan(ci);
    expect(prune).toBeGreaterThan(build);
    expect(PKG.scripts.build).toBe("tsc -p .");
    // Nothing is downloaded outside the package managers.
    expect(DOCKERFILE).not.toMatch(/\b(curl|wget)\b|^ADD\s+https?:/m);
  });

  it("points ENTRYPOINT at the file tsc -p trainer emits for src/cli.ts, and copies it", () => {
    const rel = compiledCliPath();
    expect(rel).toBe("dist/src/cli.js");
    expect(PKG.bin.mlp).toBe(rel);
    for (const v of VARIANTS) {
      const stages = chain(df, v);
      const ep = entrypoint(stages);
      const node = ep.indexOf("node");
      expect(node, ep.join(" ")).toBeGreaterThanOrEqual(0);
      expect(ep[node + 1]).toBe(`/app/trainer/${rel}`);
      expect(ep[0]).toBe("/usr/bin/tini");
    }
    const final = df.stages.at(-1)!;
    const copies = final.instructions.filter((i) => i.keyword === "COPY").map((i) => i.args);
    expect(copies).toContain("--from=builder /app/trainer/dist/src/ trainer/dist/src/");
    expect(final.instructions.find((i) => i.keyword === "WORKDIR")?.args).toBe("/app");
    expect(`/app/trainer/${rel}`.startsWith("/app/trainer/dist/src/")).toBe(true);
  });

  it("ships trainer/proto where src/serve/protos.ts looks for it from the compiled tree", () => {
    const protos = readFileSync(path.join(TRAINER, "src", "serve", "protos.ts"), "utf8");
    expect(protos).toContain('"../../../proto"');
    const serveDir = path.posix.join("/app/trainer", path.posix.dirname(compiledCliPath()), "serve");
    expect(path.posix.resolve(serveDir, "../../../proto")).toBe("/app/trainer/proto");
    const copies = df.stages
      .at(-1)!
      .instructions.filter((i) => i.keyword === "COPY")
      .map((i) => i.args);
    expect(copies).toContain("--from=builder /app/trainer/proto/ trainer/proto/");
  });

  it("runs as uid 1000, never root, in both variants", () => {
    for (const v of VARIANTS) expect(userOf(chain(df, v)), v).toMatch(/^1000(:1000)?$/);
    // The GPU base has no uid 1000; the runtime-gpu stage creates it (node images have `node`).
    const gpu = df.stages.find((s) => s.name === "runtime-gpu")!;
    expect(gpu.instructions.some((i) => i.keyword === "RUN" && /useradd --uid 1000\b/.test(i.args))).toBe(true);
    expect(isNonRoot("root")).toBe(false);
    expect(isNonRoot("0:0")).toBe(false);
    expect(isNonRoot(userOf(chain(parseDockerfile(`${DOCKERFILE}\nUSER root\n`), "cpu")))).toBe(false);
  });

  it("runs no package manager in the runtime stages (the CUDA image's apt source needs NVIDIA's rotated key)", () => {
    for (const name of ["runtime-cpu", "runtime-gpu", "final"]) {
      const runs = df.stages
        .find((s) => s.name === name)!
        .instructions.filter((i) => i.keyword === "RUN")
        .map((i) => i.args);
      for (const r of runs) expect(r, name).not.toMatch(/\b(apt-get|apt|dpkg|npm)\b/);
    }
    const tini = df.stages.filter((s) => s.name?.startsWith("runtime-")).map((s) => s.instructions.find((i) => i.keyword === "COPY" && i.args.includes("tini"))?.args);
    expect(tini).toEqual(["--from=builder /usr/bin/tini-static /usr/bin/tini", "--from=builder /usr/bin/tini-static /usr/bin/tini"]);
  });

  it("exposes 8500 and 8501, has no HEALTHCHECK, and carries OCI labels", () => {
    const final = df.stages.at(-1)!;
    const ports = final.instructions.filter((i) => i.keyword === "EXPOSE").flatMap((i) => i.args.split(/\s+/));
    expect(ports).toEqual(expect.arrayContaining(["8500", "8501"]));
    expect(final.instructions.filter((i) => i.keyword === "HEALTHCHECK").map((i) => i.args)).toEqual(["NONE"]);
    const labels = final.instructions
      .filter((i) => i.keyword === "LABEL")
      .map((i) => i.args)
      .join(" ");
    for (const key of ["org.opencontainers.image.title", "org.opencontainers.image.description", "org.opencontainers.image.licenses", "org.opencontainers.image.version"]) {
      expect(labels).toContain(`${key}=`);
    }
    for (const v of VARIANTS) {
      const all = chain(df, v)
        .flatMap((s) => s.instructions.filter((i) => i.keyword === "LABEL").map((i) => i.args))
        .join(" ");
      expect(all).toContain(`ai.mlplatform.variant="${v}"`);
    }
  });
});

describe("trainer/.dockerignore", () => {
  const patterns = DOCKERIGNORE.split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"));
  const contextCopies = df.stages
    .flatMap((s) => s.instructions)
    .filter((i) => i.keyword === "COPY" && !i.args.startsWith("--from"))
    .flatMap((i) => i.args.split(/\s+/).slice(0, -1));

  /** Last matching pattern wins, as in Docker; patterns here are plain paths, `*` and `**\/name`. */
  function excluded(file: string): boolean {
    let out = false;
    for (const p of patterns) {
      const negate = p.startsWith("!");
      const pat = (negate ? p.slice(1) : p).replace(/\/$/, "");
      const match =
        pat === "*" ||
        file === pat ||
        file.startsWith(`${pat}/`) ||
        (pat.startsWith("**/") &&
          file
            .split("/")
            .some((seg, i, segs) => seg === pat.slice(3) || segs.slice(i).join("/") === pat.slice(3) || (pat.slice(3).startsWith("*.") && seg.endsWith(pat.slice(4)))));
      if (match) out = !negate;
    }
    return out;
  }

  it("allow-lists: excludes everything, then lets in exactly what the Dockerfile copies from the context", () => {
    expect(patterns[0]).toBe("*");
    expect(contextCopies.length).toBeGreaterThan(0);
    for (const src of contextCopies) expect(excluded(src.replace(/\/$/, "")), src).toBe(false);
    // Files inside the copied directories come along; build output and modules never do.
    expect(excluded("trainer/src/cli.ts")).toBe(false);
    expect(excluded("trainer/proto/tensorflow_serving/apis/predict.proto")).toBe(false);
    for (const f of [
      "node_modules/x/index.js",
      "trainer/node_modules/x",
      "trainer/dist/src/cli.js",
      "trainer/src/dist/a.js",
      "trainer/bench/results/a.json",
      "trainer/tests/cli.test.ts",
      "index.ts",
      ".git/HEAD",
      "Pulumi.yaml",
    ]) {
      expect(excluded(f), f).toBe(true);
    }
    // Every "!" re-include is used by a COPY (no stale entries).
    for (const p of patterns.filter((x) => x.startsWith("!"))) {
      const pat = p.slice(1).replace(/\/$/, "");
      expect(
        contextCopies.map((c) => c.replace(/\/$/, "")),
        p,
      ).toContain(pat);
    }
  });
});
