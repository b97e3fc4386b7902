"use client";

import Link from "next/link";
import { useEffect, useState } from "react";

import { LineChart, type XAxis } from "@/components/LineChart";
import { Empty, ErrorNote, Status } from "@/components/Shell";
import { getJson, live } from "@/lib/api";
import { ago, bytes } from "@/lib/format";
import type { FleetSample, JobSummary, Overview } from "@/lib/types";

const STATUSES = ["queued", "running", "aggregating", "succeeded", "failed", "cancelled"];
const HOUR_AXIS: XAxis = {
  name: "minutes ago",
  min: -60,
  max: 0,
  ticks: [-60, -45, -30, -15, 0],
  label: (x) => String(-x),
};

export default function OverviewPage() {
  const [data, setData] = useState<Overview | null>(null);
  const [mode, setMode] = useState("connecting");
  const [history, setHistory] = useState<FleetSample[]>([]);
  const [jobs, setJobs] = useState<JobSummary[] | null>(null);
  useEffect(() => live<Overview>("/stats/overview/events", "/stats/overview", setData, setMode, true), []);
  useEffect(() => {
    // the charts move once per sample (10 s); the recent jobs with them
    const load = () => {
      getJson<FleetSample[]>("/stats/history?minutes=60").then(setHistory, () => {});
      getJson<JobSummary[]>("/jobs/").then((all) => setJobs(all.slice(0, 5)), () => {});
    };
    load();
    const t = setInterval(load, 10_000);
    return () => clearInterval(t);
  }, []);
  const now = Date.now();
  const whose = data?.scope === "yours" ? "your " : "all ";
  const points = (key: "nodes_online" | "tasks_done" | "tasks_running") =>
    history.map((s) => ({ x: Math.max(-60, (s.at - now) / 60_000), y: s[key] }));
  return (
    <>
      <h1>Overview</h1>
      <p className="muted" aria-live="polite">
        Updates {mode === "live" ? "live" : mode === "polling" ? "every 2 s" : "..."}
      </p>
      {!data ? (
        <ErrorNote error={null} />
      ) : (
        <>
          <div className="cards">
            <Card n={data.nodes_online} label={`${whose}nodes online`} id="nodes-online" />
            <Card n={data.nodes_offline} label={`${whose}nodes offline`} id="nodes-offline" />
            <Card n={data.tasks_running} label={`${whose}tasks running`} id="tasks-running" />
            <Card n={data.tasks_queued} label={`${whose}tasks queued`} id="tasks-queued" />
            <Card n={data.tasks_per_minute} label="tasks / minute" id="tasks-per-minute" />
            <Card n={bytes(data.storage_bytes)} label="stored" id="storage" />
          </div>
          <h2>Jobs by status</h2>
          <div className="cards">
            {STATUSES.map((s) => (
              <Card key={s} n={data.jobs_by_status[s] ?? 0} label={s} id={`jobs-${s}`} />
            ))}
          </div>
        </>
      )}
      <h2>The last hour, whole fleet</h2>
      <div className="charts" data-testid="history">
        <LineChart
          title="Nodes online"
          yLabel="nodes"
          y={{ integer: true, bounds: [0, Infinity] }}
          x={HOUR_AXIS}
          empty="no sample yet (one every 10 s)"
          series={[{ name: "nodes online", color: "#0a58ca", points: points("nodes_online") }]}
        />
        <LineChart
          title="Throughput (tasks per 10 s)"
          yLabel="tasks / 10 s"
          y={{ integer: true, bounds: [0, Infinity] }}
          x={HOUR_AXIS}
          empty="no sample yet (one every 10 s)"
          series={[
            { name: "tasks done", color: "#1a7f37", points: points("tasks_done") },
            { name: "tasks running", color: "#bf8700", points: points("tasks_running") },
          ]}
        />
      </div>
      <h2>Recent jobs</h2>
      {jobs && jobs.length === 0 && (
        <Empty>
          No jobs yet. <Link href="/submit/">Submit one</Link>.
        </Empty>
      )}
      {jobs && jobs.length > 0 && (
        <div className="table-wrap">
          <table data-testid="recent-jobs">
            <thead>
              <tr>
                <th>Job</th>
                <th>Status</th>
                <th>Round</th>
                <th className="lo">Age</th>
              </tr>
            </thead>
            <tbody>
              {jobs.map((j) => (
                <tr key={j.id}>
                  <td>
                    <Link href={`/job/?id=${j.id}`}>{j.name}</Link>
                  </td>
                  <td>
                    <Status value={j.status} />
                  </td>
                  <td>
                    {Math.min(j.current_round + 1, j.rounds)}/{j.rounds}
                  </td>
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

function Card({ n, label, id }: { n: number | string; label: string; id: string }) {
  return (
    <div className="card" data-testid={id}>
      <div className="n">{n}</div>
      <div className="l">{label}</div>
    </div>
  );
}
