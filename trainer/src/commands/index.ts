/**
 * The `mlp` command table. To add a command, write `src/commands/<name>.ts` exporting
 * `command: Command` and add one entry here (the summary is repeated so `mlp --help` need
 * not load every module).
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
