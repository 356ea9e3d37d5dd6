/**
 * `--model_config_file`: TF Serving's text format (ModelServerConfig) through our own
 * text-format reader, and the JSON form kept from before. Pure functions, no server.
 */
import { describe, expect, it } from "vitest";
import { ModelConfigError, parseModelConfig, parseModelConfigJson, parseModelConfigText } from "../src/serve/model-config";

const FILE = "/etc/serving/models.config";

describe("text-format model config", () => {
  it("reads what tensorflow_model_server reads: names, paths, platform, every policy kind, labels", () => {
    const text = `
# comment lines and trailing comments are fine
model_config_list: {
  config: {
    name: "mnist",                       # a comma after a field is allowed
    base_path: '/models/mnist';
    model_platform: "tensorflow"
    model_version_policy: { specific: { versions: 3 versions: 4 } }
    version_labels { key: "stable" value: 3 }
    version_labels: { key: 'canary', value: 4 }
  }
  config < name: "images" base_path: "rel/images" model_version_policy { latest { num_versions: 2 } } >
  config { name: "all" base_path: "s3://models/all" model_version_policy { all {} } }
  config { name: "plain" base_path: "/m/" "plain" }
}`;
    expect(parseModelConfigText(FILE, text)).toEqual([
      { name: "mnist", basePath: "/models/mnist", versionPolicy: { kind: "specific", versions: [3, 4] }, versionLabels: { stable: 3, canary: 4 } },
      { name: "images", basePath: "/etc/serving/rel/images", versionPolicy: { kind: "latest", numVersions: 2 }, versionLabels: undefined },
      { name: "all", basePath: "s3://models/all", versionPolicy: { kind: "all" }, versionLabels: undefined },
      { name: "plain", basePath: "/m/plain", versionPolicy: undefined, versionLabels: undefined },
    ]);
  });

  it("accepts list syntax, hex integers and string escapes", () => {
    const [m] = parseModelConfigText(FILE, `model_config_list { config: [{ name: "a\\x62c" base_path: "/p\\"q" model_version_policy { specific { versions: [0x2, 5] } } }] }`);
    expect(m).toEqual({ name: "abc", basePath: '/p"q', versionPolicy: { kind: "specific", versions: [2, 5] }, versionLabels: undefined });
  });

  it.each([
    [
      "an unknown field, naming line, column and the fields there are",
      `model_config_list {\n  config { name: "a" base_pth: "/x" }\n}`,
      /models\.config:2:22: tensorflow\.serving\.ModelConfig has no field "base_pth"; it has: name, base_path/,
    ],
    [
      "two policies at once",
      `model_config_list { config { name: "a" base_path: "/x" model_version_policy { all {} latest {} } } }`,
      /latest and all are alternatives \(oneof policy_choice\)/,
    ],
    ["a field given twice", `model_config_list { config { name: "a" name: "b" base_path: "/x" } }`, /name is given twice/],
    ["a string where a number goes", `model_config_list { config { name: "a" base_path: "/x" version_labels { key: "s" value: "one" } } }`, /value must be an integer; got one/],
    ["an unclosed message", `model_config_list { config { name: "a" base_path: "/x" }`, /missing "}"/],
    ["an unterminated string", `model_config_list { config { name: "a }`, /:1:36: unterminated string/],
    ["another platform", `model_config_list { config { name: "a" base_path: "/x" model_platform: "onnx" } }`, /model_platform must be "tensorflow".*got "onnx"/],
    ["no models", `model_config_list { }`, /must have at least one config/],
    [
      "a duplicate name",
      `model_config_list { config { name: "a" base_path: "/x" } config { name: "a" base_path: "/y" } }`,
      /config #2 \("a"\): model name "a" is configured twice/,
    ],
    ["a missing base path", `model_config_list { config { name: "a" } }`, /config #1 \("a"\): base_path must be a non-empty string/],
    ["a bad label version", `model_config_list { config { name: "a" base_path: "/x" version_labels { key: "s" value: 0 } } }`, /version label "s" must name a version ≥ 1; got 0/],
    ["specific without versions", `model_config_list { config { name: "a" base_path: "/x" model_version_policy { specific {} } } }`, /specific needs versions ≥ 1/],
  ])("refuses %s", (_what, text, message) => {
    expect(() => parseModelConfigText(FILE, text)).toThrow(ModelConfigError);
    expect(() => parseModelConfigText(FILE, text)).toThrow(message);
  });
});

describe("JSON model config (kept)", () => {
  it("reads the JSON form, and parseModelConfig tells the two apart by the first character", () => {
    const json = JSON.stringify({ models: [{ name: "a", basePath: "a", versionPolicy: "specific:1,3", versionLabels: { stable: 3 } }] });
    const want = [{ name: "a", basePath: "/etc/serving/a", versionPolicy: { kind: "specific", versions: [1, 3] }, versionLabels: { stable: 3 } }];
    expect(parseModelConfigJson(FILE, json)).toEqual(want);
    expect(parseModelConfig(FILE, `\n  ${json}`)).toEqual(want);
    expect(parseModelConfig(FILE, `model_config_list { config { name: "a" base_path: "a" } }`)[0]!.name).toBe("a");
    expect(() => parseModelConfigJson(FILE, JSON.stringify({ models: [{ name: "a", basePath: "/x", versionPolicy: "newest" }] }))).toThrow(
      /models\[0\]\.versionPolicy must be latest:N/,
    );
  });
});
