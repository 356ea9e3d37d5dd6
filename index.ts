/**
 * mlplatform: composition only. Every decision lives in config.ts (what the stack asked for)
 * and components/ (how it is built); this file wires them together and names the outputs
 * that other teams consume through `stacks/` (see stacks/contract.ts).
 */
import * as pulumi from "@pulumi/pulumi";
import type { PlatformOutputs } from "./stacks/contract";
import { loadConfig, observabilityMode, type ObservabilityMode, type PlatformConfig } from "./config";
import type { PlatformCluster } from "./components/cluster";

/** Creates the cluster component the stack asked for; each cloud SDK is loaded only when used. */
async function createCluster(cfg: Readonly<PlatformConfig>): Promise<PlatformCluster> {
  const c = cfg.cluster;
  switch (c.provider) {
    case "aks": {
      const { AksCluster } = await import("./components/aksCluster");
      return new AksCluster("platform", {
        cluster: c,
        burst: cfg.burst,
        tags: cfg.tags,
        managedPrometheus: metricsMode(cfg) === "azure-managed",
        migPartitionSize: cfg.gpuSharing.migPartitionSize,
      });
    }
    case "gke": {
      const { GkeCluster } = await import("./components/gkeCluster");
      return new GkeCluster("platform", { cluster: c, labels: cfg.tags, managedPrometheus: metricsMode(cfg) === "gke-managed", gpuSharing: cfg.gpuSharing });
    }
    case "existing": {
      const { ExistingCluster } = await import("./components/existingCluster");
      return new ExistingCluster("platform", { cluster: c });
    }
  }
}

/** The observability mode in force, or undefined when observability is off. */
function metricsMode(cfg: Readonly<PlatformConfig>): ObservabilityMode | undefined {
  return cfg.observability.enabled ? observabilityMode(cfg.observability.mode, cfg.cluster.provider) : undefined;
}

async function main(): Promise<{ [K in keyof PlatformOutputs]: pulumi.Input<PlatformOutputs[K]> }> {
  // Parsed before anything is registered: a bad value stops the program here.
  const cfg = loadConfig();
  const cluster = await createCluster(cfg);

  const skipAwait = cfg.kubernetes.skipAwait;
  // The shared volumes first, then the namespaces after them, then each namespace's claim: the
  // only order in which a destroy after pipeline runs does not deadlock (see SharedStorage).
  const { SharedStorage } = await import("./components/sharedStorage");
  const shared = new SharedStorage("shared", {
    provider: cluster.provider,
    config: cfg.sharedStorage,
    clusterProvider: cfg.cluster.provider,
    namespaces: cfg.namespaces,
    azure: cluster.azure,
    gcp: cluster.gcp,
    tags: cfg.tags,
    skipAwait,
  });
  const { Namespaces } = await import("./components/namespaces");
  const namespaces = new Namespaces("platform", { names: cfg.namespaces, provider: cluster.provider, skipAwait, after: shared.volumes });
  shared.claims(namespaces.resources);

  // Default deny in every platform namespace, then only the flows the architecture needs.
  const { NetworkPolicies } = await import("./components/networkPolicies");
  new NetworkPolicies("network", {
    provider: cluster.provider,
    namespaces: cfg.namespaces,
    ingressNamespace: cfg.ingress.controllerNamespace,
    dependsOn: [namespaces],
  });

  const { NvidiaDevicePlugin, wantsDevicePlugin } = await import("./components/devicePlugin");
  if (cluster.gpu && wantsDevicePlugin(cfg.devicePlugin.install, cfg.cluster)) {
    new NvidiaDevicePlugin("gpu", {
      provider: cluster.provider,
      gpu: cluster.gpu,
      repository: cfg.devicePlugin.repository,
      version: cfg.devicePlugin.version,
      sharing: cfg.gpuSharing,
      skipAwait,
    });
  }

  const { ObjectStore } = await import("./components/objectStore");
  const { platform, ...consumers } = cfg.namespaces;
  const config = new pulumi.Config();
  const objects = new ObjectStore("objects", {
    provider: cluster.provider,
    namespace: platform,
    consumerNamespaces: consumers,
    dependsOn: [namespaces],
    config: cfg.objectStore,
    externalCredentials:
      cfg.objectStore.mode === "external"
        ? { accessKeyId: config.requireSecret("objectStoreAccessKeyId"), secretAccessKey: config.requireSecret("objectStoreSecretAccessKey") }
        : undefined,
    skipAwait,
  });

  // Teams: Kueue queues and quotas, and a namespace per team (config `teams`, `kueue`).
  let kueuePlatformQueue: pulumi.Output<string> | undefined;
  let teamNamespaces: Record<string, pulumi.Output<string>> = {};
  let teamQueues: Record<string, pulumi.Output<string>> = {};
  if (cfg.kueue.enabled ?? cfg.teams.length > 0) {
    const { Kueue } = await import("./components/kueue");
    const { Teams, namespaceOf: teamNamespaceOf } = await import("./components/teams");
    const kueue = new Kueue("kueue", {
      provider: cluster.provider,
      gpu: cluster.gpu,
      repository: cfg.kueue.repository,
      version: cfg.kueue.version,
      chart: cfg.kueue.chart,
      cohort: cfg.kueue.cohort,
      platformQuota: cfg.kueue.platformQuota,
      pipelinesNamespace: cfg.namespaces.pipelines,
      teamNamespaces: cfg.teams.map(teamNamespaceOf),
      dependsOn: [namespaces],
      skipAwait,
    });
    kueuePlatformQueue = kueue.platformQueue;
    const teams = new Teams("teams", {
      provider: cluster.provider,
      teams: cfg.teams,
      platformNamespaces: { platform: cfg.namespaces.platform, serving: cfg.namespaces.serving },
      objectStore: { endpoint: objects.endpoint, region: cfg.objectStore.region, accessKeyId: objects.accessKeyId, secretAccessKey: objects.secretAccessKey },
      kueue,
      cohort: cfg.kueue.cohort,
      dependsOn: [namespaces],
      skipAwait,
    });
    teamNamespaces = { ...teams.namespaces };
    teamQueues = { ...teams.queues };
  }

  // Kubeflow stack: each part on by default, each switchable (and every source overridable).
  const kf = cfg.kubeflow;
  const { createUiIngress } = await import("./components/uiIngress");
  const ing = cfg.ingress;
  let trainingOperatorVersion = "";
  // What the pipeline's custom resources (WorkflowTemplates, TFJobs) need installed first.
  const kubeflowParts: pulumi.Resource[] = [];
  if (kf.trainingOperator.enabled) {
    const { TrainingOperator } = await import("./components/trainingOperator");
    const op = new TrainingOperator("training", { provider: cluster.provider, source: kf.trainingOperator.source, skipAwait });
    trainingOperatorVersion = op.version;
    kubeflowParts.push(op);
  }
  let argoServerUrl = "";
  let pipelineServiceAccount = "";
  if (kf.argo.enabled) {
    const { ArgoWorkflows, ARGO_NAMESPACE, ARGO_SERVER_PORT } = await import("./components/argoWorkflows");
    const argo = new ArgoWorkflows("argo", {
      provider: cluster.provider,
      pipelinesNamespace: cfg.namespaces.pipelines,
      authMode: kf.argo.authMode,
      installCrds: kf.argo.installCrds,
      repository: kf.argo.repository,
      version: kf.argo.version,
      chart: kf.argo.chart,
      artifacts: { endpoint: objects.endpoint, bucket: cfg.objectStore.buckets.logs, region: cfg.objectStore.region },
      dependsOn: [namespaces],
      skipAwait,
    });
    argoServerUrl = argo.serverUrl;
    kubeflowParts.push(argo);
    pipelineServiceAccount = argo.serviceAccountName;
    if (ing.argo) {
      createUiIngress(
        "argo-ui",
        ARGO_NAMESPACE,
        { ...ing.argo, className: ing.className, clusterIssuer: ing.clusterIssuer, serviceName: argo.serverService, servicePort: ARGO_SERVER_PORT, backendHttps: true },
        { provider: cluster.provider, dependsOn: [argo] },
      );
    }
  }
  let jupyterhubUrl = "";
  if (kf.jupyterhub.enabled) {
    const { JupyterHub } = await import("./components/jupyterHub");
    const hub = new JupyterHub("notebooks", {
      provider: cluster.provider,
      namespace: cfg.namespaces.notebooks,
      config: kf.jupyterhub,
      gpu: cluster.gpu,
      clientSecret: kf.jupyterhub.authenticator === "github" ? config.requireSecret("githubOAuthClientSecret") : undefined,
      ingress: ing.jupyterhub ? { ...ing.jupyterhub, className: ing.className, clusterIssuer: ing.clusterIssuer } : undefined,
      dependsOn: [namespaces, shared],
      skipAwait,
    });
    jupyterhubUrl = hub.url;
  }
  let tensorboardUrl: pulumi.Output<string> | string = "";
  if (kf.tensorboard.enabled) {
    const { TensorBoard } = await import("./components/tensorBoard");
    const tb = new TensorBoard("platform", {
      provider: cluster.provider,
      namespace: cfg.namespaces.platform,
      logDir: kf.tensorboard.logDir,
      image: kf.tensorboard.image,
      dependsOn: [namespaces, shared],
      skipAwait,
    });
    tensorboardUrl = tb.url;
    if (ing.tensorboard) {
      createUiIngress(
        "tensorboard-ui",
        cfg.namespaces.platform,
        { ...ing.tensorboard, className: ing.className, clusterIssuer: ing.clusterIssuer, serviceName: tb.serviceName, servicePort: 80, unauthenticatedUi: true },
        { provider: cluster.provider, dependsOn: [tb] },
      );
    }
  }

  // Metrics stack, scrape targets, GPU telemetry, dashboards and alerts (config `observability`).
  if (cfg.observability.enabled) {
    const { Observability } = await import("./components/observability");
    const az = cluster.azure;
    new Observability("metrics", {
      provider: cluster.provider,
      config: cfg.observability,
      cluster: cfg.cluster,
      namespaces: { serving: cfg.namespaces.serving, pipelines: cfg.namespaces.pipelines },
      gpu: cluster.gpu,
      argo: kf.argo.enabled,
      trainingOperator: kf.trainingOperator.enabled,
      ingress: ing,
      azure: az?.clusterId ? { resourceGroupName: az.resourceGroupName, location: az.location, clusterId: az.clusterId, clusterName: cluster.clusterName } : undefined,
      tags: cfg.tags,
      dependsOn: [namespaces, ...kubeflowParts],
      skipAwait,
    });
  }

  // The trainer image every workload runs: built from trainer/ and pushed, or prebuilt.
  const { TrainerImage } = await import("./components/trainerImage");
  const image = new TrainerImage("trainer", {
    build: cfg.trainerImage.build ?? cfg.cluster.provider !== "existing",
    image: cfg.trainerImage.image,
    variant: cfg.trainerImage.variant ?? (cluster.gpu ? "gpu" : "cpu"),
    registryServer: cluster.registryServer.apply((s) => s ?? ""),
    registryAuth: cluster.registryAuth,
  });

  let servingGrpcEndpoint: pulumi.Output<string> | string = "";
  let servingRestUrl: pulumi.Output<string> | string = "";
  if (cfg.serving.enabled) {
    const { ModelServing, SERVING_DEFAULTS } = await import("./components/modelServing");
    const serving = new ModelServing("serving", {
      provider: cluster.provider,
      namespace: cfg.namespaces.serving,
      image: image.ref,
      models: cfg.serving.models,
      minReplicas: cfg.serving.minReplicas,
      maxReplicas: cfg.serving.maxReplicas,
      gpus: cfg.serving.gpus,
      resources: cfg.serving.requests && { ...SERVING_DEFAULTS.resources, requests: cfg.serving.requests },
      targetInflightRequestsPerReplica: cfg.serving.targetInflightRequestsPerReplica,
      gpuPlacement: cluster.gpu,
      // Config names the timeout `timeoutMicros`; the component, like the server, `batchTimeoutMicros`.
      batching: cfg.serving.batching && { maxBatchSize: cfg.serving.batching.maxBatchSize, batchTimeoutMicros: cfg.serving.batching.timeoutMicros },
      // Pods turn Ready only once the pipeline has published a version, which may be after
      // this deployment: never block `pulumi up` on it.
      skipAwait: true,
      dependsOn: [namespaces, shared, objects],
    });
    servingGrpcEndpoint = serving.grpcEndpoint;
    servingRestUrl = serving.restUrl;
  }

  if (cfg.pipeline.enabled) {
    const { TrainingPipeline } = await import("./components/trainingPipeline");
    const { HyperparameterSweep } = await import("./components/hyperparameterSweep");
    const { images } = await import("./components/versions");
    const context = pulumi.all([image.ref, servingGrpcEndpoint, kueuePlatformQueue]).apply(([ref, grpc, queueName]) => ({
      namespace: cfg.namespaces.pipelines,
      serviceAccountName: pipelineServiceAccount,
      image: ref,
      tensorboardImage: kf.tensorboard.image ?? images.tensorboard,
      gpus: cluster.gpu ? 1 : 0,
      gpu: cluster.gpu,
      modelBase: "/mnt/shared/models",
      servingGrpc: grpc,
      stepRequests: cfg.pipeline.stepRequests,
      trainingRequests: cfg.pipeline.trainingRequests,
      queueName,
    }));
    new TrainingPipeline("pipeline", {
      provider: cluster.provider,
      context,
      schedule: cfg.pipeline.schedule,
      dependsOn: [namespaces, shared, objects, ...kubeflowParts],
    });
    new HyperparameterSweep("sweep", {
      provider: cluster.provider,
      context,
      options: { parallelism: cfg.pipeline.sweepParallelism, burst: cluster.burst, modelsBucket: cfg.objectStore.buckets.models },
      dependsOn: [namespaces, objects, ...kubeflowParts],
    });
  }

  return {
    clusterProvider: cfg.cluster.provider,
    clusterName: cluster.clusterName,
    kubeconfig: cluster.kubeconfig,
    gpuEnabled: cluster.gpu !== undefined,
    gpuNodeSelector: cluster.gpu?.nodeSelector ?? {},
    gpuTolerations: cluster.gpu?.tolerations ?? [],
    burstEnabled: cluster.burst !== undefined,
    burstNodeSelector: cluster.burst?.nodeSelector ?? {},
    burstTolerations: cluster.burst?.tolerations ?? [],
    registryServer: cluster.registryServer.apply((s) => s ?? ""),
    platformNamespace: namespaces.names.platform,
    pipelinesNamespace: namespaces.names.pipelines,
    servingNamespace: namespaces.names.serving,
    notebooksNamespace: namespaces.names.notebooks,
    sharedStorageBackend: shared.backend,
    sharedClaimName: shared.claimName,
    sharedMountPath: shared.mountPath,
    objectStoreEndpoint: objects.endpoint,
    objectStoreDataBucket: objects.buckets.data,
    objectStoreModelsBucket: objects.buckets.models,
    objectStoreLogsBucket: objects.buckets.logs,
    objectStoreSecretName: objects.secretName,
    objectStoreAccessKeyId: objects.accessKeyId,
    objectStoreSecretAccessKey: objects.secretAccessKey,
    trainingOperatorVersion,
    argoServerUrl,
    pipelineServiceAccount,
    jupyterhubUrl,
    tensorboardUrl,
    trainerImage: image.ref,
    servingGrpcEndpoint,
    servingRestUrl,
    teamNamespaces: pulumi.output(teamNamespaces),
    teamQueues: pulumi.output(teamQueues),
  };
}

// A function, not its result: nothing runs at import time, and the engine awaits it.
export = main;
