/** Every dashboard the platform provisions. */
import { gpuDashboard } from "./gpu";
import type { Dashboard } from "./model";
import { servingDashboard } from "./serving";
import { trainingDashboard } from "./training";

export { cloudMonitoringDashboard, grafanaDashboard, dashboardQueries, substituteVariables, type Dashboard } from "./model";

/** Serving and training always; the GPU dashboard only on clusters with GPUs. */
export function platformDashboards(o: { gpu: boolean }): Dashboard[] {
  return o.gpu ? [servingDashboard, trainingDashboard, gpuDashboard] : [servingDashboard, trainingDashboard];
}

export const ALL_DASHBOARDS: readonly Dashboard[] = [servingDashboard, trainingDashboard, gpuDashboard];
