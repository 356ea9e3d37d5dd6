/**
 * Defaults of `ModelServingArgs` (components/modelServing.ts), in one place for the docs, the
 * tests and config.ts, whose `serving` schema takes its defaults from here. They live apart
 * from the component so that config.ts can read them without loading the component (and
 * @pulumi/kubernetes with it).
 */
export const SERVING_DEFAULTS = {
  minReplicas: 1,
  maxReplicas: 3,
  targetCpuUtilizationPercent: 70,
  /** GPU servers: average in-flight requests per pod the HPA aims for. */
  targetInflightRequestsPerReplica: 8,
  gpus: 0,
  /** A served model's version policy (TF Serving's own default). */
  versionPolicy: "latest:1",
  /** The service name when the models are given as a list. */
  serviceName: "model-server",
  resources: { requests: { cpu: "1", memory: "1Gi" }, limits: { memory: "2Gi" } },
  /** `mlp serve --grpc_max_message_bytes` default. */
  grpcMaxMessageBytes: 32 * 1024 * 1024,
  /** `mlp serve --rest_api_max_body_bytes` default. */
  restMaxBodyBytes: 64 * 1024 * 1024,
  pollSeconds: 10,
  /** `mlp serve --shutdown_grace_seconds` default. */
  shutdownGraceSeconds: 20,
  preStopSleepSeconds: 5,
  startupTimeoutSeconds: 600,
  /** `mlp serve`'s batching defaults (trainer/src/serve/batcher.ts DEFAULT_BATCHING). */
  batching: { maxBatchSize: 32, batchTimeoutMicros: 2000, maxEnqueuedRequests: 1024 },
} as const;
