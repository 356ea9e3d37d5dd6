/**
 * The real local node (scripts/localcluster/up.sh --node real): containerd + runc + the CNI
 * bridge, kubelet, kube-proxy and CoreDNS beside the control plane, all inside a network
 * namespace the script creates. The test talks to the API server and a Service through the
 * 127.0.0.1 forwards only; everything else happens inside that namespace.
 *
 * Under CI=true a missing tool fails the suite; on a developer's machine without the tools it
 * is skipped and says why.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Kube, NODE, create, missingForNode, mountsUnder, pidsInNetns, podExec, podLog, startNode, stopNode, testPod, until, waitPhase } from "./support";

const missing = missingForNode();
const CI = process.env.CI === "true";
if (missing.length > 0 && !CI) {
  console.log(`SKIPPED real-node tests: missing ${missing.join(", ")}`);
}

// Runs whenever it can say something: outside CI a missing tool only skips the suite below.
describe("real node prerequisites", () => {
  it.skipIf(missing.length > 0 && !CI)("has every tool the real node needs", () => {
    expect(missing, "tools missing under CI=true (a build or install step failed)").toEqual([]);
  });
});

/** HTTP GET on 127.0.0.1:port; resolves to the body. */
function httpGet(port: number, urlPath = "/"): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: "127.0.0.1", port, path: urlPath, timeout: 5_000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c) => (body += c));
      res.on("end", () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`HTTP ${res.statusCode}: ${body}`))));
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
  });
}

describe.skipIf(missing.length > 0)("a real node in its own network namespace", () => {
  let work: string;
  let stateDir: string;
  let kube: Kube;
  let kubeconfig: string;
  let netns: string;
  let netnsPath: string;
  let socket: string;
  let cniNetnsBefore: Set<string>;
  const ns = `node-test-${process.pid}`;
  let webIp = "";
  let webPods: string[] = [];
  let tornDown = false;

  const pods = (p = "") => `/api/v1/namespaces/${ns}/pods${p}`;
  const cniResults = () => (fs.existsSync("/var/lib/cni/results") ? fs.readdirSync("/var/lib/cni/results") : []);
  let cniResultsBefore: Set<string>;
  let hostForwardingBefore: string;
  const cniNetns = () => new Set(fs.existsSync("/run/netns") ? fs.readdirSync("/run/netns").filter((n) => n.startsWith("cni-")) : []);

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), "mlp-node-"));
    stateDir = path.join(work, "cluster");
    cniNetnsBefore = cniNetns();
    cniResultsBefore = new Set(cniResults());
    hostForwardingBefore = fs.readFileSync("/proc/sys/net/ipv4/ip_forward", "utf8");
    const t0 = Date.now();
    const env = startNode(stateDir);
    console.log(`real node up in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    kubeconfig = env.KUBECONFIG!;
    kube = new Kube(kubeconfig);
    netns = env.MLPLATFORM_NETNS!;
    netnsPath = `/run/netns/${netns}`;
    socket = env.CONTAINERD_ADDRESS!;
    await create(kube, "/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: ns } });
    // Pods need the namespace's default ServiceAccount (made by the controller-manager).
    await until("default ServiceAccount", 60_000, async () => (await kube.get(`/api/v1/namespaces/${ns}/serviceaccounts/default`)) ?? undefined);
  });

  afterAll(() => {
    if (!tornDown && stateDir) stopNode(stateDir);
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it("node is Ready with a non-loopback InternalIP", async () => {
    const node = await kube.get(`/api/v1/nodes/${NODE.NODE_NAME}`);
    expect(node, "node object").toBeDefined();
    const ready = node.status.conditions.find((c: any) => c.type === "Ready");
    expect(ready?.status).toBe("True");
    const ip = node.status.addresses.find((a: any) => a.type === "InternalIP")?.address;
    expect(ip).toBe(NODE.NODE_IP);
    expect(node.status.nodeInfo.containerRuntimeVersion).toMatch(/^containerd:\/\//);
    expect(node.status.nodeInfo.kubeletVersion).toMatch(/^v1\.\d+\.\d+$/);
    // The namespace really is the cluster's: the API server listens inside it.
    expect(pidsInNetns(netnsPath).length).toBeGreaterThan(5);
  });

  it("the namespace has no route out (only the pods' bridge, the node IP and the Service range)", () => {
    const inNs = (...args: string[]) => spawnSync("nsenter", [`--net=${netnsPath}`, "--", ...args], { encoding: "utf8" });
    const routes = inNs("ip", "-4", "route", "show").stdout.trim().split("\n");
    expect(
      routes.filter((r) => r.startsWith("default")),
      "default route",
    ).toEqual([]);
    // The pods' route appears with the bridge, at the first pod.
    const dests = routes.map((r) => r.split(" ")[0]!);
    expect(dests).toContain("10.0.0.0/24");
    expect(
      dests.filter((d) => d !== NODE.POD_CIDR && d !== "10.0.0.0/24"),
      "other routes",
    ).toEqual([]);
    // Asking the kernel how it would route a public address sends nothing: it has no way.
    const probe = inNs("ip", "route", "get", "192.0.2.1");
    expect(probe.status).not.toBe(0);
    expect(probe.stderr).toMatch(/unreachable/i);
    // Nor is the host's namespace linked to it: no interface of ours on the host.
    const hostLinks = spawnSync("ip", ["-o", "link", "show"], { encoding: "utf8" }).stdout;
    expect(hostLinks).not.toMatch(new RegExp(`${NODE.POD_BRIDGE}|mlpnode`));
    // Forwarding is on in the node's namespace only; the host's setting is untouched.
    expect(inNs("cat", "/proc/sys/net/ipv4/ip_forward").stdout.trim()).toBe("1");
    expect(fs.readFileSync("/proc/sys/net/ipv4/ip_forward", "utf8")).toBe(hostForwardingBefore);
  });

  it("a pod runs and its logs are readable", async () => {
    const word = `hello-${Math.random().toString(36).slice(2, 10)}`;
    await create(kube, pods(), testPod("hello", `echo ${word} from $(hostname); cat /var/run/secrets/kubernetes.io/serviceaccount/namespace; echo`));
    const pod = await waitPhase(kube, ns, "hello", "Succeeded");
    // Pod IPs come from the CNI bridge's range.
    expect(pod.status.podIP).toMatch(new RegExp(`^${NODE.POD_CIDR!.split(".").slice(0, 3).join("\\.")}\\.`));
    const log = await podLog(kube, ns, "hello");
    expect(log).toContain(`${word} from hello`);
    // The ServiceAccount token volume was mounted (kubelet and containerd share mounts).
    expect(log).toContain(ns);
  });

  it("a non-root container runs (image layers unpacked world-readable: containerd starts with umask 022)", async () => {
    // up.sh once leaked `umask 077` into containerd: every unpacked layer's root became 0700
    // and any image run as a non-root user failed with "permission denied" (every product pod).
    const pod = testPod("nonroot", "id -u; ls /bin >/dev/null && echo listed");
    pod.spec.securityContext = { runAsUser: 1000, runAsGroup: 1000, runAsNonRoot: true };
    await create(kube, pods(), pod);
    await waitPhase(kube, ns, "nonroot", "Succeeded");
    const log = await podLog(kube, ns, "nonroot");
    expect(log).toContain("1000");
    expect(log).toContain("listed");
  });

  it("exec in a running pod works (API server → kubelet on the node IP → containerd)", async () => {
    await create(kube, pods(), testPod("sleeper", "exec sleep 3600", {}, "Always"));
    await waitPhase(kube, ns, "sleeper", "Running");
    const r = await podExec(kubeconfig, ns, "sleeper", ["sh", "-c", "echo out-$((6 * 7)); echo err >&2; hostname"]);
    expect(r.stdout).toBe("out-42\nsleeper\n");
    expect(r.stderr).toBe("err\n");
    expect(r.status).toContain("Success");
    const failed = await podExec(kubeconfig, ns, "sleeper", ["sh", "-c", "exit 3"]);
    expect(failed.status).toContain("NonZeroExitCode");
  });

  it("a Service routes to pods via kube-proxy", async () => {
    const serve = "mkdir -p /tmp/www && hostname > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www";
    webPods = ["web-0", "web-1"];
    for (const name of webPods) await create(kube, pods(), testPod(name, serve, { app: "web" }, "Always"));
    const svc = await create(kube, `/api/v1/namespaces/${ns}/services`, {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: "web" },
      spec: { selector: { app: "web" }, ports: [{ port: 80, targetPort: 8080 }] },
    });
    webIp = svc.spec.clusterIP;
    for (const name of webPods) await waitPhase(kube, ns, name, "Running");
    // Both pods in the Service's EndpointSlice (kube-proxy programs them within a second).
    await until("two ready endpoints", 60_000, async () => {
      const slices = await kube.get(`/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dweb`);
      const ready = (slices?.items ?? []).flatMap((sl: any) => sl.endpoints ?? []).filter((e: any) => e.conditions?.ready);
      return ready.length === 2 ? ready : undefined;
    });
    // From a pod: the ClusterIP reaches both backends. The first request may wait for
    // kube-proxy's sync; then 30 requests are counted.
    // (Debian busybox-static's `wget -T` crashes: `timeout` bounds each request instead.)
    const fetchOnce = `timeout 5 wget -q -O - http://${webIp}/`;
    await create(
      kube,
      pods(),
      testPod("client", `for i in $(seq 40); do ${fetchOnce} >/dev/null 2>&1 && break; sleep 0.5; done; sleep 1; for i in $(seq 30); do ${fetchOnce} || echo FAIL; done`),
    );
    await waitPhase(kube, ns, "client", "Succeeded");
    const seen = (await podLog(kube, ns, "client")).split("\n").filter(Boolean);
    expect(seen.length).toBe(30);
    expect(new Set(seen)).toEqual(new Set(webPods));
    // From the host: a forward on 127.0.0.1 into the namespace, to the ClusterIP.
    const env = startNode(stateDir, ["--forward", `web=${webIp}:80`]);
    const port = Number(env.MLPLATFORM_FORWARD_WEB!.split(":")[1]);
    const body = (await until("web through the forward", 30_000, () => httpGet(port))).trim();
    expect(webPods).toContain(body);
  });

  it("DNS resolves a Service name from a pod (CoreDNS)", async () => {
    expect(webIp, "needs the Service of the previous test").not.toBe("");
    const fqdn = `web.${ns}.svc.${NODE.CLUSTER_DOMAIN}`;
    // Resolve through the pod's resolv.conf (CoreDNS via the kube-dns Service), fetch by the
    // Service's short name; and a name that does not exist is an error, not a hang.
    const script = [
      `nslookup ${fqdn}`,
      "echo ---",
      "cat /etc/resolv.conf",
      "echo ---",
      // The short name, through the search path in resolv.conf and the C library's resolver.
      "timeout 5 wget -q -O - http://web/ || echo FAIL",
      "echo ---",
      `nslookup no-such-service.${ns}.svc.${NODE.CLUSTER_DOMAIN} || echo NXDOMAIN-OK`,
    ].join("; ");
    await create(kube, pods(), testPod("dns", script));
    await waitPhase(kube, ns, "dns", "Succeeded");
    const [lookup, resolv, fetched, missingLookup] = (await podLog(kube, ns, "dns")).split("---\n");
    expect(resolv).toContain(`nameserver ${NODE.DNS_SERVICE_IP}`);
    expect(resolv).toContain(`search ${ns}.svc.${NODE.CLUSTER_DOMAIN}`);
    expect(lookup).toContain(fqdn);
    expect(lookup).toContain(`Address: ${webIp}`);
    expect(webPods).toContain(fetched!.trim());
    expect(missingLookup).toContain("NXDOMAIN-OK");
  });

  it("an image that is not on the node fails fast (no pull leaves the namespace)", async () => {
    const pod = testPod("absent", "true");
    pod.spec.containers[0].image = "mlplatform.local/not-imported:1";
    pod.spec.containers[0].imagePullPolicy = "Always";
    await create(kube, pods(), pod);
    const started = Date.now();
    const reason = await until("image pull failure", 60_000, async () => {
      const p = await kube.get(pods("/absent"));
      const r = p?.status?.containerStatuses?.[0]?.state?.waiting?.reason;
      return r === "ErrImagePull" || r === "ImagePullBackOff" ? r : undefined;
    });
    expect(reason).toMatch(/ErrImagePull|ImagePullBackOff/);
    expect(Date.now() - started).toBeLessThan(60_000);
  });

  it("teardown leaves nothing (processes, network namespaces, mounts, iptables rules)", () => {
    const pidFiles = fs.readdirSync(stateDir).filter((f) => f.endsWith(".pid"));
    const pids = pidFiles.map((f) => Number(fs.readFileSync(path.join(stateDir, f), "utf8").trim()));
    // etcd, apiserver and its forward, controller-manager, scheduler, containerd, kubelet,
    // kube-proxy, CoreDNS (and the Service forward when that test ran).
    expect(pids.length).toBeGreaterThanOrEqual(9);
    expect(mountsUnder(stateDir).length, "kubelet and containerd mounts while running").toBeGreaterThan(0);
    const hostIptablesBefore = spawnSync("iptables-save", { encoding: "utf8" }).stdout ?? "";

    tornDown = true;
    expect(stopNode(stateDir)).toBe(0);

    // Alive and not a zombie (an exited daemon waits for init to reap it).
    const alive = pids.filter((p) => {
      try {
        return fs.readFileSync(`/proc/${p}/stat`, "utf8").split(") ")[1]?.[0] !== "Z";
      } catch {
        return false;
      }
    });
    expect(alive, "processes from the pid files still alive").toEqual([]);
    expect(fs.existsSync(netnsPath), `${netnsPath} still exists`).toBe(false);
    const leftoverCni = [...cniNetns()].filter((n) => !cniNetnsBefore.has(n));
    expect(leftoverCni, "pod network namespaces left").toEqual([]);
    expect(mountsUnder(stateDir), "mounts left under the state dir").toEqual([]);
    const shims = spawnSync("pgrep", ["-f", `-address ${socket}`], { encoding: "utf8" }).stdout.trim();
    expect(shims, "containerd shims left").toBe("");
    expect(fs.existsSync(stateDir), "state dir (purged)").toBe(false);
    // The host's own rules were never touched (kube-proxy's live in the namespace).
    const hostIptablesAfter = spawnSync("iptables-save", { encoding: "utf8" }).stdout ?? "";
    expect(hostIptablesAfter).not.toMatch(/KUBE-/);
    expect(hostIptablesAfter.replace(/^#.*\n/gm, "")).toBe(hostIptablesBefore.replace(/^#.*\n/gm, ""));
    const cached = cniResults().filter((f) => !cniResultsBefore.has(f));
    expect(cached, "CNI cache entries left in /var/lib/cni/results").toEqual([]);
  });
});
