import { describe, expect, it } from "vitest";
import * as YAML from "yaml";
import { parseConfig, teamNamespace } from "../config";
import { DEFAULT_GPU_NODE_SELECTOR } from "../components/existingCluster";
import { SERVING_DEFAULTS } from "../components/servingDefaults";
import { STEP_REQUESTS } from "../components/trainingPipeline";
import { TRAINING_REQUESTS } from "../components/trainingOperator";
import { projectConfigSchema } from "./harness";

/** A default stated in a `Pulumi.yaml` description: where (key, then fields) and the text after "default". */
interface StatedDefault {
  readonly path: readonly string[];
  readonly text: string;
}

/** A field list element: `a list of { … }` describes each item, written `[]` in a path. */
const ITEM = "[]";

/**
 * The stated defaults of one description. Its convention: a field list is `{ field, field }`,
 * a field is `name`, `name / name` or `name: a|b`, then notes in parentheses and maybe its own
 * `{ … }`; `default X` in the notes is its default, X in YAML flow syntax (`[…]`, `{…}`,
 * `"…"` or a plain word, ending at a space, `,`, `;`, `)` or `: `). A default stated outside
 * any list belongs to the key; `existing: { … }` (the cluster's variants) names a list.
 */
function statedDefaults(key: string, description: string): StatedDefault[] {
  const found: StatedDefault[] = [];
  interface Frame {
    path: string[];
    names: string[];
    depth: number;
    stated: boolean;
  }
  const stack: Frame[] = [{ path: [key], names: [], depth: 0, stated: false }];
  const top = () => stack[stack.length - 1]!;
  const startField = (at: number) => {
    const m = /^\s*([A-Za-z]\w*(?:\s*\/\s*[A-Za-z]\w*)*)/.exec(description.slice(at));
    Object.assign(top(), { names: m ? m[1]!.split("/").map((n) => n.trim()) : [], stated: false });
  };
  for (let i = 0; i < description.length; i++) {
    const rest = description.slice(i);
    const d = /^default\s+/i.exec(rest);
    if (d && !/\w/.test(description[i - 1] ?? "")) {
      const text = valueAt(rest.slice(d[0].length));
      const f = top();
      if (!f.stated) {
        const owners = stack.length === 1 ? [f.path] : f.names.map((n) => [...f.path, n]);
        for (const path of owners) found.push({ path, text });
        f.stated = true;
      }
      i += d[0].length + text.length - 1;
      continue;
    }
    const c = description[i]!;
    const f = top();
    if (c === "{") {
      const before = description.slice(0, i);
      let path: string[];
      if (stack.length === 1) {
        const variant = /(\w+):\s*$/.exec(before);
        path = [...f.path, ...(variant ? [variant[1]!] : []), ...(/list of\s*$/.test(before) ? [ITEM] : [])];
      } else {
        path = [...f.path, f.names[0] ?? "?", ...(/list of\s*$/.test(before) ? [ITEM] : [])];
      }
      stack.push({ path, names: [], depth: 0, stated: false });
      startField(i + 1);
    } else if (c === "}") {
      if (stack.length > 1) stack.pop();
    } else if (c === "(" || c === "[") {
      f.depth++;
    } else if (c === ")" || c === "]") {
      f.depth--;
    } else if ((c === "," || c === ";") && f.depth === 0 && stack.length > 1) {
      startField(i + 1);
    }
  }
  return found;
}

/** The value at the start of `s`: a bracketed or quoted YAML flow value, else a plain word. */
function valueAt(s: string): string {
  if (/^[[{"]/.test(s)) {
    let depth = 0;
    let quoted = false;
    for (let i = 0; i < s.length; i++) {
      const c = s[i]!;
      if (c === '"') quoted = !quoted;
      else if (!quoted && (c === "[" || c === "{")) depth++;
      else if (!quoted && (c === "]" || c === "}")) depth--;
      if (depth === 0 && !quoted) return s.slice(0, i + 1);
    }
    throw new Error(`unbalanced default value: ${s}`);
  }
  return /^(?:[^\s,;):]|:(?!\s|$))+/.exec(s)?.[0] ?? "";
}

/** Defaults told in words: the program works them out (from the cluster, versions.ts, …), so the schema must leave the key unset. */
const IN_WORDS = /^(the|pinned|generated)$/;
/** No default: the key stays unset (or an empty list). */
const NONE = /^(none|off)$/;

/** Marks a default that depends on other settings: the description says on which, in words after the value. */
const DEPENDS = Symbol("depends on other settings");

/**
 * Keys the schema leaves unset whose stated default the program applies later, with the value
 * it applies (from where it is declared) or DEPENDS.
 */
const APPLIED_BY_THE_PROGRAM: Record<string, unknown> = {
  "cluster.existing.kubeconfig": DEPENDS, // $KUBECONFIG, else ~/.kube/config
  "cluster.existing.gpuNodeSelector": DEFAULT_GPU_NODE_SELECTOR,
  "trainerImage.build": DEPENDS, // the cluster provider
  "trainerImage.variant": DEPENDS, // whether the cluster has GPUs
  "serving.models.[].basePath": DEPENDS, // the model's name
  "serving.models.[].versionPolicy": SERVING_DEFAULTS.versionPolicy,
  "serving.requests": SERVING_DEFAULTS.resources.requests,
  "pipeline.stepRequests": STEP_REQUESTS,
  "pipeline.trainingRequests": TRAINING_REQUESTS,
  "teams.[].namespace": teamNamespace("<name>"),
  "kueue.enabled": DEPENDS, // whether teams are set
  "sharedStorage.size": DEPENDS, // the backend (1Ti for Filestore)
};

/** Minimal configurations whose parse shows each default: one per cluster variant, and one with a list item of each list. */
const clusters: Record<string, Record<string, unknown>> = {
  aks: { cluster: { provider: "aks", location: "westeurope" } },
  gke: { cluster: { provider: "gke", project: "my-ml-project", location: "europe-west4" } },
  existing: { cluster: { provider: "existing" }, trainerImage: { image: "localhost:5001/mlplatform/trainer:0.1.0" } },
};
const withItems = {
  ...clusters.aks,
  teams: [{ name: "a", members: ["u"], quota: { cpu: "1", memory: "1Gi" } }],
  serving: { models: [{ name: "m" }] },
};

/** What config.ts fills in at `path` (key, then fields) when the stack sets nothing there. */
function schemaDefault(path: readonly string[]): unknown {
  const [key, ...fields] = path;
  let raw: Record<string, unknown> = path.includes(ITEM) ? withItems : clusters.aks!;
  if (key === "cluster") {
    const variant = fields.shift()!;
    expect(Object.keys(clusters), `cluster variant in ${path.join(".")}`).toContain(variant);
    raw = clusters[variant]!;
  }
  let v: unknown = (parseConfig(raw) as Record<string, unknown>)[key!];
  for (const f of fields) v = v === undefined ? undefined : f === ITEM ? (v as unknown[])[0] : (v as Record<string, unknown>)[f];
  return v;
}

function checkAll(descriptions: Record<string, { description?: string }>): { checked: string[]; unused: string[] } {
  const checked: string[] = [];
  const used = new Set<string>();
  for (const [key, spec] of Object.entries(descriptions)) {
    for (const { path, text } of statedDefaults(key, spec.description ?? "")) {
      const where = `Pulumi.yaml ${path.join(".")}: "default ${text}"`;
      const actual = schemaDefault(path);
      const id = path.join(".");
      checked.push(id);
      if (IN_WORDS.test(text)) {
        expect(actual, `${where} is told in words, but config.ts sets ${JSON.stringify(actual)}: state that value`).toBeUndefined();
      } else if (NONE.test(text) && (actual === undefined || (Array.isArray(actual) && actual.length === 0))) {
        // none: unset or an empty list. (`none` may also be an enum value, compared below.)
      } else if (actual !== undefined) {
        expect(YAML.parse(text), `${where}, but config.ts's default is ${JSON.stringify(actual)}`).toEqual(actual);
      } else {
        expect(id in APPLIED_BY_THE_PROGRAM, `${where}, but config.ts sets none: add it to the schema, or to APPLIED_BY_THE_PROGRAM with where the program applies it`).toBe(true);
        used.add(id);
        const applied = APPLIED_BY_THE_PROGRAM[id];
        if (applied !== DEPENDS) expect(YAML.parse(text), `${where}, but the program applies ${JSON.stringify(applied)}`).toEqual(applied);
      }
    }
  }
  return { checked, unused: Object.keys(APPLIED_BY_THE_PROGRAM).filter((k) => !used.has(k)) };
}

describe("config: the defaults Pulumi.yaml states are config.ts's", () => {
  const schema = projectConfigSchema();

  it("every stated default matches", () => {
    const { checked, unused } = checkAll(schema);
    // A floor, so that a parser gone blind (nothing found, nothing checked) fails too.
    expect(checked.length).toBeGreaterThan(100);
    expect(unused, "APPLIED_BY_THE_PROGRAM entries no description states").toEqual([]);
  });

  it("reads the description convention", () => {
    const found = statedDefaults(
      "k",
      'Top (default none). { a (default 1), b / c (default the cluster\'s, else x), d: x|y (default "0": why), e { f (default [{ n: m }, { n: o }], more) }, g ({ h (default 10Gi) } or none; default off), i (notes; default 2), later words; j (default latest:1) }. v: { w (default { p: "1", q: 1Gi } each) }',
    );
    expect(found.map((s) => [s.path.join("."), s.text])).toEqual([
      ["k", "none"],
      ["k.a", "1"],
      ["k.b", "the"],
      ["k.c", "the"],
      ["k.d", '"0"'],
      ["k.e.f", "[{ n: m }, { n: o }]"],
      ["k.g.h", "10Gi"],
      ["k.g", "off"],
      ["k.i", "2"],
      ["k.j", "latest:1"],
      ["k.v.w", '{ p: "1", q: 1Gi }'],
    ]);
  });

  it("fails when a stated default drifts from config.ts", () => {
    const drifted = { serving: { description: "{ minReplicas (default 2) }" } };
    expect(() => checkAll(drifted)).toThrow(/serving\.minReplicas: "default 2", but config\.ts's default is 1/);
    const unset = { pipeline: { description: "{ schedule (default 0 3 * * 1) }" } };
    expect(() => checkAll(unset)).toThrow(/pipeline\.schedule: "default 0", but config\.ts sets none/);
    const inWords = { objectStore: { description: "{ storageSize (default the cluster's) }" } };
    expect(() => checkAll(inWords)).toThrow(/objectStore\.storageSize: "default the" is told in words, but config\.ts sets "50Gi"/);
  });
});
