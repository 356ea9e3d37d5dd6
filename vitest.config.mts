import { defineConfig } from "vitest/config";

// Three suites: the Pulumi program under mocks (fast), the trainer on real small data,
// and the integration tests against the real engine and a local API server.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "program",
          pool: "forks",
          include: ["tests/**/*.test.ts"],
          exclude: ["tests/integration/**", "tests/e2e/**", "tests/cluster/**"],
          testTimeout: 60_000,
        },
      },
      {
        test: {
          name: "trainer",
          root: "trainer",
          include: ["tests/**/*.test.ts"],
          testTimeout: 300_000,
          hookTimeout: 300_000,
          pool: "forks",
        },
      },
      {
        test: {
          name: "integration",
          include: ["tests/integration/**/*.test.ts", "tests/e2e/**/*.test.ts"],
          testTimeout: 900_000,
          hookTimeout: 900_000,
          fileParallelism: false,
        },
      },
      {
        // A real node (containerd, runc, kubelet, kube-proxy, CoreDNS) in a network namespace
        // of its own: scripts/localcluster/up.sh --node real.
        test: {
          name: "cluster",
          include: ["tests/cluster/**/*.test.ts"],
          testTimeout: 600_000,
          hookTimeout: 900_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
