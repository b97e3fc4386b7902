// Axis ticks people can read: steps of 1, 2 or 5 times a power of ten, the axis running from
// the tick below the data to the tick above it (an accuracy that reaches 0.98 ends at 1, not 1.002).

export interface Axis {
  lo: number;
  hi: number;
  ticks: number[];
  label: (v: number) => string;
}

export function niceAxis(min: number, max: number, count = 4): Axis {
  if (!(max > min)) {
    const pad = Math.abs(min) * 0.1 || 1;
    return niceAxis(min - pad, max + pad, count);
  }
  const raw = (max - min) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? 10 * power;
  const lo = Math.floor(min / step) * step;
  const hi = Math.ceil(max / step) * step;
  const ticks: number[] = [];
  for (let v = lo; v <= hi + step / 2; v += step) ticks.push(Number(v.toFixed(12)));
  const digits = Math.max(0, -Math.floor(Math.log10(step)));
  return { lo, hi, ticks, label: (v) => v.toFixed(digits) };
}

/** Round numbers to label on an axis of `n` rounds: all of them up to 10, then every k-th. */
export function roundLabels(n: number): number[] {
  const every = Math.max(1, Math.ceil(n / 10));
  return Array.from({ length: n }, (_, i) => i + 1).filter((x) => x === 1 || x % every === 0);
}
