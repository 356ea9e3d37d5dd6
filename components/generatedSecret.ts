/**
 * A credential generated once with the OS's CSPRNG, kept (encrypted) in the stack's state,
 * and stable across updates: the same contract as `@pulumi/random`'s RandomPassword.
 *
 * Why not `@pulumi/random`: its provider is a separate plugin binary, which cannot be built
 * or fetched in air-gapped environments (nor in our offline CI); this dynamic provider runs
 * inside the Node.js program itself and needs no plugin at all.
 */
import * as pulumi from "@pulumi/pulumi";

/** `lowerAlnum` for user names (and anything that ends up in a URL or a DNS name); `alnum` for keys; `hex` for keys read as hex bytes. */
export type Alphabet = "lowerAlnum" | "alnum" | "hex";

interface Inputs {
  length: number;
  alphabet: Alphabet;
  prefix: string;
}

/**
 * The provider is serialized into the stack's state and run by the engine's Node.js dynamic
 * provider host, without this module: it must reference nothing outside its own bodies.
 */
export const generatedSecretProvider: pulumi.dynamic.ResourceProvider = {
  async create(inputs: Inputs) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- the serialized provider may reference no module-level import
    const nodeCrypto = require("node:crypto") as typeof import("node:crypto");
    const chars =
      inputs.alphabet === "lowerAlnum"
        ? "abcdefghijklmnopqrstuvwxyz0123456789"
        : inputs.alphabet === "hex"
          ? "0123456789abcdef"
          : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    // Rejection sampling: every character equally likely (no modulo bias).
    const limit = 256 - (256 % chars.length);
    let value = "";
    while (value.length < inputs.length) {
      for (const b of nodeCrypto.randomBytes(inputs.length * 2)) {
        if (b < limit && value.length < inputs.length) value += chars[b % chars.length];
      }
    }
    return { id: nodeCrypto.randomUUID(), outs: { ...inputs, value: inputs.prefix + value } };
  },
  async diff(_id: string, olds: Inputs, news: Inputs) {
    const replaces = ["length", "alphabet", "prefix"].filter((k) => olds[k as keyof Inputs] !== news[k as keyof Inputs]);
    return { changes: replaces.length > 0, replaces, deleteBeforeReplace: false };
  },
};

export interface GeneratedSecretArgs {
  /** Characters after the prefix. Default 32. */
  readonly length?: number;
  /** Default `alnum`. */
  readonly alphabet?: Alphabet;
  /** Fixed, non-secret prefix (e.g. `mlp` for a user name that must start with a letter). Default "". */
  readonly prefix?: string;
}

export class GeneratedSecret extends pulumi.dynamic.Resource {
  /** The generated value; always a secret. */
  declare readonly value: pulumi.Output<string>;

  constructor(name: string, args: GeneratedSecretArgs = {}, opts?: pulumi.CustomResourceOptions) {
    const length = args.length ?? 32;
    if (length < 8) throw new Error(`GeneratedSecret ${name}: length must be ≥ 8; got ${length}`);
    super(
      generatedSecretProvider,
      name,
      { length, alphabet: args.alphabet ?? "alnum", prefix: args.prefix ?? "", value: undefined },
      { ...opts, additionalSecretOutputs: ["value"] },
      "mlplatform",
      "GeneratedSecret",
    );
  }
}
