/** REST JSON encoding details: float32 printing, b64 strings, scalar and string outputs. */
import { describe, expect, it } from "vitest";
import type { SignatureSpec } from "../src/metadata";
import { formatFloat32, formatPredictResponse, parsePredictBody, tensorToJson } from "../src/serve/json";
import { fromTensorProto, toTensorProto, type HostTensor } from "../src/serve/tensor";

describe("REST JSON", () => {
  it("prints the shortest decimal that reads back as the same float32", () => {
    const f32 = new Float32Array([0.1, 1 / 3, 3.4028234663852886e38, 1e-45, -2.5, 16777216, 0]);
    for (const v of f32) {
      const s = formatFloat32(v);
      expect(Math.fround(Number(s))).toBe(v);
      expect(s.length).toBeLessThanOrEqual(15);
    }
    expect(formatFloat32(Math.fround(0.1))).toBe("0.1");
    expect(formatFloat32(NaN)).toBe("null");
  });

  it("decodes b64 and UTF-8 strings and writes non-UTF-8 bytes back as b64", () => {
    const sig: SignatureSpec = { methodName: "p", inputs: { s: { dtype: "string", shape: [-1] } }, outputs: { s: { dtype: "string", shape: [-1] } } };
    const { inputs, format } = parsePredictBody({ instances: ["héllo", { b64: Buffer.from([0xff, 0x00]).toString("base64") }] }, "serving_default", sig);
    expect(format).toBe("row");
    expect(inputs.s!.shape).toEqual([2]);
    expect(formatPredictResponse({ s: inputs.s! }, "row")).toBe('{"predictions":["héllo",{"b64":"/wA="}]}');
    expect(() => parsePredictBody({ instances: [{ b64: "***" }] }, "s", sig)).toThrow(/not valid base64/);
  });

  it("writes a scalar and nested int and bool tensors", () => {
    expect(tensorToJson({ dtype: "int32", shape: [], values: new Int32Array([7]) })).toBe("7");
    expect(tensorToJson({ dtype: "bool", shape: [2, 1], values: new Uint8Array([1, 0]) })).toBe("[[true],[false]]");
  });

  it("round-trips TensorProtos of every served dtype", () => {
    const cases: HostTensor[] = [
      { dtype: "float32", shape: [2], values: new Float32Array([1.5, -2]) },
      { dtype: "int32", shape: [1, 2], values: new Int32Array([3, -4]) },
      { dtype: "bool", shape: [2], values: new Uint8Array([1, 0]) },
      { dtype: "string", shape: [1], values: [new Uint8Array([104, 105])] },
    ];
    for (const t of cases) {
      // Through JSON and back, so nothing is shared with the original.
      const wire = JSON.parse(JSON.stringify(toTensorProto(t)), (_k, v) => (v?.type === "Buffer" ? Buffer.from(v.data) : v));
      const back = fromTensorProto("t", wire);
      expect(back.shape).toEqual(t.shape);
      expect(Array.from(back.values as ArrayLike<unknown>).map(String)).toEqual(Array.from(t.values as ArrayLike<unknown>).map(String));
    }
  });
});
