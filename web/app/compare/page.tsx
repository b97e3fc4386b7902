"use client";

import { useSearchParams } from "next/navigation";
import { Suspense, useEffect, useState } from "react";

import { LineChart, type Series } from "@/components/LineChart";
import { ErrorNote, Status } from "@/components/Shell";
import { ApiError, getJson } from "@/lib/api";
import { INIT_ROUND, type JobDetail } from "@/lib/types";

const COLORS = ["#0a58ca", "#c4221f", "#1a7f37", "#8250df", "#bf8700", "#0e7490"];

export default function ComparePage() {
  return (
    <Suspense fallback={<p className="muted">Loading...</p>}>
      <Compare />
    </Suspense>
  );
}

/** A job's curve of one metric: held-out where the job has it, else its training metric. */
function curve(d: JobDetail, key: string, color: string): Series {
  const rounds = d.rounds.filter((r) => r.index !== INIT_ROUND);
  const heldOut = rounds.some((r) => r.held_out && key in r.held_out);
  return {
    name: `${d.job.name} (${heldOut ? "held-out" : "training"})`,
    color,
    points: rounds.flatMap((r) => {
      const m = heldOut ? r.held_out : r.status === "done" ? r.metrics : null;
      return m && key in m ? [{ x: r.index + 1, y: m[key] }] : [];
    }),
  };
}

function Compare() {
  const ids = (useSearchParams().get("ids") ?? "").split(",").filter(Boolean);
  const [jobs, setJobs] = useState<JobDetail[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const key = ids.join(",");
  useEffect(() => {
    if (!key) return;
    Promise.all(key.split(",").map((id) => getJson<JobDetail>(`/jobs/${id}`)))
      .then(setJobs)
      .catch((e) => setError(e instanceof ApiError ? e.body.message : String(e)));
  }, [key]);
  if (ids.length === 0) return <ErrorNote error="No jobs chosen: tick some on the Jobs list." />;
  if (error) return <ErrorNote error={error} />;
  if (!jobs) return <p className="muted">Loading...</p>;
  const metrics = ["accuracy", "loss"].filter((k) =>
    jobs.some((d) => d.rounds.some((r) => (r.metrics && k in r.metrics) || (r.held_out && k in r.held_out))),
  );
  return (
    <>
      <h1>Compare {jobs.length} jobs</h1>
      <ul>
        {jobs.map((d, i) => (
          <li key={d.job.id} style={{ color: COLORS[i % COLORS.length] }}>
            <a href={`/job/?id=${d.job.id}`}>{d.job.name}</a> <Status value={d.job.status} />{" "}
            <span className="muted">
              {d.job.rounds} rounds, {String((d.config.strategy as { name?: string }).name ?? "")}
            </span>
          </li>
        ))}
      </ul>
      <div className="charts">
        {metrics.map((k) => (
          <LineChart
            key={k}
            title={k[0].toUpperCase() + k.slice(1)}
            yLabel={k}
            y={k === "accuracy" ? { bounds: [0, 1] } : {}}
            series={jobs.map((d, i) => curve(d, k, COLORS[i % COLORS.length])).filter((s) => s.points.length > 0)}
          />
        ))}
      </div>
      {metrics.length === 0 && <p className="muted">None of these jobs has reported accuracy or loss yet.</p>}
    </>
  );
}
