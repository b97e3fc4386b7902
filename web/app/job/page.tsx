"use client";

import Link from "next/link";
import { useSearchParams } from "next/navigation";
import { Suspense, useEffect, useState } from "react";

import { LineChart, roundsAxis } from "@/components/LineChart";
import { ErrorNote, Status } from "@/components/Shell";
import { ApiError, deleteIt, download, getJson, live, postJson } from "@/lib/api";
import { ago, bytes, duration } from "@/lib/format";
import { INIT_ROUND, type JobDetail, type TaskInfo } from "@/lib/types";

const FINISHED = ["succeeded", "failed", "cancelled"];

export default function JobPage() {
  return (
    <Suspense fallback={<p className="muted">Loading...</p>}>
      <Job />
    </Suspense>
  );
}

function Job() {
  const id = useSearchParams().get("id") ?? "";
  const [d, setD] = useState<JobDetail | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [mode, setMode] = useState("connecting");
  useEffect(() => {
    if (!id) return;
    let stop: (() => void) | null = null;
    let gone = false;
    // follow the job only once it is known to exist: an unknown id is said once, not re-asked
    getJson<JobDetail>(`/jobs/${id}`)
      .then((detail) => {
        if (gone) return;
        setD(detail);
        stop = live<JobDetail>(`/jobs/${id}/events`, `/jobs/${id}`, setD, setMode);
      })
      .catch((e) => setError(e instanceof ApiError ? e.body.message : String(e)));
    return () => {
      gone = true;
      stop?.();
    };
  }, [id]);
  if (!id) return <ErrorNote error="No job chosen: open one from the Jobs list." />;
  if (error) return <ErrorNote error={error} />;
  if (!d) return <p className="muted">Loading...</p>;
  const j = d.job;
  const done = d.rounds.filter((r) => r.status === "done" && r.metrics && r.index !== INIT_ROUND);
  const init = d.rounds.find((r) => r.index === INIT_ROUND);
  const series = (key: string, color: string) => ({
    name: `training ${key}`,
    color,
    points: done.filter((r) => r.metrics && key in r.metrics).map((r) => ({ x: r.index + 1, y: r.metrics![key] })),
  });
  const heldOut = (key: string, color: string) => ({
    name: `held-out ${key}`,
    color,
    points: d.rounds
      .filter((r) => r.held_out && key in r.held_out)
      .map((r) => ({ x: r.index + 1, y: r.held_out![key] })),
  });
  const failed = d.tasks.flatMap((t) =>
    t.history.filter((h) => h.error).map((h) => ({ task: t, attempt: h })),
  );
  // what a failed job's first failure raised: the last line its code printed (the exception)
  const first = failed.find((f) => f.attempt.outcome !== "cancelled" && f.attempt.stderr_tail);
  const cause = j.status === "failed" ? first?.attempt.stderr_tail?.trim().split("\n").pop() : undefined;
  const ended = FINISHED.includes(j.status);
  const span = duration(((ended ? j.updated_at : Date.now()) - j.created_at) / 1000);
  const eps = d.rounds.filter((r) => r.epsilon != null);
  const spent = eps.length ? eps[eps.length - 1].epsilon! : null;
  const dp = d.config.dp as { max_epsilon?: number } | null | undefined;
  const maxEps = dp?.max_epsilon;
  const steps = d.config.mode === "async";
  const word = steps ? "Step" : "Round";
  const xAxis = (series: { name: string; color: string; points: { x: number; y: number }[] }[]) =>
    roundsAxis(series, steps ? "server step" : "round");
  const lateness = {
    name: "mean staleness",
    color: "#9a6700",
    points: done
      .filter((r) => r.staleness.length > 0)
      .map((r) => ({ x: r.index + 1, y: r.staleness.reduce((a, b) => a + b, 0) / r.staleness.length })),
  };
  const act = (fn: () => Promise<unknown>) => fn().catch((e) => setError(e instanceof ApiError ? e.body.message : String(e)));
  return (
    <>
      <h1>
        {j.name} <Status value={j.status} />
      </h1>
      <p className="muted" aria-live="polite">
        {j.id} · owner {j.owner} · submitted {ago(j.created_at)} ·{" "}
        <span data-job-time>{ended ? `ran ${span}` : `running for ${span}`}</span> ·{" "}
        {FINISHED.includes(j.status) ? "finished" : mode === "live" ? "updating live" : "updating every 2 s"}
      </p>
      {j.error && (
        <p className={j.status === "succeeded" ? "muted" : "error"} data-job-error>
          {j.error}
          {cause && (
            <>
              : <code data-cause>{cause}</code>
            </>
          )}
        </p>
      )}
      {d.waiting && (
        <p className="waiting" data-waiting role="status">
          Waiting: {d.waiting}
        </p>
      )}
      {steps && <AsyncSummary d={d} />}
      {typeof d.config.dataset === "string" && (
        <p data-dataset>
          Data: dataset <strong>{d.config.dataset}</strong> on the nodes that hold it (never uploaded)
        </p>
      )}
      {d.delta != null && (
        <p data-privacy>
          Differential privacy: epsilon {spent !== null ? spent.toFixed(2) : "0"} spent so far
          {maxEps ? ` of ${maxEps}` : ""} (delta {d.delta.toPrecision(2)})
        </p>
      )}
      <div className="actions">
        <Link href={`/submit/?from=${j.id}`} className="button" data-run-again>
          Run again with changes
        </Link>
        {j.status === "succeeded" && (
          <>
            <button type="button" onClick={() => act(() => download(`/jobs/${j.id}/model?format=pth`, "final_model.pth"))}>
              Download final_model.pth
            </button>
            <button
              type="button"
              className="secondary"
              onClick={() => act(() => download(`/jobs/${j.id}/model?format=safetensors`, "final_model.safetensors"))}
            >
              Download .safetensors
            </button>
          </>
        )}
        {!FINISHED.includes(j.status) && (
          <button type="button" className="secondary" onClick={() => act(() => postJson(`/jobs/${j.id}/cancel`, {}))}>
            Cancel job
          </button>
        )}
        {FINISHED.includes(j.status) && (
          <button
            type="button"
            className="secondary"
            onClick={() =>
              window.confirm(`Delete ${j.name} and its final model for good?`) &&
              act(() => deleteIt(`/jobs/${j.id}`).then(() => window.location.assign("/job-list/")))
            }
          >
            Delete job
          </button>
        )}
      </div>
      <p className="muted" data-storage>
        Stored for this job: {bytes(d.storage_bytes)}
        {d.config.keep_updates ? " (every update kept)" : " (updates are deleted once their round is merged)"}
      </p>
      <p className="muted" data-traffic>
        Uploaded by the nodes: {bytes(d.uploaded_bytes ?? 0)}
        {d.config.compress ? ` (${d.config.compress} updates)` : " (whole models)"}
      </p>
      <h2>{steps ? "Server steps" : "Rounds"}</h2>
      <ol className="timeline" aria-label={`${word} timeline`}>
        {init && (
          <li className={init.status} data-round="init" data-status={init.status}>
            Initial model: {init.status}
            {init.finished_at ? ` · ${duration((init.finished_at - init.started_at) / 1000)}` : ""}
          </li>
        )}
        {Array.from({ length: j.rounds }, (_, i) => {
          const r = d.rounds.find((x) => x.index === i);
          const status = r?.status ?? "pending";
          return (
            <li key={i} className={status} data-round={i + 1} data-status={status}>
              {word} {i + 1}: {status}
              {r?.finished_at ? ` · ${duration((r.finished_at - r.started_at) / 1000)}` : ""}
              {r?.staleness && r.staleness.length > 0 ? (
                <span className="muted" data-step-staleness>
                  {" "}
                  · {r.staleness.length} updates, staleness {r.staleness.join(" ")}
                </span>
              ) : null}
              {r?.epsilon != null ? ` · epsilon ${r.epsilon.toFixed(2)}` : ""}
              {r?.uploaded_bytes ? <span data-round-sent>{` · sent ${bytes(r.uploaded_bytes)}`}</span> : null}
              {r?.nodes && r.nodes.length > 0 && typeof d.config.dataset === "string" ? (
                <span className="muted" data-round-nodes>
                  {" "}
                  · {r.nodes.join(", ")}
                </span>
              ) : null}
              {r?.excluded && r.excluded.length > 0 ? (
                <div className="muted" data-round-excluded>
                  left out: {r.excluded.join("; ")}
                </div>
              ) : null}
            </li>
          );
        })}
      </ol>
      <div className="charts">
        <LineChart
          title="Accuracy"
          yLabel="accuracy"
          y={{ bounds: [0, 1] }}
          x={xAxis([series("accuracy", "#1a7f37"), heldOut("accuracy", "#0a58ca")])}
          series={[series("accuracy", "#1a7f37"), heldOut("accuracy", "#0a58ca")].filter((s) => s.points.length > 0)}
        />
        <LineChart
          title="Loss"
          yLabel="loss"
          x={xAxis([series("loss", "#c4221f"), heldOut("loss", "#8250df")])}
          series={[series("loss", "#c4221f"), heldOut("loss", "#8250df")].filter((s) => s.points.length > 0)}
        />
        {steps && (
          <LineChart
            title="Staleness"
            yLabel="steps behind"
            x={xAxis([lateness])}
            empty="no step merged yet"
            series={lateness.points.length > 0 ? [lateness] : []}
          />
        )}
      </div>
      <h2>Tasks</h2>
      <div className="table-wrap">
        <table>
          <thead>
            <tr>
              <th>{steps ? "From step" : "Round"}</th>
              <th>Shard</th>
              <th>Status</th>
              <th>Node</th>
              <th className="lo">Attempt</th>
              <th className="lo">Time</th>
              <th className="lo">Rows</th>
              <th className="lo">Metrics</th>
              <th className="lo">Output</th>
            </tr>
          </thead>
          <tbody>
            {d.tasks.map((t) => (
              <tr key={t.id}>
                <td>{t.round === INIT_ROUND ? "init" : t.round + 1}</td>
                <td>
                  {t.kind === "evaluate" ? "held-out evaluation" : t.shard}
                  {t.copy > 0 ? ` (copy ${t.copy + 1})` : ""}
                </td>
                <td>
                  <Status value={t.status} />
                  {t.verdict ? <> <Status value={t.verdict} /></> : null}
                  {t.phase ? (
                    <div className="muted phase" data-phase={t.phase} title={t.phase_detail ?? undefined}>
                      {t.phase}
                      {t.phase_detail ? `: ${t.phase_detail}` : ""}
                    </div>
                  ) : null}
                </td>
                <td title={t.node_id ?? undefined} className="nowrap">{t.node_name ?? t.node_id ?? "-"}</td>
                <td className="lo" title="tries of the code / nodes lost with it">
                  {t.attempts}/{t.max_attempts}
                  {t.losses > 0 ? `, lost ${t.losses}/${t.max_losses}` : ""}
                </td>
                <td className="lo" data-task-time>{taskTime(t)}</td>
                <td className="lo">{t.rows}</td>
                <td className="lo">{t.metrics ? Object.entries(t.metrics).map(([k, v]) => `${k} ${v.toFixed(3)}`).join(", ") : "-"}</td>
                <td className="lo">
                  <TaskLog task={t} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {failed.length > 0 && (
        <>
          <h2>Failed attempts</h2>
          {failed.map(({ task, attempt }) => (
            <details key={`${task.id}-${attempt.attempt}`} open={attempt === first?.attempt}>
              <summary>
                {task.round === INIT_ROUND ? "initialisation" : `round ${task.round + 1}`}, shard {task.shard}, attempt {attempt.attempt} on {attempt.node_id}: [
                {attempt.error_code}] {attempt.error}
              </summary>
              {attempt.stderr_tail && <pre>{attempt.stderr_tail}</pre>}
            </details>
          ))}
        </>
      )}
      <h2>Configuration</h2>
      <div className="table-wrap">
        <table className="config" data-config>
          <tbody>
            {Object.entries(d.config)
              .filter(([, v]) => v !== null && v !== undefined)
              .map(([k, v]) => (
                <tr key={k}>
                  <th scope="row">{k}</th>
                  <td>{typeof v === "object" ? JSON.stringify(v) : String(v)}</td>
                </tr>
              ))}
          </tbody>
        </table>
      </div>
    </>
  );
}

/** How long a task's latest attempt took, or has run so far. */
function taskTime(t: TaskInfo): string {
  const last = t.history[t.history.length - 1];
  if (!last) return "-";
  return duration(((last.finished_at ?? Date.now()) - last.started_at) / 1000);
}

/** What a task's latest attempt printed (streamed while it runs), folded until opened. */
function TaskLog({ task }: { task: TaskInfo }) {
  const last = task.history[task.history.length - 1];
  if (!last?.stderr_tail) return <>-</>;
  return (
    <details className="task-log" data-task-log={task.id}>
      <summary>{last.outcome ? "log" : "live log"}</summary>
      <pre>{last.stderr_tail}</pre>
    </details>
  );
}

/** An async job's progress: its buffer, the updates merged, their rate and staleness. */
function AsyncSummary({ d }: { d: JobDetail }) {
  const merged = d.rounds.filter((r) => r.index !== INIT_ROUND && r.status === "done");
  const behind = merged.flatMap((r) => r.staleness);
  const first = Math.min(...merged.map((r) => r.started_at));
  const last = Math.max(...merged.map((r) => r.finished_at ?? 0));
  const rate = behind.length ? behind.length / Math.max((last - first) / 1000, 0.001) : 0;
  const mean = behind.length ? behind.reduce((a, b) => a + b, 0) / behind.length : 0;
  const buffer = d.config.buffer ?? Math.max(1, Math.floor(d.config.shards / 2));
  return (
    <p data-async>
      Asynchronous (FedBuff): a server step every {buffer} updates, nothing waits for a slow node ·{" "}
      {behind.length
        ? `${behind.length} updates merged, ${rate.toFixed(1)} updates/s, staleness mean ${mean.toFixed(1)} (max ${Math.max(...behind)})`
        : "no step merged yet"}
    </p>
  );
}
