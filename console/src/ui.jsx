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

// A line chart of series over time: series = [{ label, points: [{ t, v }] }].
export function Chart({ title, series, format = (v) => v.toFixed(1), height = 140, testid }) {
  const width = 480;
  const pad = { l: 8, r: 8, t: 8, b: 18 };
  const all = series.flatMap((s) => s.points);
  const t0 = all.length ? Math.min(...all.map((p) => p.t)) : 0;
  const t1 = all.length ? Math.max(...all.map((p) => p.t)) : 1;
  const vmax = Math.max(1e-9, ...all.map((p) => p.v));
  const x = (t) => pad.l + ((t - t0) / Math.max(1, t1 - t0)) * (width - pad.l - pad.r);
  const y = (v) => pad.t + (1 - v / vmax) * (height - pad.t - pad.b);
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
      <svg viewBox={`0 0 ${width} ${height}`} role="img" aria-label={`${title}: ${latest.join(", ")}`} preserveAspectRatio="none">
        <line x1={pad.l} x2={width - pad.r} y1={y(0)} y2={y(0)} class="axis" />
        <line x1={pad.l} x2={width - pad.r} y1={y(vmax)} y2={y(vmax)} class="grid" />
        <text x={width - pad.r} y={pad.t + 10} class="axis-label" text-anchor="end">
          {format(vmax)}
        </text>
        <text x={pad.l} y={height - 4} class="axis-label">
          {all.length > 1 ? `last ${Math.round((t1 - t0) / 1000)} s` : "collecting…"}
        </text>
        {series.map((s, i) =>
          s.points.length > 1 ? (
            <polyline
              fill="none"
              stroke={COLORS[i % COLORS.length]}
              stroke-width="2"
              points={s.points.map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(" ")}
            />
          ) : null,
        )}
      </svg>
    </figure>
  );
}

export function Badge({ kind = "neutral", children }) {
  return <span class={`badge badge-${kind}`}>{children}</span>;
}

export function Field({ label, children, hint }) {
  return (
    <label class="field">
      <span class="field-label">{label}</span>
      {children}
      {hint && <span class="field-hint">{hint}</span>}
    </label>
  );
}
