/**
 * An Ingress with TLS in front of one platform UI. Every UI is ClusterIP by default; this is
 * the only way we expose one, and a UI without its own login (TensorBoard) may only be
 * exposed behind an external authentication check.
 */
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { PLATFORM_LABELS } from "./namespaces";

export interface UiIngressOptions {
  readonly host: string;
  readonly serviceName: pulumi.Input<string>;
  readonly servicePort: number;
  readonly className?: string;
  /** TLS secret; default `<host with dashes>-tls` (filled by cert-manager when `clusterIssuer` is set). */
  readonly tlsSecretName?: string;
  readonly clusterIssuer?: string;
  /** The backend speaks HTTPS (Argo server). */
  readonly backendHttps?: boolean;
  /** External auth check every request must pass first (required for UIs without a login). */
  readonly authUrl?: string;
  readonly authSignIn?: string;
  /** The UI has no login of its own. */
  readonly unauthenticatedUi?: boolean;
}

/** Ingress spec and annotations (ingress-nginx conventions). */
export function uiIngress(o: UiIngressOptions): { annotations: Record<string, string>; spec: k8s.types.input.networking.v1.IngressSpec } {
  if (o.unauthenticatedUi && !o.authUrl) {
    throw new Error(`refusing to expose ${o.host}: the UI has no login of its own, so an authUrl is required`);
  }
  const annotations: Record<string, string> = { "nginx.ingress.kubernetes.io/force-ssl-redirect": "true" };
  if (o.clusterIssuer) annotations["cert-manager.io/cluster-issuer"] = o.clusterIssuer;
  if (o.backendHttps) annotations["nginx.ingress.kubernetes.io/backend-protocol"] = "HTTPS";
  if (o.authUrl) annotations["nginx.ingress.kubernetes.io/auth-url"] = o.authUrl;
  if (o.authSignIn) annotations["nginx.ingress.kubernetes.io/auth-signin"] = o.authSignIn;
  return {
    annotations,
    spec: {
      ingressClassName: o.className,
      tls: [{ hosts: [o.host], secretName: o.tlsSecretName ?? `${o.host.replace(/\./g, "-")}-tls` }],
      rules: [
        {
          host: o.host,
          http: {
            paths: [{ path: "/", pathType: "Prefix", backend: { service: { name: o.serviceName, port: { number: o.servicePort } } } }],
          },
        },
      ],
    },
  };
}

export function createUiIngress(name: string, namespace: pulumi.Input<string>, o: UiIngressOptions, opts: pulumi.CustomResourceOptions): k8s.networking.v1.Ingress {
  const { annotations, spec } = uiIngress(o);
  return new k8s.networking.v1.Ingress(name, { metadata: { namespace, labels: { ...PLATFORM_LABELS }, annotations }, spec }, opts);
}
