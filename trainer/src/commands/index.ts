/**
 * The `mlp` command table. To add a command, write `src/commands/<name>.ts` exporting
 * `command = defineCommand({ name, flags, help, run })` (flags in a table, see
 * util/flags.ts) and add one entry here. A command's one-line summary lives here only, so
 * `mlp --help` need not load every module.
 */
import type { CommandEntry } from "./command";

export const COMMANDS: readonly CommandEntry[] = [
  {
    name: "train-mnist",
    summary: "train the MNIST-style CNN on IDX files (local or s3://) and publish a model version",
    load: async () => (await import("./train-mnist")).command,
  },
  {
    name: "retrain",
    summary: "retrain a new softmax head on a folder of labelled images (transfer learning)",
    load: async () => (await import("./retrain")).command,
  },
  {
    name: "fetch-base",
    summary: "download a named base model for retrain (Inception v3, MobileNet, or any tfjs URL) into the shared cache, verified by sha256",
    load: async () => (await import("./fetch-base")).command,
  },
  {
    name: "verify-data",
    summary: "check that a dataset (IDX files or image folders, local or s3://) is complete and readable",
    load: async () => (await import("./verify-data")).command,
  },
  {
    name: "evaluate",
    summary: "evaluate a model version on held-out data; exit 3 when its accuracy is below the gate",
    load: async () => (await import("./evaluate")).command,
  },
  {
    name: "publish",
    summary: "publish an exported model version as the next version under <model-base>/<name> (local or s3://)",
    load: async () => (await import("./publish")).command,
  },
  {
    name: "serve",
    summary: "serve model versions over TF-Serving-compatible gRPC and REST APIs, hot-reloading new versions",
    load: async () => (await import("./serve")).command,
  },
  {
    name: "predict",
    summary: "classify an image or IDX sample with a model server (gRPC or REST) and print the top labels",
    load: async () => (await import("./predict")).command,
  },
];
