/**
 * A consumer of the platform: uses nothing but the platform's outputs (stacks/contract.ts)
 * to run a smoke Job on its cluster: on a GPU node when the platform has GPUs, else on CPU.
 * With config `team`, as that team: in its namespace, submitted to its Kueue queue.
 */
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { QUEUE_NAME_LABEL } from "../contract";
import { PlatformReference, teamEntry } from "../reference";
import { smokeJobSpec } from "./smokeJob";

export = () => {
  const config = new pulumi.Config();
  const platform = new PlatformReference(config.require("platformStack"));
  const provider = platform.provider("platform");
  const o = platform.outputs;
  // Declared with default "" in Pulumi.yaml (a declared key without a default is required): "" is none.
  const team = config.get("team") || undefined;

  const job = new k8s.batch.v1.Job(
    "smoke",
    {
      metadata: {
        namespace: team === undefined ? o.pipelinesNamespace : o.teamNamespaces.apply((m) => teamEntry(m, team, "teamNamespaces")),
        labels: team === undefined ? {} : o.teamQueues.apply((m) => ({ [QUEUE_NAME_LABEL]: teamEntry(m, team, "teamQueues") })),
        annotations: config.getBoolean("skipAwait") ? { "pulumi.com/skipAwait": "true" } : {},
      },
      spec: pulumi
        .all([o.gpuEnabled, o.gpuNodeSelector, o.gpuTolerations])
        .apply(([gpu, nodeSelector, tolerations]) => smokeJobSpec(gpu ? { nodeSelector, tolerations } : undefined)),
    },
    { provider },
  );

  return {
    smokeJobName: job.metadata.name,
    smokeJobNamespace: job.metadata.namespace,
    platformCluster: o.clusterName,
  };
};
