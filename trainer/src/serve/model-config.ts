/**
 * `--model_config_file`: the models a server serves, in TF Serving's text format
 * (ModelServerConfig, as `tensorflow_model_server` reads it) or in our JSON form:
 *
 *   model_config_list {
 *     config {
 *       name: "mnist"
 *       base_path: "/models/mnist"
 *       model_platform: "tensorflow"
 *       model_version_policy { specific { versions: 1 versions: 2 } }
 *       version_labels { key: "stable" value: 1 }
 *       version_labels { key: "canary" value: 2 }
 *     }
 *   }
 *
 *   {"models": [{"name", "basePath", "versionPolicy"?: "latest:N"|"all"|"specific:1,2",
 *                "versionLabels"?: {"stable": 1}}]}
 *
 * A file starting with `{` is JSON, anything else text format. Relative base paths are
 * resolved against the file's directory.
 */
import { promises as fs } from "node:fs";
import * as path from "node:path";
import * as protobuf from "protobufjs";
import type { ModelConfig, VersionPolicy } from "./manager";
import { protoDir } from "./protos";
import { parseTextFormat } from "./textproto";

/** A model config file that cannot be used, naming the file, the entry and the problem. */
export class ModelConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ModelConfigError";
  }
}

/** Platforms a config entry may name: the server detects tfjs vs SavedModel per version. */
const PLATFORMS = new Set(["", "tensorflow"]);
const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

let root: protobuf.Root | undefined;

function serverConfigType(): protobuf.Type {
  if (!root) {
    const dir = protoDir();
    const r = new protobuf.Root();
    r.resolvePath = (_origin, target) => path.join(dir, target);
    r.loadSync("tensorflow_serving/config/model_server_config.proto", { keepCase: true });
    r.resolveAll();
    root = r;
  }
  return root.lookupType("tensorflow.serving.ModelServerConfig");
}

/** `latest:2`, `all`, `specific:1,3` → a policy (null when malformed). */
export function policyFromString(raw: string): VersionPolicy | null {
  const [kind, rest] = raw.split(":", 2) as [string, string | undefined];
  if (kind === "all" && rest === undefined) return { kind: "all" };
  if (kind === "latest") {
    const n = rest === undefined ? 1 : Number(rest);
    if (Number.isInteger(n) && n >= 1) return { kind: "latest", numVersions: n };
  }
  if (kind === "specific" && rest) {
    const versions = rest.split(",").map(Number);
    if (versions.every((v) => Number.isInteger(v) && v >= 1)) return { kind: "specific", versions };
  }
  return null;
}

function resolveBase(file: string, base: string): string {
  return base.includes("://") ? base : path.resolve(path.dirname(file), base);
}

function checkCommon(where: string, name: unknown, basePath: unknown, labels: Record<string, unknown> | undefined, json = false): void {
  const field = (f: string): string => (json ? `${where}.${f}` : `${where}: ${f}`);
  if (typeof name !== "string" || !MODEL_NAME.test(name)) {
    throw new ModelConfigError(`${field("name")} must be letters, digits, '_', '.', '-' (starting with a letter or digit); got ${JSON.stringify(name)}`);
  }
  if (typeof basePath !== "string" || basePath === "") throw new ModelConfigError(`${field(json ? "basePath" : "base_path")} must be a non-empty string`);
  for (const [label, v] of Object.entries(labels ?? {})) {
    if (!/^[A-Za-z0-9_.-]+$/.test(label)) throw new ModelConfigError(`${where}: version label ${JSON.stringify(label)} must be letters, digits, '_', '.', '-'`);
    if (!Number.isSafeInteger(v) || (v as number) < 1) throw new ModelConfigError(`${where}: version label "${label}" must name a version ≥ 1; got ${JSON.stringify(v)}`);
  }
}

/** Parses TF Serving's text-format ModelServerConfig. `file` names it and anchors relative paths. */
export function parseModelConfigText(file: string, text: string): ModelConfig[] {
  let doc: Record<string, unknown>;
  try {
    doc = parseTextFormat(file, text, serverConfigType());
  } catch (e) {
    throw new ModelConfigError(`--model_config_file ${(e as Error).message}`);
  }
  const list = doc.model_config_list as { config?: Record<string, unknown>[] } | undefined;
  const configs = list?.config ?? [];
  if (configs.length === 0) throw new ModelConfigError(`--model_config_file ${file}: model_config_list must have at least one config { ... }`);
  const names = new Set<string>();
  return configs.map((c, i) => {
    const where = `--model_config_file ${file}: config #${i + 1}${typeof c.name === "string" ? ` ("${c.name}")` : ""}`;
    const labels = c.version_labels as Record<string, number> | undefined;
    checkCommon(where, c.name, c.base_path, labels);
    const name = c.name as string;
    if (names.has(name)) throw new ModelConfigError(`${where}: model name "${name}" is configured twice`);
    names.add(name);
    const platform = (c.model_platform as string | undefined) ?? "";
    if (!PLATFORMS.has(platform)) {
      throw new ModelConfigError(`${where}: model_platform must be "tensorflow" (SavedModels and tfjs models are told apart per version); got ${JSON.stringify(platform)}`);
    }
    const pol = c.model_version_policy as { latest?: { num_versions?: number }; all?: object; specific?: { versions?: number[] } } | undefined;
    let versionPolicy: VersionPolicy | undefined;
    if (pol?.latest) versionPolicy = { kind: "latest", numVersions: Math.max(1, pol.latest.num_versions ?? 1) };
    else if (pol?.all) versionPolicy = { kind: "all" };
    else if (pol?.specific) {
      const versions = pol.specific.versions ?? [];
      if (versions.length === 0 || !versions.every((v) => v >= 1)) {
        throw new ModelConfigError(`${where}: model_version_policy.specific needs versions ≥ 1 (versions: 1 versions: 2)`);
      }
      versionPolicy = { kind: "specific", versions };
    }
    return {
      name,
      basePath: resolveBase(file, c.base_path as string),
      versionPolicy,
      versionLabels: labels && Object.keys(labels).length > 0 ? labels : undefined,
    };
  });
}

/** Parses our JSON form (see the file comment). */
export function parseModelConfigJson(file: string, text: string): ModelConfig[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new ModelConfigError(`--model_config_file ${file}: ${(e as Error).message}`);
  }
  const models = (doc as { models?: unknown }).models;
  if (!Array.isArray(models) || models.length === 0) throw new ModelConfigError(`--model_config_file ${file}: "models" must be a non-empty list`);
  const names = new Set<string>();
  return models.map((m: Record<string, unknown>, i) => {
    const where = `--model_config_file ${file}: models[${i}]`;
    const labels = m.versionLabels;
    if (labels !== undefined && (typeof labels !== "object" || labels === null || Array.isArray(labels))) {
      throw new ModelConfigError(`${where}.versionLabels must map labels to versions ≥ 1`);
    }
    checkCommon(where, m.name, m.basePath, labels as Record<string, unknown> | undefined, true);
    if (names.has(m.name as string)) throw new ModelConfigError(`${where}: model name "${m.name as string}" is configured twice`);
    names.add(m.name as string);
    let versionPolicy: VersionPolicy | undefined;
    if (m.versionPolicy !== undefined) {
      versionPolicy = (typeof m.versionPolicy === "string" ? policyFromString(m.versionPolicy) : null) ?? undefined;
      if (!versionPolicy) throw new ModelConfigError(`${where}.versionPolicy must be latest:N (N ≥ 1), all, or specific:V1,V2,...; got ${JSON.stringify(m.versionPolicy)}`);
    }
    return {
      name: m.name as string,
      basePath: resolveBase(file, m.basePath as string),
      versionPolicy,
      versionLabels: labels as Record<string, number> | undefined,
    };
  });
}

/** Parses a config file's text, JSON or text format by its first character. */
export function parseModelConfig(file: string, text: string): ModelConfig[] {
  return text.trimStart().startsWith("{") ? parseModelConfigJson(file, text) : parseModelConfigText(file, text);
}

/** Reads and parses `--model_config_file`. */
export async function readModelConfigFile(file: string): Promise<ModelConfig[]> {
  let text: string;
  try {
    text = await fs.readFile(file, "utf8");
  } catch (e) {
    throw new ModelConfigError(`--model_config_file ${file}: ${(e as Error).message}`);
  }
  return parseModelConfig(file, text);
}
