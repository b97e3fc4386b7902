"use client";

import Link from "next/link";
import { useEffect, useState } from "react";

import { Empty, ErrorNote, Status } from "@/components/Shell";
import { ApiError, getJson } from "@/lib/api";
import { ago } from "@/lib/format";
import type { JobSummary } from "@/lib/types";

export default function JobList() {
  const [jobs, setJobs] = useState<JobSummary[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [picked, setPicked] = useState<string[]>([]);
  const toggle = (id: string) => setPicked((p) => (p.includes(id) ? p.filter((x) => x !== id) : [...p, id]));
  useEffect(() => {
    const load = () =>
      getJson<JobSummary[]>("/jobs/")
        .then(setJobs)
        .catch((e) => setError(e instanceof ApiError ? e.body.message : String(e)));
    load();
    const t = setInterval(load, 3000);
    return () => clearInterval(t);
  }, []);
  return (
    <>
      <h1>Jobs</h1>
      <ErrorNote error={error} />
      <p className="muted">
        Tick jobs to overlay their curves:{" "}
        {picked.length >= 2 ? (
          <Link href={`/compare/?ids=${picked.join(",")}`} data-testid="compare">
            compare {picked.length} jobs
          </Link>
        ) : (
          <span>pick at least two</span>
        )}
      </p>
      {jobs && jobs.length === 0 && (
        <Empty>
          No jobs yet. <Link href="/submit/">Submit one</Link>.
        </Empty>
      )}
      {jobs && jobs.length > 0 && (
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                <th aria-label="compare" />
                <th>Job</th>
                <th>Status</th>
                <th>Progress</th>
                <th className="lo">Owner</th>
                <th className="lo">Age</th>
              </tr>
            </thead>
            <tbody>
              {jobs.map((j) => (
                <tr key={j.id} data-job={j.id}>
                  <td>
                    <input
                      type="checkbox"
                      aria-label={`compare ${j.name}`}
                      checked={picked.includes(j.id)}
                      onChange={() => toggle(j.id)}
                    />
                  </td>
                  <td>
                    <Link href={`/job/?id=${j.id}`}>{j.name}</Link>
                  </td>
                  <td>
                    <Status value={j.status} />
                  </td>
                  <td>
                    <div className="progress" title={`${j.tasks_done} of ${j.tasks_total} tasks`}>
                      <span style={{ width: `${(100 * j.tasks_done) / Math.max(j.tasks_total, 1)}%` }} />
                    </div>
                    <span className="muted">
                      {j.mode === "async" ? "step" : "round"} {Math.min(j.current_round + 1, j.rounds)}/{j.rounds}
                    </span>
                  </td>
                  <td className="lo">{j.owner}</td>
                  <td className="lo">{ago(j.created_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}
