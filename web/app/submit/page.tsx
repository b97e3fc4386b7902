"use client";

import { useRouter } from "next/navigation";
import { useState } from "react";

import { ErrorNote } from "@/components/Shell";
import { ApiError, postForm } from "@/lib/api";
import type { JobDetail } from "@/lib/types";

const STRATEGIES: Record<string, string[]> = {
  fedavg: [],
  fedprox: ["mu"],
  fedadam: ["eta", "beta1", "beta2", "tau"],
  fedyogi: ["eta", "beta1", "beta2", "tau"],
  fedadagrad: ["eta", "beta1", "beta2", "tau"],
  fedmedian: [],
  trimmed_mean: ["beta"],
  krum: ["f", "m"],
};

export default function Submit() {
  const router = useRouter();
  const [strategy, setStrategy] = useState("fedavg");
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const fieldError = (name: string) =>
    errors[name] ? (
      <span className="field-error" id={`${name}-error`} role="alert">
        {errors[name]}
      </span>
    ) : null;
  return (
    <>
      <h1>Submit a job</h1>
      <form
        className="grid"
        noValidate
        onSubmit={async (e) => {
          e.preventDefault();
          const f = new FormData(e.currentTarget);
          const num = (k: string) => (f.get(k) === "" || f.get(k) === null ? undefined : Number(f.get(k)));
          const params: Record<string, number> = {};
          for (const p of STRATEGIES[strategy]) {
            const v = num(`param_${p}`);
            if (v !== undefined) params[p] = v;
          }
          const config = {
            name: String(f.get("name") ?? ""),
            rounds: num("rounds"),
            shards: num("shards"),
            epochs: num("epochs"),
            replicas: num("replicas"),
            strategy: { name: strategy, ...params },
          };
          const body = new FormData();
          for (const k of ["train_py", "requirements", "data", "evaluate_py", "test_data"]) {
            const file = f.get(k);
            if (file instanceof File && file.size > 0) body.append(k, file, file.name);
          }
          body.append("config", JSON.stringify(config));
          setBusy(true);
          try {
            const job = await postForm<JobDetail>("/jobs/", body);
            router.push(`/job/?id=${job.job.id}`);
          } catch (err) {
            if (err instanceof ApiError) {
              const list = err.body.errors?.length
                ? err.body.errors
                : err.body.field
                  ? [{ field: err.body.field, message: err.body.message }]
                  : [];
              const byField: Record<string, string> = {};
              for (const e of list) byField[e.field.replace(/^strategy\./, "param_")] = e.message;
              setErrors(byField);
              setError(list.length ? null : err.body.message);
            } else setError(String(err));
          } finally {
            setBusy(false);
          }
        }}
      >
        <label>
          train.py (required)
          <input type="file" name="train_py" accept=".py" aria-describedby="train_py-error" />
          {fieldError("train_py")}
        </label>
        <label>
          requirements.txt
          <input type="file" name="requirements" accept=".txt" />
        </label>
        <label>
          Data (a table or JSON Lines is split into shards by rows, an archive by file)
          <input type="file" name="data" aria-describedby="data-error" />
          {fieldError("data")}
        </label>
        <label>
          Evaluation script (evaluate.py, run on each round&apos;s model)
          <input type="file" name="evaluate_py" accept=".py" aria-describedby="evaluate_py-error" />
          {fieldError("evaluate_py")}
        </label>
        <label>
          Test data (for the evaluation, never sharded)
          <input type="file" name="test_data" aria-describedby="test_data-error" />
          {fieldError("test_data")}
        </label>
        <label>
          Name
          <input name="name" placeholder="my-model" />
        </label>
        <label>
          Rounds
          <input name="rounds" type="number" defaultValue={3} aria-describedby="rounds-error" />
          {fieldError("rounds")}
        </label>
        <label>
          Shards (tasks per round)
          <input name="shards" type="number" defaultValue={2} aria-describedby="shards-error" />
          {fieldError("shards")}
        </label>
        <label>
          Local epochs
          <input name="epochs" type="number" defaultValue={5} aria-describedby="epochs-error" />
          {fieldError("epochs")}
        </label>
        <label>
          Replicas (nodes per shard, of different owners)
          <input name="replicas" type="number" defaultValue={1} aria-describedby="replicas-error" />
          {fieldError("replicas")}
        </label>
        <label>
          Strategy
          <select name="strategy" value={strategy} onChange={(e) => setStrategy(e.target.value)}>
            {Object.keys(STRATEGIES).map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </label>
        {STRATEGIES[strategy].map((p) => (
          <label key={p}>
            {p}
            <input name={`param_${p}`} type="number" step="any" placeholder="default" />
            {fieldError(`param_${p}`)}
          </label>
        ))}
        <div className="actions">
          <button type="submit" disabled={busy}>
            {busy ? "Uploading..." : "Submit job"}
          </button>
        </div>
      </form>
      <ErrorNote error={error} />
    </>
  );
}
