// The coordinator's JSON, as the dashboard reads it (see schemas/ in the repository).

export interface AttemptInfo {
  attempt: number;
  node_id: string;
  started_at: number;
  finished_at: number | null;
  outcome: string | null;
  error_code: string | null;
  error: string | null;
  stderr_tail: string | null;
}

export interface TaskInfo {
  id: string;
  round: number;
  shard: number;
  status: string;
  node_id: string | null;
  /** The display name of that node. */
  node_name?: string | null;
  attempts: number;
  max_attempts: number;
  losses: number;
  max_losses: number;
  copy: number;
  verdict: "agreed" | "disagreed" | null;
  rows: number;
  metrics: Record<string, number> | null;
  error_code: string | null;
  error: string | null;
  history: AttemptInfo[];
  /** evaluate: the held-out evaluation of its round's model. */
  kind: "train" | "evaluate";
}

export interface RoundInfo {
  /** -1: the initialisation step (INIT_ROUND), then rounds from 0. */
  index: number;
  status: string;
  metrics: Record<string, number> | null;
  summed_metrics: string[];
  /** The job's evaluation script on its test data with this round's model. */
  held_out: Record<string, number> | null;
  started_at: number;
  finished_at: number | null;
  /** Differentially private jobs: epsilon spent up to and including this round. */
  epsilon?: number | null;
  /** Names of the nodes whose updates the round merged. */
  nodes?: string[];
}

export const INIT_ROUND = -1;

export interface JobSummary {
  id: string;
  name: string;
  owner: string;
  status: string;
  current_round: number;
  rounds: number;
  shards: number;
  tasks_done: number;
  tasks_total: number;
  error: string | null;
  created_at: number;
  updated_at: number;
}

export interface JobDetail {
  job: JobSummary;
  config: Record<string, unknown> & { strategy: Record<string, unknown> };
  final_model_sha256: string | null;
  /** Differentially private jobs: the delta every epsilon is reported at. */
  delta?: number | null;
  rounds: RoundInfo[];
  tasks: TaskInfo[];
}

export interface NodeInfo {
  id: string;
  name: string;
  owner: string;
  status: string;
  capabilities: {
    arch: string;
    cpus: number;
    memory_mb: number;
    executors: string[];
    isolation: string;
    docker: boolean;
    gpus: number;
  };
  last_seen: number;
  tasks_done: number;
  reputation: number;
  disagreed: number;
  datasets?: DatasetInfo[];
}

/** A dataset a node declared: names and counts, never the data. */
export interface DatasetInfo {
  name: string;
  format: string;
  columns: string[];
  rows: number;
  description: string;
  allow_users: string[];
}

/** A dataset name as the fleet's online nodes hold it (GET /datasets). */
export interface DatasetSummary {
  name: string;
  format: string;
  columns: string[];
  rows: number;
  nodes: number;
  usable_nodes: number;
  description: string;
}

export interface Overview {
  nodes_online: number;
  nodes_offline: number;
  jobs_by_status: Record<string, number>;
  tasks_running: number;
  tasks_queued: number;
  tasks_per_minute: number;
}

export interface Contributor {
  owner: string;
  nodes: number;
  tasks_done: number;
  compute_s: number;
  credit: number;
}

export interface UserInfo {
  id: number;
  email: string;
  role: string;
}
