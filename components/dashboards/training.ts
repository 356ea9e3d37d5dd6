/**
 * Training: throughput, loss and step time per replica, from the trainer's metrics port
 * (trainer/src/train/metrics-server.ts), and the Training Operator's job counters.
 */
import type { Dashboard } from "./model";

const sel = `model=~"$model"`;

export const trainingDashboard: Dashboard = {
  uid: "mlp-training",
  title: "mlplatform / Training",
  description: "Training runs (TFJob replicas of mlp train-mnist and mlp retrain): throughput, loss and step time per replica.",
  tags: ["mlplatform", "training"],
  variables: [{ name: "model", label: "Model", metric: "mlp_training_step", labelName: "model" }],
  panels: [
    {
      title: "Examples per second",
      description: "Per replica, and summed over the run's replicas.",
      unit: "short",
      queries: [
        { expr: `sum by (model, pod, replica) (rate(mlp_training_examples_total{${sel}}[2m]))`, legend: "{{model}} {{replica}} {{pod}}" },
        { expr: `sum by (model) (rate(mlp_training_examples_total{${sel}}[2m]))`, legend: "{{model}} total" },
      ],
    },
    {
      title: "Training loss",
      description: "Loss of the latest step's batch.",
      unit: "short",
      queries: [{ expr: `mlp_training_loss{${sel}}`, legend: "{{model}} {{replica}} {{pod}}" }],
    },
    {
      title: "Step time per replica",
      description: "Mean and p90 wall time of one step; in distributed runs the slowest replica sets everyone's pace.",
      unit: "s",
      queries: [
        {
          expr: `sum by (model, pod, replica) (rate(mlp_training_step_duration_seconds_sum{${sel}}[2m])) / sum by (model, pod, replica) (rate(mlp_training_step_duration_seconds_count{${sel}}[2m]))`,
          legend: "mean {{replica}} {{pod}}",
        },
        {
          expr: `histogram_quantile(0.9, sum by (le, model, pod, replica) (rate(mlp_training_step_duration_seconds_bucket{${sel}}[2m])))`,
          legend: "p90 {{replica}} {{pod}}",
        },
      ],
    },
    {
      title: "Training accuracy",
      description: "Accuracy of the latest step's batch.",
      unit: "percentunit",
      queries: [{ expr: `mlp_training_accuracy{${sel}}`, legend: "{{model}} {{replica}} {{pod}}" }],
    },
    {
      title: "Progress",
      description: "Steps done over the run's total.",
      unit: "percentunit",
      kind: "stat",
      queries: [{ expr: `max by (model, pod) (mlp_training_step{${sel}} / mlp_training_target_steps{${sel}})`, legend: "{{model}} {{pod}}" }],
    },
    {
      title: "Seconds since the last step",
      description: "A run whose replicas stop moving this is stalled (see the TrainingStalled alert).",
      unit: "s",
      queries: [{ expr: `time() - mlp_training_last_step_timestamp_seconds{${sel}} and mlp_training_in_progress{${sel}} == 1`, legend: "{{replica}} {{pod}}" }],
    },
    {
      title: "TFJobs per hour (Training Operator)",
      description: "Jobs created, succeeded and failed, as the Training Operator counts them.",
      unit: "short",
      queries: [
        { expr: "sum(increase(training_operator_jobs_created_total[1h]))", legend: "created" },
        { expr: "sum(increase(training_operator_jobs_successful_total[1h]))", legend: "succeeded" },
        { expr: "sum(increase(training_operator_jobs_failed_total[1h]))", legend: "failed" },
      ],
    },
  ],
};
