"use client";

import { useEffect, useState } from "react";

import { Empty, ErrorNote, Status } from "@/components/Shell";
import { ApiError, getJson, postJson } from "@/lib/api";
import { ago, bytes } from "@/lib/format";
import type { NodeInfo } from "@/lib/types";

export default function Fleet() {
  const [nodes, setNodes] = useState<NodeInfo[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const load = () =>
    getJson<NodeInfo[]>("/nodes")
      .then(setNodes)
      .catch((e) => setError(e instanceof ApiError ? e.body.message : String(e)));
  useEffect(() => {
    load();
    const t = setInterval(load, 3000);
    return () => clearInterval(t);
  }, []);
  return (
    <>
      <h1>Nodes</h1>
      <ErrorNote error={error} />
      {nodes && nodes.length === 0 && (
        <Empty>
          No nodes yet. On a machine to lend: <code>gridx-node start --coordinator URL --enrolment-key KEY</code>
        </Empty>
      )}
      {nodes && nodes.length > 0 && (
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                <th>Node</th>
                <th className="lo">Owner</th>
                <th className="lo">Machine</th>
                <th className="lo">Executor / isolation</th>
                <th>Status</th>
                <th className="lo">Last seen</th>
                <th>Tasks done</th>
                <th className="lo" title="(agreed + 1) / (agreed + disagreed + 1) over replicated shards">Reputation</th>
                <th className="lo" title="declared by the node: names and row counts, never the data">Datasets</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {nodes.map((n) => (
                <tr key={n.id} data-node={n.name}>
                  <td>
                    {n.name}
                    <div className="muted nowrap" data-node-id>
                      {n.id}
                    </div>
                  </td>
                  <td className="lo">{n.owner}</td>
                  <td className="lo">
                    {n.capabilities.arch || "?"}, {n.capabilities.cpus} cores,{" "}
                    <span title="memory a task may use there (of the machine's)">
                      {bytes(n.capabilities.memory_mb * 1048576)}
                      {n.capabilities.machine_memory_mb
                        ? ` of ${bytes(n.capabilities.machine_memory_mb * 1048576)}`
                        : ""}
                    </span>
                    {n.capabilities.gpus ? `, ${n.capabilities.gpus} GPU` : ""}
                  </td>
                  <td className="lo">
                    {n.capabilities.docker ? "docker" : "process"} / {n.capabilities.isolation}
                  </td>
                  <td title={n.resting || undefined}>
                    <Status value={n.status} />
                    {n.resting && <div className="lo" data-resting>{n.resting}</div>}
                  </td>
                  <td className="lo">{ago(n.last_seen)}</td>
                  <td>{n.tasks_done}</td>
                  <td className="lo">{n.reputation.toFixed(2)}{n.disagreed > 0 ? ` (${n.disagreed} disagreed)` : ""}</td>
                  <td className="lo" data-datasets>
                    {n.datasets && n.datasets.length > 0
                      ? n.datasets.map((d) => (
                          <div key={d.name} title={d.columns.join(", ")}>
                            {d.name} <span className="muted">({d.format}, {d.rows} rows)</span>
                          </div>
                        ))
                      : "-"}
                  </td>
                  <td>
                    <button
                      type="button"
                      className="secondary"
                      onClick={() =>
                        postJson(`/nodes/${n.id}/drain`, { drain: n.status !== "draining" })
                          .then(load)
                          .catch((e) => setError(e instanceof ApiError ? e.body.message : String(e)))
                      }
                    >
                      {n.status === "draining" ? "Undrain" : "Drain"}
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}
