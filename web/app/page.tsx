"use client";

import { useEffect, useState } from "react";

import { ErrorNote } from "@/components/Shell";
import { live } from "@/lib/api";
import type { Overview } from "@/lib/types";

const STATUSES = ["queued", "running", "aggregating", "succeeded", "failed", "cancelled"];

export default function OverviewPage() {
  const [data, setData] = useState<Overview | null>(null);
  const [mode, setMode] = useState("connecting");
  useEffect(() => live<Overview>("/stats/overview/events", "/stats/overview", setData, setMode, true), []);
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
            <Card n={data.nodes_online} label="nodes online" id="nodes-online" />
            <Card n={data.nodes_offline} label="nodes offline" id="nodes-offline" />
            <Card n={data.tasks_running} label="tasks running" id="tasks-running" />
            <Card n={data.tasks_queued} label="tasks queued" id="tasks-queued" />
            <Card n={data.tasks_per_minute} label="tasks / minute" id="tasks-per-minute" />
          </div>
          <h2>Jobs by status</h2>
          <div className="cards">
            {STATUSES.map((s) => (
              <Card key={s} n={data.jobs_by_status[s] ?? 0} label={s} id={`jobs-${s}`} />
            ))}
          </div>
        </>
      )}
    </>
  );
}

function Card({ n, label, id }: { n: number; label: string; id: string }) {
  return (
    <div className="card" data-testid={id}>
      <div className="n">{n}</div>
      <div className="l">{label}</div>
    </div>
  );
}
