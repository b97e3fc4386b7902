// A small SVG line chart: series of (x, y) points with labelled axes and a legend. Plain SVG keeps the
// static build small and works without JavaScript-heavy chart libraries.

import { niceAxis, roundLabels } from "@/lib/ticks";

export interface Series {
  name: string;
  color: string;
  points: { x: number; y: number }[];
}

export function LineChart({ title, series, yLabel }: { title: string; series: Series[]; yLabel: string }) {
  const w = 420;
  const h = 200;
  const pad = { l: 52, r: 12, t: 12, b: 34 };
  const all = series.flatMap((s) => s.points);
  if (all.length === 0) {
    return <p className="empty">{title}: no finished round yet.</p>;
  }
  const xmax = Math.max(...all.map((p) => p.x), 1);
  const axis = niceAxis(Math.min(...all.map((p) => p.y)), Math.max(...all.map((p) => p.y)));
  const { lo, hi } = axis;
  const sx = (x: number) => pad.l + ((x - 1) / Math.max(xmax - 1, 1)) * (w - pad.l - pad.r);
  const sy = (y: number) => pad.t + (1 - (y - lo) / (hi - lo)) * (h - pad.t - pad.b);
  return (
    <figure className="chart">
      <figcaption>{title}</figcaption>
      <svg viewBox={`0 0 ${w} ${h}`} role="img" aria-label={`${title} (${yLabel}) by round`}>
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
        {roundLabels(xmax).map((x) => (
          <text key={x} x={sx(x)} y={h - pad.b + 16} textAnchor="middle" className="tick">
            {x}
          </text>
        ))}
        <text x={w / 2} y={h - 2} textAnchor="middle" className="tick">
          round
        </text>
        {series.map((s) => (
          <g key={s.name} data-series={s.name}>
            <polyline
              fill="none"
              stroke={s.color}
              strokeWidth={2}
              points={s.points.map((p) => `${sx(p.x)},${sy(p.y)}`).join(" ")}
            />
            {s.points.map((p) => (
              <circle key={p.x} cx={sx(p.x)} cy={sy(p.y)} r={3.5} fill={s.color} className="point">
                <title>{`${s.name}, round ${p.x}: ${p.y.toFixed(4)}`}</title>
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
