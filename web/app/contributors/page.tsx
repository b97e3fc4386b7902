"use client";

import { useEffect, useState } from "react";

import { Empty, ErrorNote } from "@/components/Shell";
import { ApiError, getJson } from "@/lib/api";
import { duration } from "@/lib/format";
import type { Contributor } from "@/lib/types";

export default function Contributors() {
  const [rows, setRows] = useState<Contributor[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    // credit grows with every task a node completes: follow it while the page is open
    const load = () =>
      getJson<Contributor[]>("/stats/contributors")
        .then((r) => {
          setRows(r);
          setError(null);
        })
        .catch((e) => setError(e instanceof ApiError ? e.body.message : String(e)));
    load();
    const t = setInterval(load, 3000);
    return () => clearInterval(t);
  }, []);
  return (
    <>
      <h1>Contributors</h1>
      <p className="muted">
        Credit, as in BOINC: 100 per CPU-hour of training given, measured by the coordinator for every completed task.
        Updates every 3 s.
      </p>
      <ErrorNote error={error} />
      {rows && rows.length === 0 && <Empty>Nobody has lent a machine yet.</Empty>}
      {rows && rows.length > 0 && (
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                <th>Owner</th>
                <th className="lo">Nodes</th>
                <th>Tasks done</th>
                <th className="lo">Compute given</th>
                <th>Credit</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((r) => (
                <tr key={r.owner}>
                  <td>{r.owner}</td>
                  <td className="lo">{r.nodes}</td>
                  <td>{r.tasks_done}</td>
                  <td className="lo">{duration(r.compute_s)}</td>
                  <td>{r.credit.toFixed(2)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}
