/**
 * GPUs: utilisation, memory and power per GPU from the NVIDIA DCGM exporter (its default
 * counters; GKE's managed DCGM collection exports the same names), and the GPUs that
 * pending pods wait for (kube-state-metrics).
 */
import type { Dashboard } from "./model";

/** GPUs requested by pods still Pending (waiting for a node with a free GPU). */
export const PENDING_GPU_REQUESTS =
  'sum(kube_pod_container_resource_requests{resource="nvidia_com_gpu"} * on (namespace, pod) group_left () (kube_pod_status_phase{phase="Pending"} == 1))';

export const gpuDashboard: Dashboard = {
  uid: "mlp-gpu",
  title: "mlplatform / GPUs",
  description: "GPU utilisation, memory and power per GPU (DCGM exporter), and GPU demand from pending pods.",
  tags: ["mlplatform", "gpu"],
  variables: [{ name: "node", label: "Node", metric: "DCGM_FI_DEV_GPU_UTIL", labelName: "Hostname" }],
  panels: [
    {
      title: "GPU utilisation",
      description: "Share of time a kernel ran, per GPU.",
      unit: "percent",
      queries: [{ expr: 'avg by (Hostname, gpu) (DCGM_FI_DEV_GPU_UTIL{Hostname=~"$node"})', legend: "{{Hostname}} gpu {{gpu}}" }],
    },
    {
      title: "GPU memory used",
      description: "Framebuffer memory in use, per GPU.",
      unit: "decmbytes",
      queries: [{ expr: 'avg by (Hostname, gpu) (DCGM_FI_DEV_FB_USED{Hostname=~"$node"})', legend: "{{Hostname}} gpu {{gpu}}" }],
    },
    {
      title: "GPU memory used (share)",
      description: "Used over used + free framebuffer memory.",
      unit: "percentunit",
      queries: [
        {
          expr: 'avg by (Hostname, gpu) (DCGM_FI_DEV_FB_USED{Hostname=~"$node"} / (DCGM_FI_DEV_FB_USED{Hostname=~"$node"} + DCGM_FI_DEV_FB_FREE{Hostname=~"$node"}))',
          legend: "{{Hostname}} gpu {{gpu}}",
        },
      ],
    },
    {
      title: "Power draw",
      description: "Watts per GPU.",
      unit: "watt",
      queries: [{ expr: 'avg by (Hostname, gpu) (DCGM_FI_DEV_POWER_USAGE{Hostname=~"$node"})', legend: "{{Hostname}} gpu {{gpu}}" }],
    },
    {
      title: "Tensor core activity",
      description: "Share of cycles the tensor pipes were busy (profiling counter; not every GPU model reports it).",
      unit: "percentunit",
      queries: [{ expr: 'avg by (Hostname, gpu) (DCGM_FI_PROF_PIPE_TENSOR_ACTIVE{Hostname=~"$node"})', legend: "{{Hostname}} gpu {{gpu}}" }],
    },
    {
      title: "Temperature",
      description: "GPU temperature.",
      unit: "celsius",
      queries: [{ expr: 'avg by (Hostname, gpu) (DCGM_FI_DEV_GPU_TEMP{Hostname=~"$node"})', legend: "{{Hostname}} gpu {{gpu}}" }],
    },
    {
      title: "GPUs waited for",
      description: "GPUs requested by pods that are still Pending (kube-state-metrics).",
      unit: "short",
      kind: "stat",
      queries: [{ expr: PENDING_GPU_REQUESTS, legend: "pending GPU requests" }],
    },
  ],
};
