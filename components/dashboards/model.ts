/**
 * Dashboards as code: a small model of what a panel shows (PromQL queries, a unit), and its
 * rendering as Grafana dashboard JSON (schemaVersion 39, the format Grafana 10–12 load from
 * provisioned files and from kube-prometheus-stack's dashboard sidecar).
 *
 * The queries are the contract: `tests/observability.test.ts` parses every one with
 * Prometheus's own PromQL grammar and checks each metric it names against the real
 * `/metrics` output of `mlp serve` and of a training run, or against the named exporters.
 */

/** Grafana unit ids we use. */
export type Unit = "short" | "ops" | "s" | "percent" | "percentunit" | "decmbytes" | "watt" | "celsius" | "reqps";

export interface Query {
  /** PromQL. May use the dashboard variable `$model` / `$namespace` only where the dashboard declares it. */
  readonly expr: string;
  /** Series legend, Grafana's `{{label}}` templating. */
  readonly legend: string;
}

export interface Panel {
  readonly title: string;
  readonly description: string;
  readonly unit: Unit;
  readonly queries: readonly Query[];
  /** `timeseries` (default) or `stat` (one current value). */
  readonly kind?: "timeseries" | "stat";
}

/** A dashboard variable filled from a label's values (`label_values(metric, label)`). */
export interface Variable {
  readonly name: string;
  readonly label: string;
  /** Metric whose label values fill the variable. */
  readonly metric: string;
  readonly labelName: string;
}

export interface Dashboard {
  /** Stable id: Grafana keeps one dashboard per uid, so provisioning replaces it in place. */
  readonly uid: string;
  readonly title: string;
  readonly description: string;
  readonly tags: readonly string[];
  readonly variables: readonly Variable[];
  /** Rows of panels, laid out two per row. */
  readonly panels: readonly Panel[];
}

const PANEL_WIDTH = 12;
const PANEL_HEIGHT = 8;

/** Every PromQL expression of a dashboard (panels and variables), for checks. */
export function dashboardQueries(d: Dashboard): string[] {
  return [...d.panels.flatMap((p) => p.queries.map((q) => q.expr)), ...d.variables.map((v) => v.metric)];
}

/** A variable's `$name` stands for a regex of label values (multi-select, "All" = `.*`). */
export function substituteVariables(expr: string, d: Dashboard): string {
  let out = expr;
  for (const v of d.variables) out = out.split(`$${v.name}`).join(".*");
  return out;
}

/** Grafana dashboard JSON for `d`, with a `datasource` variable so any Prometheus source works. */
export function grafanaDashboard(d: Dashboard): Record<string, unknown> {
  if (!/^[A-Za-z0-9_-]{1,40}$/.test(d.uid)) throw new Error(`dashboard uid must be 1-40 letters, digits, '_' or '-'; got ${JSON.stringify(d.uid)}`);
  const ds = { type: "prometheus", uid: "${datasource}" };
  const panels = d.panels.map((p, i) => ({
    id: i + 1,
    type: p.kind ?? "timeseries",
    title: p.title,
    description: p.description,
    datasource: ds,
    gridPos: { h: PANEL_HEIGHT, w: PANEL_WIDTH, x: (i % 2) * PANEL_WIDTH, y: Math.floor(i / 2) * PANEL_HEIGHT },
    fieldConfig: { defaults: { unit: p.unit }, overrides: [] },
    options: p.kind === "stat" ? { reduceOptions: { calcs: ["lastNotNull"] } } : { legend: { displayMode: "table", placement: "bottom", calcs: ["mean", "max"] } },
    targets: p.queries.map((q, k) => ({ refId: String.fromCharCode(65 + k), expr: q.expr, legendFormat: q.legend, datasource: ds })),
  }));
  const variables = [
    { name: "datasource", label: "Data source", type: "datasource", query: "prometheus", current: {}, hide: 0 },
    ...d.variables.map((v) => ({
      name: v.name,
      label: v.label,
      type: "query",
      datasource: ds,
      query: { query: `label_values(${v.metric}, ${v.labelName})`, refId: "vars" },
      definition: `label_values(${v.metric}, ${v.labelName})`,
      includeAll: true,
      allValue: ".*",
      multi: true,
      refresh: 2,
      current: {},
      hide: 0,
    })),
  ];
  return {
    uid: d.uid,
    title: d.title,
    description: d.description,
    tags: [...d.tags],
    timezone: "utc",
    editable: false,
    schemaVersion: 39,
    refresh: "30s",
    time: { from: "now-3h", to: "now" },
    templating: { list: variables },
    panels,
  };
}

/** Cloud Monitoring's grid is 48 columns wide; two tiles per row, as in Grafana. */
const CM_COLUMNS = 48;
const CM_TILE_HEIGHT = 16;

/**
 * The same dashboard for Google Cloud Monitoring (`projects.dashboards`, mosaic layout),
 * where GKE's Managed Service for Prometheus stores the series: each panel a tile whose
 * queries are PromQL (`timeSeriesQuery.prometheusQuery`). Cloud Monitoring dashboards have
 * no label-value variables here, so a variable stands for every value (`.*`).
 */
export function cloudMonitoringDashboard(d: Dashboard): Record<string, unknown> {
  const tiles = d.panels.map((p, i) => {
    const queries = p.queries.map((q) => ({ prometheusQuery: substituteVariables(q.expr, d) }));
    const widget =
      p.kind === "stat"
        ? { title: p.title, scorecard: { timeSeriesQuery: queries[0] } }
        : { title: p.title, xyChart: { dataSets: queries.map((timeSeriesQuery) => ({ timeSeriesQuery, plotType: "LINE" })), yAxis: { scale: "LINEAR" } } };
    return { xPos: (i % 2) * (CM_COLUMNS / 2), yPos: Math.floor(i / 2) * CM_TILE_HEIGHT, width: CM_COLUMNS / 2, height: CM_TILE_HEIGHT, widget };
  });
  return { displayName: d.title, mosaicLayout: { columns: CM_COLUMNS, tiles } };
}
