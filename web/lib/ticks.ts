// Axis ticks people can read: steps of 1, 2 or 5 times a power of ten, the axis running from
// the tick below the data to the tick above it (an accuracy that reaches 0.98 ends at 1, not 1.002).

export interface Axis {
  lo: number;
  hi: number;
  ticks: number[];
  label: (v: number) => string;
}

/** What a quantity allows: whole numbers only (a count of nodes: no 0.5 ticks), or a range it
 * never leaves (an accuracy: the axis never runs past 1). */
export interface AxisRule {
  integer?: boolean;
  bounds?: [number, number];
}

export function niceAxis(min: number, max: number, count = 4, rule: AxisRule = {}): Axis {
  const [floor, ceiling] = rule.bounds ?? [-Infinity, Infinity];
  if (!(max > min)) {
    const pad = Math.abs(min) * 0.1 || 1;
    // a flat series sits inside its range: 1.0 accuracy gives 0.9..1, never 0.9..1.1
    const lo = Math.max(floor, min - pad);
    const hi = Math.min(ceiling, max + pad);
    return niceAxis(lo, hi > lo ? hi : lo + pad, count, rule);
  }
  const raw = (max - min) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  let step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? 10 * power;
  if (rule.integer) step = Math.max(1, Math.round(step));
  const lo = Math.max(floor, Math.floor(min / step) * step);
  const hi = Math.min(ceiling, Math.ceil(max / step) * step);
  const ticks: number[] = [];
  for (let v = lo; v <= hi + step / 1e6; v += step) ticks.push(Number(v.toFixed(12)));
  const digits = Math.max(0, -Math.floor(Math.log10(step)));
  return { lo, hi, ticks, label: (v) => v.toFixed(digits) };
}

/** Round numbers to label on an axis of `n` rounds: all of them up to 10, then every k-th. */
export function roundLabels(n: number): number[] {
  const every = Math.max(1, Math.ceil(n / 10));
  return Array.from({ length: n }, (_, i) => i + 1).filter((x) => x === 1 || x % every === 0);
}
