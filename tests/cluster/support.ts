/**
 * Support for the `cluster` suite: a real single node (scripts/localcluster/up.sh --node real)
 * in a network namespace of its own, reached from here through 127.0.0.1 forwards only.
 */
import { execFileSync, spawnSync } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as https from "node:https";
import * as path from "node:path";
import * as YAML from "yaml";
import { Kube, ROOT, TOOLS_BIN, missingTools } from "../integration/support";

export { Kube, ROOT, TOOLS_BIN };

const LOCALCLUSTER = path.join(ROOT, "scripts", "localcluster");

/** KEY=VALUE lines of a shell env file (scripts/localcluster/node.env, local.env). */
export function readEnvFile(file: string): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const line of fs.readFileSync(file, "utf8").split("\n")) {
    const m = /^(?:export\s+)?([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line.trim());
    if (m) vars[m[1]!] = m[2]!.replace(/^['"]|['"]$/g, "");
  }
  return vars;
}

/** The node's addresses and names (scripts/localcluster/node.env). */
export const NODE = readEnvFile(path.join(LOCALCLUSTER, "node.env"));

/** Tools built by scripts/tools/build.sh --with-node. */
const BUILT = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "coredns", "pause"];
/** Debian packages installed by scripts/setup-node.sh. */
const SYSTEM = ["containerd", "containerd-shim-runc-v2", "runc", "ctr", "socat", "nsenter", "iptables", "busybox", "python3"];

/** Why the real node cannot run here, or an empty list. */
export function missingForNode(): string[] {
  const missing = missingTools(BUILT).map((t) => `${t} (scripts/tools/build.sh --with-node)`);
  for (const t of SYSTEM) {
    if (spawnSync("sh", ["-c", `command -v ${t}`]).status !== 0) missing.push(`${t} (scripts/setup-node.sh)`);
  }
  if (!fs.existsSync(path.join(NODE.CNI_BIN_DIR!, "bridge"))) missing.push(`CNI plugins in ${NODE.CNI_BIN_DIR} (scripts/setup-node.sh)`);
  if (!fs.existsSync(path.join(ROOT, "scripts", "images", "oci-archive.py"))) missing.push("scripts/images/oci-archive.py");
  if (process.getuid?.() !== 0) missing.push("root");
  return missing;
}

/** Starts the real node with its state in `stateDir`; returns local.env's variables. */
export function startNode(stateDir: string, extraArgs: string[] = []): Record<string, string> {
  const out = execFileSync(path.join(LOCALCLUSTER, "up.sh"), ["--node", "real", "--only", "apiserver", ...extraArgs], {
    encoding: "utf8",
    // Only the node's own images: these tests need no other, and importing them all takes minutes.
    env: { ...process.env, MLPLATFORM_LOCAL_DIR: stateDir, MLPLATFORM_NODE_IMPORT: "pause.oci.tar node-test.oci.tar" },
    stdio: ["ignore", "pipe", "inherit"],
    timeout: 600_000,
  });
  return readEnvFile(out.trim().split("\n").pop()!);
}

/** Tears the node down (down.sh --purge); returns its exit status. */
export function stopNode(stateDir: string): number {
  const r = spawnSync(path.join(LOCALCLUSTER, "down.sh"), ["--purge"], {
    env: { ...process.env, MLPLATFORM_LOCAL_DIR: stateDir },
    stdio: "inherit",
    timeout: 300_000,
  });
  return r.status ?? -1;
}

/** Polls `fn` until it returns a value other than undefined; throws with `what` after `ms`. */
export async function until<T>(what: string, ms: number, fn: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out after ${ms / 1000} s waiting for ${what}${last ? `: ${last instanceof Error ? last.message : JSON.stringify(last)}` : ""}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** A pod spec running the node's test image (busybox) with `script` under sh. */
export function testPod(name: string, script: string, labels: Record<string, string> = {}, restartPolicy = "Never"): any {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, labels },
    spec: {
      restartPolicy,
      terminationGracePeriodSeconds: 1,
      containers: [{ name: "main", image: NODE.NODE_TEST_IMAGE, imagePullPolicy: "Never", command: ["sh", "-c", script] }],
    },
  };
}

/** Creates an object (POST), failing on anything but 201. */
export async function create(kube: Kube, listPath: string, body: unknown): Promise<any> {
  const r = await kube.request("POST", listPath, body);
  if (r.status !== 201) throw new Error(`POST ${listPath}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

/** Waits for a pod to reach `phase` (Running or Succeeded); fails early on Failed. */
export async function waitPhase(kube: Kube, ns: string, name: string, phase: "Running" | "Succeeded", ms = 120_000): Promise<any> {
  return until(`pod ${ns}/${name} ${phase}`, ms, async () => {
    const pod = await kube.get(`/api/v1/namespaces/${ns}/pods/${name}`);
    const p = pod?.status?.phase;
    if (p === "Failed" || (phase === "Running" && p === "Succeeded")) {
      const log = await kube.request("GET", `/api/v1/namespaces/${ns}/pods/${name}/log`);
      throw new Error(`pod ${ns}/${name} is ${p}: ${JSON.stringify(pod.status)}\nlog: ${String(log.body)}`);
    }
    if (p !== phase) throw new Error(`phase ${p}: ${JSON.stringify(pod?.status?.containerStatuses?.[0]?.state ?? pod?.status?.conditions)}`);
    return pod;
  });
}

/** A pod's log as text. */
export async function podLog(kube: Kube, ns: string, name: string): Promise<string> {
  const r = await kube.request("GET", `/api/v1/namespaces/${ns}/pods/${name}/log`);
  if (r.status !== 200) throw new Error(`log of ${ns}/${name}: ${r.status} ${JSON.stringify(r.body)}`);
  return typeof r.body === "string" ? r.body : JSON.stringify(r.body);
}

/** Pids of processes whose network namespace is the one at `nsPath` (by inode). */
export function pidsInNetns(nsPath: string): number[] {
  let ino: number;
  try {
    ino = fs.statSync(nsPath).ino;
  } catch {
    return [];
  }
  const pids: number[] = [];
  for (const p of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(p)) continue;
    try {
      if (fs.statSync(`/proc/${p}/ns/net`).ino === ino) pids.push(Number(p));
    } catch {
      /* gone */
    }
  }
  return pids;
}

/** Mount points at or under `dir`. */
export function mountsUnder(dir: string): string[] {
  return fs
    .readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((l) => l.split(" ")[4]?.replace(/\\040/g, " "))
    .filter((m): m is string => !!m && (m === dir || m.startsWith(`${dir}/`)));
}

/**
 * Runs `command` in a pod's container through the API server's exec endpoint (the API server
 * proxies to the kubelet on the node IP, which streams from containerd): a minimal WebSocket
 * client for the `v4.channel.k8s.io` protocol. Resolves to stdout, stderr and the status.
 */
export function podExec(kubeconfigPath: string, ns: string, pod: string, command: string[]): Promise<{ stdout: string; stderr: string; status: string }> {
  const kc = YAML.parse(fs.readFileSync(kubeconfigPath, "utf8"));
  const ctx = kc.contexts.find((c: any) => c.name === kc["current-context"]).context;
  const cluster = kc.clusters.find((c: any) => c.name === ctx.cluster).cluster;
  const user = kc.users.find((u: any) => u.name === ctx.user).user;
  const q = command.map((c) => `command=${encodeURIComponent(c)}`).join("&");
  const url = new URL(`/api/v1/namespaces/${ns}/pods/${pod}/exec?${q}&stdout=true&stderr=true`, cluster.server);
  return new Promise((resolve, reject) => {
    const req = https.request(url, {
      ca: Buffer.from(cluster["certificate-authority-data"], "base64"),
      headers: {
        Authorization: `Bearer ${user.token}`,
        Connection: "Upgrade",
        Upgrade: "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": crypto.randomBytes(16).toString("base64"),
        "Sec-WebSocket-Protocol": "v4.channel.k8s.io",
      },
      timeout: 30_000,
    });
    req.on("response", (res) => {
      let body = "";
      res.on("data", (c) => (body += c));
      res.on("end", () => reject(new Error(`exec: HTTP ${res.statusCode} ${body}`)));
    });
    req.on("timeout", () => req.destroy(new Error("exec: timeout")));
    req.on("error", reject);
    req.on("upgrade", (_res, socket, head) => {
      const out: Record<number, string> = { 1: "", 2: "", 3: "" };
      let buf: Buffer = head;
      const parse = () => {
        // Server frames are unmasked; each binary message starts with its channel byte.
        for (;;) {
          if (buf.length < 2) return;
          let len = buf[1]! & 0x7f;
          let off = 2;
          if (len === 126) {
            if (buf.length < 4) return;
            len = buf.readUInt16BE(2);
            off = 4;
          } else if (len === 127) {
            if (buf.length < 10) return;
            len = Number(buf.readBigUInt64BE(2));
            off = 10;
          }
          if (buf.length < off + len) return;
          const opcode = buf[0]! & 0x0f;
          const payload = buf.subarray(off, off + len);
          buf = buf.subarray(off + len);
          if ((opcode === 1 || opcode === 2) && payload.length > 0) out[payload[0]!] = (out[payload[0]!] ?? "") + payload.subarray(1).toString("utf8");
          if (opcode === 8) socket.end();
        }
      };
      socket.on("data", (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        parse();
      });
      socket.on("close", () => resolve({ stdout: out[1]!, stderr: out[2]!, status: out[3]! }));
      socket.on("error", reject);
      parse();
    });
    req.end();
  });
}
