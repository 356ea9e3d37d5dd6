/**
 * The trainer image (trainer/: training, export, serving, client), built from this repository
 * and pushed to the stack's registry, or a prebuilt reference. Every workload uses the
 * digest-pinned reference this component outputs, so a rebuild rolls them all forward together
 * and nothing runs a tag that moved.
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import type * as dockerbuildTypes from "@pulumi/docker-build";
import * as pulumi from "@pulumi/pulumi";

/** Repository path of the image inside the registry. */
export const TRAINER_REPOSITORY = "mlplatform/trainer";

/** Files whose content decides the image: the trainer workspace and the root lockfile. */
export function imageInputs(repoRoot: string): string[] {
  const skip = new Set(["node_modules", "dist", "bench", "tests", ".prof-tmp.ts"]);
  const files: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      if (skip.has(entry.name) || entry.name.startsWith(".prof")) continue;
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.isFile()) files.push(full);
    }
  };
  walk(path.join(repoRoot, "trainer"));
  for (const f of ["package.json", "package-lock.json", ".dockerignore"]) {
    const full = path.join(repoRoot, f);
    if (fs.existsSync(full)) files.push(full);
  }
  return files;
}

/** Tag from the content hash of the image's inputs (and the variant): same content, same tag. */
export function contentTag(repoRoot: string, variant: string): string {
  const h = crypto.createHash("sha256");
  h.update(`variant=${variant}\n`);
  for (const file of imageInputs(repoRoot)) {
    h.update(path.relative(repoRoot, file));
    h.update("\0");
    h.update(fs.readFileSync(file));
    h.update("\0");
  }
  return `${variant}-${h.digest("hex").slice(0, 16)}`;
}

export interface TrainerImageArgs {
  /** Build and push from `trainer/` (true), or use `image` as given (false). */
  readonly build: boolean;
  /** build: registry server, e.g. `myacr.azurecr.io` or `europe-west4-docker.pkg.dev/p/repo`. */
  readonly registryServer?: pulumi.Input<string>;
  /** build: credentials for the push; default the deployer's Docker credentials. */
  readonly registryAuth?: pulumi.Input<{ username: string; password: pulumi.Input<string> }>;
  /** `gpu` (CUDA, tfjs-node-gpu) or `cpu`. */
  readonly variant: "gpu" | "cpu";
  /** Prebuilt image reference (required when `build` is false). */
  readonly image?: string;
  /** Repository root (the build context). Default: the directory of this program. */
  readonly repoRoot?: string;
}

export class TrainerImage extends pulumi.ComponentResource {
  /** The reference every workload uses: `registry/repo@sha256:…` when built. */
  readonly ref: pulumi.Output<string>;
  /** Whether this stack built the image. */
  readonly built: boolean;

  constructor(name: string, args: TrainerImageArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mlplatform:pipeline:TrainerImage", name, {}, opts);
    this.built = args.build;
    if (!args.build) {
      if (!args.image) throw new pulumi.ResourceError("trainerImage.image is required when trainerImage.build is false", this);
      this.ref = pulumi.output(args.image);
    } else {
      if (!args.registryServer) {
        throw new pulumi.ResourceError("trainerImage.build needs a registry: this cluster has none (set cluster.registry, or trainerImage.build: false with an image)", this);
      }
      // Loaded only when building: stacks that use a prebuilt image never pay for it.
      // eslint-disable-next-line @typescript-eslint/no-require-imports -- lazy load, as said above
      const dockerbuild = require("@pulumi/docker-build") as typeof dockerbuildTypes;
      const root = args.repoRoot ?? path.resolve(__dirname, "..");
      const tag = contentTag(root, args.variant);
      const repo = pulumi.interpolate`${args.registryServer}/${TRAINER_REPOSITORY}`;
      const image = new dockerbuild.Image(
        `${name}-image`,
        {
          context: { location: root },
          dockerfile: { location: path.join(root, "trainer", "Dockerfile") },
          buildArgs: { VARIANT: args.variant },
          platforms: ["linux/amd64"],
          push: true,
          tags: [pulumi.interpolate`${repo}:${tag}`],
          registries: args.registryAuth
            ? [pulumi.all([args.registryServer, args.registryAuth]).apply(([address, auth]) => ({ address: address.split("/")[0]!, ...auth }))]
            : undefined,
          // Layers cached in the registry make CI rebuilds incremental.
          cacheFrom: [{ registry: { ref: pulumi.interpolate`${repo}:buildcache-${args.variant}` } }],
          cacheTo: [{ registry: { ref: pulumi.interpolate`${repo}:buildcache-${args.variant}`, mode: "max" } }],
        },
        { parent: this },
      );
      // `ref` is `repo:tag@sha256:…`; keep only the digest form so a moved tag changes nothing.
      this.ref = pulumi.interpolate`${repo}@${image.digest}`;
    }
    this.registerOutputs({ ref: this.ref });
  }
}
