"use client";

import { useRouter } from "next/navigation";
import { useEffect, useState } from "react";

import { ErrorNote } from "@/components/Shell";
import { ApiError, getJson, postForm } from "@/lib/api";
import type { DatasetSummary, JobConfig, JobDetail } from "@/lib/types";

const STRATEGIES: Record<string, string[]> = {
  fedavg: [],
  fedprox: ["mu"],
  fedadam: ["eta", "beta1", "beta2", "tau"],
  fedyogi: ["eta", "beta1", "beta2", "tau"],
  fedadagrad: ["eta", "beta1", "beta2", "tau"],
  fedavgm: ["server_lr", "momentum"],
  diloco: ["server_lr", "momentum"],
  fedmedian: [],
  trimmed_mean: ["beta"],
  krum: ["f", "m"],
};

type Partition = { name: string; column?: string; alpha?: number };

export default function Submit() {
  const router = useRouter();
  // what the form starts from: the coordinator's defaults (the CLI's), or a job run again
  const [base, setBase] = useState<JobConfig | null>(null);
  const [from, setFrom] = useState<string | null>(null);
  useEffect(() => {
    const again = new URLSearchParams(window.location.search).get("from");
    setFrom(again);
    const load = again
      ? getJson<JobDetail>(`/jobs/${encodeURIComponent(again)}`).then((d) => d.config)
      : getJson<JobConfig>("/jobs/defaults");
    load.then(setBase, () => getJson<JobConfig>("/jobs/defaults").then(setBase, () => {}));
  }, []);
  if (!base) return <p className="muted">Loading...</p>;
  return <SubmitForm base={base} from={from} onDone={(id) => router.push(`/job/?id=${id}`)} />;
}

function SubmitForm({ base, from, onDone }: { base: JobConfig; from: string | null; onDone: (id: string) => void }) {
  const baseStrategy = base.strategy as { name: string } & Record<string, number | null>;
  const basePartition = base.partition as Partition;
  const [strategy, setStrategy] = useState(baseStrategy.name);
  const [partition, setPartition] = useState(basePartition.name);
  const [source, setSource] = useState<"upload" | "nodes">(base.dataset ? "nodes" : "upload");
  const [datasets, setDatasets] = useState<DatasetSummary[] | null>(null);
  useEffect(() => {
    if (source === "nodes" && datasets === null)
      getJson<DatasetSummary[]>("/datasets")
        .then(setDatasets)
        .catch(() => setDatasets([]));
  }, [source, datasets]);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const fieldError = (name: string) =>
    errors[name] ? (
      <span className="field-error" id={`${name}-error`} role="alert">
        {errors[name]}
      </span>
    ) : null;
  const numberField = (name: string, label: string, value: number | null | undefined) => (
    <label>
      {label}
      <input name={name} type="number" defaultValue={value ?? undefined} aria-describedby={`${name}-error`} />
      {fieldError(name)}
    </label>
  );
  return (
    <>
      <h1>{from ? "Run again with changes" : "Submit a job"}</h1>
      {from && (
        <p className="muted" data-from>
          Settings from job {from}; choose its files again (train.py, data, ...).
        </p>
      )}
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
          const local = source === "nodes";
          const noise = num("dp_noise_multiplier");
          const column = String(f.get("partition_column") ?? "");
          const config = {
            name: String(f.get("name") ?? ""),
            rounds: num("rounds"),
            epochs: num("epochs"),
            replicas: f.get("replicas") === "adaptive" ? "adaptive" : num("replicas"),
            ...(f.get("mode") === "async" ? { mode: "async", buffer: num("buffer") } : {}),
            task_timeout_s: num("task_timeout_s"),
            max_attempts: num("max_attempts"),
            seed: num("seed"),
            strategy: { name: strategy, ...params },
            partition:
              partition === "iid"
                ? { name: "iid" }
                : partition === "by_column"
                  ? { name: partition, column }
                  : { name: partition, column, ...(num("partition_alpha") !== undefined ? { alpha: num("partition_alpha") } : {}) },
            ...(local
              ? { dataset: String(f.get("dataset") ?? ""), min_nodes: num("min_nodes"), max_nodes: num("max_nodes") }
              : { shards: num("shards") }),
            ...(String((f.get("train_py") as File | null)?.name ?? "").toLowerCase().endsWith(".zip")
              ? { entry: String(f.get("entry") || "train.py") }
              : {}),
            ...(noise !== undefined
              ? { dp: { noise_multiplier: noise, clip_norm: num("dp_clip_norm"), max_epsilon: num("dp_max_epsilon") } }
              : {}),
          };
          const body = new FormData();
          const files = ["train_py", "requirements", "evaluate_py", "test_data", "init_model", ...(local ? [] : ["data"])];
          for (const k of files) {
            const file = f.get(k);
            if (!(file instanceof File) || file.size === 0) continue;
            // a .zip is a project: a folder of files run from its entry script
            const project = k === "train_py" && file.name.toLowerCase().endsWith(".zip");
            body.append(project ? "project" : k, file, file.name);
          }
          body.append("config", JSON.stringify(config));
          setBusy(true);
          try {
            const job = await postForm<JobDetail>("/jobs/", body);
            onDone(job.job.id);
          } catch (err) {
            if (err instanceof ApiError) {
              const list = err.body.errors?.length
                ? err.body.errors
                : err.body.field
                  ? [{ field: err.body.field, message: err.body.message }]
                  : [];
              const byField: Record<string, string> = {};
              for (const e of list)
                byField[e.field.replace(/^\$\./, "").replace(/^strategy\./, "param_").replace(/^dp\./, "dp_")] = e.message;
              setErrors(byField);
              setError(list.length ? null : err.body.message);
            } else setError(String(err));
          } finally {
            setBusy(false);
          }
        }}
      >
        <label>
          train.py (required), or a project&apos;s .zip
          <input type="file" name="train_py" accept=".py,.zip" aria-describedby="train_py-error" />
          {fieldError("train_py")}
          {fieldError("project")}
        </label>
        <label>
          Entry script of a .zip project
          <input name="entry" placeholder="train.py" aria-describedby="entry-error" />
          {fieldError("entry")}
        </label>
        <label>
          requirements.txt
          <input type="file" name="requirements" accept=".txt" />
        </label>
        <fieldset className="source">
          <legend>Data</legend>
          <label className="inline">
            <input type="radio" name="source" checked={source === "upload"} onChange={() => setSource("upload")} /> My data
            (uploaded, split into shards)
          </label>
          <label className="inline">
            <input type="radio" name="source" checked={source === "nodes"} onChange={() => setSource("nodes")} /> A dataset on
            the nodes (it never leaves them)
          </label>
        </fieldset>
        {source === "upload" ? (
          <label>
            Data (a table or JSON Lines is split into shards by rows, an archive by file)
            <input type="file" name="data" aria-describedby="data-error" />
            {fieldError("data")}
          </label>
        ) : (
          <>
            <label>
              Dataset
              <select name="dataset" aria-describedby="dataset-error">
                {(datasets ?? []).map((d) => (
                  <option key={d.name} value={d.name} disabled={d.usable_nodes === 0}>
                    {d.name} ({d.format}, {d.rows} rows on {d.nodes} nodes, {d.usable_nodes} yours to use)
                  </option>
                ))}
              </select>
              {datasets !== null && datasets.length === 0 && (
                <span className="muted">No online node holds a dataset yet (gridx-node dataset add NAME PATH).</span>
              )}
              {fieldError("dataset")}
            </label>
            {numberField("min_nodes", "Min nodes (a round waits for them)", base.min_nodes)}
            {numberField("max_nodes", "Max nodes per round", base.max_nodes)}
          </>
        )}
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
          <input name="name" placeholder="my-model" defaultValue={from ? base.name : ""} />
        </label>
        {numberField("rounds", "Rounds", base.rounds)}
        {source === "upload" && numberField("shards", "Shards (tasks per round)", base.shards)}
        {numberField("epochs", "Local epochs", base.epochs)}
        <label>
          Replicas (nodes per shard, of different owners)
          <select name="replicas" defaultValue={String(base.replicas)} aria-describedby="replicas-error">
            {["1", "2", "3", "4", "5"].map((n) => (
              <option key={n} value={n}>
                {n}
              </option>
            ))}
            <option value="adaptive">adaptive (checked until a node has earned trust)</option>
          </select>
          {fieldError("replicas")}
        </label>
        {source === "upload" && (
          <label>
            Mode
            <select name="mode" defaultValue={base.mode ?? "sync"} aria-describedby="mode-error">
              <option value="sync">sync (each round waits for its shards)</option>
              <option value="async">async (FedBuff: nothing waits; a step every buffer updates)</option>
            </select>
            {fieldError("mode")}
          </label>
        )}
        {source === "upload" && numberField("buffer", "Buffer (async: updates per server step)", base.buffer)}
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
            <input name={`param_${p}`} type="number" step="any" placeholder="default"
              defaultValue={strategy === baseStrategy.name ? (baseStrategy[p] ?? undefined) : undefined} />
            {fieldError(`param_${p}`)}
          </label>
        ))}
        {numberField("task_timeout_s", "Timeout per task (seconds)", base.task_timeout_s)}
        {numberField("max_attempts", "Tries of your code per shard and round", base.max_attempts)}
        {numberField("seed", "Seed", base.seed)}
        {source === "upload" && (
          <>
            <label>
              How the data is split
              <select name="partition" value={partition} onChange={(e) => setPartition(e.target.value)}>
                <option value="iid">iid (rows dealt at random)</option>
                <option value="by_column">by_column (one group per shard)</option>
                <option value="dirichlet">dirichlet (label skew)</option>
              </select>
              {fieldError("partition")}
            </label>
            {partition !== "iid" && (
              <label>
                Column
                <input name="partition_column" defaultValue={basePartition.column ?? ""} aria-describedby="partition.column-error" />
                {fieldError("partition.column")}
              </label>
            )}
            {partition === "dirichlet" && (
              <label>
                Alpha (smaller: more skew)
                <input name="partition_alpha" type="number" step="any" defaultValue={basePartition.alpha ?? undefined} />
                {fieldError("partition.alpha")}
              </label>
            )}
          </>
        )}
        <label>
          Starting model (a .pth or .safetensors; empty: train.py makes one)
          <input type="file" name="init_model" accept=".pth,.pt,.safetensors" aria-describedby="init_model-error" />
          {fieldError("init_model")}
        </label>
        <label>
          DP noise multiplier (empty: no differential privacy)
          <input name="dp_noise_multiplier" type="number" step="any" aria-describedby="dp_noise_multiplier-error" />
          {fieldError("dp_noise_multiplier")}
          {fieldError("dp")}
        </label>
        <label>
          DP clip norm
          <input name="dp_clip_norm" type="number" step="any" defaultValue={1} aria-describedby="dp_clip_norm-error" />
          {fieldError("dp_clip_norm")}
        </label>
        <label>
          DP budget (max epsilon)
          <input name="dp_max_epsilon" type="number" step="any" placeholder="none" aria-describedby="dp_max_epsilon-error" />
          {fieldError("dp_max_epsilon")}
        </label>
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
