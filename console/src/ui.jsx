import { cloneElement } from "preact";
import { useMemo } from "preact/hooks";

// Small building blocks: tables, tiles, charts, notices.

export function Notice({ kind = "info", children }) {
  if (!children) return null;
  return (
    <div class={`notice notice-${kind}`} role={kind === "error" ? "alert" : "status"}>
      {children}
    </div>
  );
}

export function Tile({ label, value, warn, testid }) {
  return (
    <div class={`tile${warn ? " tile-warn" : ""}`} data-testid={testid}>
      <div class="tile-value">{value}</div>
      <div class="tile-label">{label}</div>
    </div>
  );
}

// A table from column definitions: [{ key, label, render?, numeric? }].
export function Table({ columns, rows, empty = "Nothing here yet.", caption, rowKey, testid }) {
  return (
    <div class="table-wrap">
      <table data-testid={testid}>
        {caption && <caption>{caption}</caption>}
        <thead>
          <tr>
            {columns.map((c) => (
              <th scope="col" class={c.numeric ? "num" : ""}>
                {c.label}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {rows.length === 0 ? (
            <tr>
              <td colSpan={columns.length} class="empty">
                {empty}
              </td>
            </tr>
          ) : (
            rows.map((r, i) => (
              <tr key={rowKey ? rowKey(r) : i}>
                {columns.map((c) => (
                  <td class={c.numeric ? "num" : ""}>{c.render ? c.render(r) : r[c.key] ?? "–"}</td>
                ))}
              </tr>
            ))
          )}
        </tbody>
      </table>
    </div>
  );
}

const COLORS = ["#2563eb", "#16a34a", "#d97706", "#9333ea", "#dc2626"];

// A round number at or above v (1, 2 or 5 times a power of ten), for a chart's top.
function niceCeil(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 5, 10].map((m) => m * p).find((c) => c >= v);
}

// A line chart of series over time: series = [{ label, points: [{ t, v }] }].
export function Chart({ title, series, format = (v) => v.toFixed(1), height = 140, testid }) {
  const width = 480;
  const all = series.flatMap((s) => s.points);
  const t0 = all.length ? Math.min(...all.map((p) => p.t)) : 0;
  const t1 = all.length ? Math.max(...all.map((p) => p.t)) : 1;
  const vmax = niceCeil(Math.max(0, ...all.map((p) => p.v)) * 1.1);
  const x = (t) => ((t - t0) / Math.max(1, t1 - t0)) * width;
  const y = (v) => 4 + (1 - v / vmax) * (height - 8);
  const latest = series.map((s) => `${s.label} ${s.points.length ? format(s.points[s.points.length - 1].v) : "–"}`);
  return (
    <figure class="chart" data-testid={testid}>
      <figcaption>
        <span class="chart-title">{title}</span>
        <span class="chart-legend">
          {series.map((s, i) => (
            <span class="legend-item">
              <span class="swatch" style={{ background: COLORS[i % COLORS.length] }} aria-hidden="true" />
              {s.label}: <strong>{s.points.length ? format(s.points[s.points.length - 1].v) : "–"}</strong>
            </span>
          ))}
        </span>
      </figcaption>
      <div class="chart-scale" aria-hidden="true">{format(vmax)}</div>
      <svg viewBox={`0 0 ${width} ${height}`} role="img" aria-label={`${title}: ${latest.join(", ")}`} preserveAspectRatio="none">
        <line x1="0" x2={width} y1={y(0)} y2={y(0)} class="axis" vector-effect="non-scaling-stroke" />
        <line x1="0" x2={width} y1={y(vmax)} y2={y(vmax)} class="grid" vector-effect="non-scaling-stroke" />
        {series.map((s, i) =>
          s.points.length > 1 ? (
            <polyline
              fill="none"
              stroke={COLORS[i % COLORS.length]}
              stroke-width="2"
              vector-effect="non-scaling-stroke"
              points={s.points.map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(" ")}
            />
          ) : null,
        )}
      </svg>
      <div class="chart-span" aria-hidden="true">
        {all.length > 1 ? `last ${Math.round((t1 - t0) / 1000)} s` : "collecting…"}
      </div>
    </figure>
  );
}

export function Badge({ kind = "neutral", children }) {
  return <span class={`badge badge-${kind}`}>{children}</span>;
}

let fieldIds = 0;

// A labelled control: the label names the control by id (so a select's name is its label,
// not its label and options run together).
export function Field({ label, children, hint }) {
  const id = useMemo(() => `field-${++fieldIds}`, []);
  return (
    <div class="field">
      <label class="field-label" for={id}>
        {label}
      </label>
      {cloneElement(children, { id })}
      {hint && <span class="field-hint">{hint}</span>}
    </div>
  );
}
