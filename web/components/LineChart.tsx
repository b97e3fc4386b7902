// A small SVG line chart: series of (x, y) points with labelled axes and a legend. Plain SVG keeps the
// static build small and works without JavaScript-heavy chart libraries.

import { type AxisRule, niceAxis, roundLabels } from "@/lib/ticks";

export interface Series {
  name: string;
  color: string;
  points: { x: number; y: number }[];
}

/** The x axis: its name, range, labelled ticks and how a value reads. */
export interface XAxis {
  name: string;
  min: number;
  max: number;
  ticks: number[];
  label: (x: number) => string;
}

/** Rounds 1..n (the default x axis; an async job's server steps, named so). */
export function roundsAxis(series: Series[], name = "round"): XAxis {
  const max = Math.max(...series.flatMap((s) => s.points.map((p) => p.x)), 1);
  return { name, min: 1, max, ticks: roundLabels(max), label: String };
}

export function LineChart({
  title,
  series,
  yLabel,
  x,
  y = {},
  empty = "no finished round yet",
}: {
  title: string;
  series: Series[];
  yLabel: string;
  x?: XAxis;
  /** What the y values allow (whole numbers; a range such as 0..1). */
  y?: AxisRule;
  empty?: string;
}) {
  const w = 420;
  const h = 200;
  const pad = { l: 52, r: 12, t: 12, b: 34 };
  const all = series.flatMap((s) => s.points);
  if (all.length === 0) {
    return (
      <p className="empty">
        {title}: {empty}.
      </p>
    );
  }
  const xa = x ?? roundsAxis(series);
  const axis = niceAxis(Math.min(...all.map((p) => p.y)), Math.max(...all.map((p) => p.y)), 4, y);
  const { lo, hi } = axis;
  const sx = (v: number) => pad.l + ((v - xa.min) / Math.max(xa.max - xa.min, 1e-9)) * (w - pad.l - pad.r);
  const sy = (y: number) => pad.t + (1 - (y - lo) / (hi - lo)) * (h - pad.t - pad.b);
  return (
    <figure className="chart">
      <figcaption>{title}</figcaption>
      <svg viewBox={`0 0 ${w} ${h}`} role="img" aria-label={`${title} (${yLabel}) by ${xa.name}`}>
        <line x1={pad.l} y1={h - pad.b} x2={w - pad.r} y2={h - pad.b} className="axis" />
        <line x1={pad.l} y1={pad.t} x2={pad.l} y2={h - pad.b} className="axis" />
        {axis.ticks.map((t) => (
          <g key={t}>
            <line x1={pad.l} y1={sy(t)} x2={w - pad.r} y2={sy(t)} className="grid" />
            <text x={pad.l - 6} y={sy(t) + 4} textAnchor="end" className="tick" data-tick>
              {axis.label(t)}
            </text>
          </g>
        ))}
        {xa.ticks.map((t) => (
          <text key={t} x={sx(t)} y={h - pad.b + 16} textAnchor="middle" className="tick">
            {xa.label(t)}
          </text>
        ))}
        <text x={w / 2} y={h - 2} textAnchor="middle" className="tick">
          {xa.name}
        </text>
        <text x={12} y={pad.t + (h - pad.t - pad.b) / 2} textAnchor="middle" className="tick" data-y-label
          transform={`rotate(-90 12 ${pad.t + (h - pad.t - pad.b) / 2})`}>
          {yLabel}
        </text>
        {series.map((s) => (
          <g key={s.name} data-series={s.name}>
            <polyline
              fill="none"
              stroke={s.color}
              strokeWidth={2}
              points={s.points.map((p) => `${sx(p.x)},${sy(p.y)}`).join(" ")}
            />
            {s.points.length <= 60 &&
              s.points.map((p) => (
                <circle key={p.x} cx={sx(p.x)} cy={sy(p.y)} r={3.5} fill={s.color} className="point">
                  <title>{`${s.name}, ${xa.name} ${xa.label(p.x)}: ${Number.isInteger(p.y) ? p.y : p.y.toFixed(4)}`}</title>
                </circle>
              ))}
          </g>
        ))}
      </svg>
      <ul className="legend" aria-label={`${title} series`}>
        {series.map((s) => (
          <li key={s.name} style={{ color: s.color }}>
            {s.name}
          </li>
        ))}
      </ul>
    </figure>
  );
}
