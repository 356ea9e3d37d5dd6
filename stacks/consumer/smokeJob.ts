import type * as k8s from "@pulumi/kubernetes";
import type { TolerationOutput } from "../contract";

/** Images are pinned; a smoke test must not change under us. */
export const SMOKE_IMAGES = { gpu: "nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04", cpu: "busybox:1.37.0" } as const;

/**
 * Job spec that proves a pod can be scheduled where the platform says: on a GPU node with
 * one GPU (`nvidia-smi`), or on any node when there is no GPU. Restricted Pod Security.
 */
export function smokeJobSpec(gpu?: { nodeSelector: Record<string, string>; tolerations: TolerationOutput[] }): k8s.types.input.batch.v1.JobSpec {
  return {
    backoffLimit: 1,
    ttlSecondsAfterFinished: 3600,
    template: {
      spec: {
        restartPolicy: "Never",
        nodeSelector: gpu?.nodeSelector,
        tolerations: gpu?.tolerations,
        securityContext: { runAsNonRoot: true, runAsUser: 65534, seccompProfile: { type: "RuntimeDefault" } },
        containers: [
          {
            name: "smoke",
            image: gpu ? SMOKE_IMAGES.gpu : SMOKE_IMAGES.cpu,
            command: gpu ? ["nvidia-smi", "-L"] : ["sh", "-c", "echo platform reachable"],
            resources: {
              requests: { cpu: "50m", memory: "32Mi" },
              limits: { memory: "128Mi", ...(gpu ? { "nvidia.com/gpu": "1" } : {}) },
            },
            securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } },
          },
        ],
      },
    },
  };
}
