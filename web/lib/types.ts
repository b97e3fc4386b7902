// The API's types, generated from web/openapi.json (`npm run types`, part of `npm run build`,
// writes lib/api.gen.ts). web/openapi.json is written from the coordinator by `just api-types`,
// and a test fails when it is stale: these types always match what the API answers.
import type { components } from "./api.gen";

type Schemas = components["schemas"];

/** A response as it arrives: every field is present (defaults included), nested too. */
type Wire<T> = T extends (infer U)[] ? Wire<U>[] : T extends object ? { [K in keyof T]-?: Wire<T[K]> } : T;

export type AttemptInfo = Wire<Schemas["AttemptInfo"]>;
export type TaskInfo = Wire<Schemas["TaskInfo"]>;
export type RoundInfo = Wire<Schemas["RoundInfo"]>;
export type JobSummary = Wire<Schemas["JobSummary"]>;
export type JobDetail = Wire<Schemas["JobDetail"]>;
export type NodeInfo = Wire<Schemas["NodeInfo"]>;
/** A dataset a node declared: names and counts, never the data. */
export type DatasetInfo = Wire<Schemas["DatasetInfo"]>;
/** A dataset name as the fleet's online nodes hold it (GET /datasets). */
export type DatasetSummary = Wire<Schemas["DatasetSummary"]>;
export type Overview = Wire<Schemas["Overview"]>;
export type Contributor = Wire<Schemas["Contributor"]>;
export type UserInfo = Wire<Schemas["UserInfo"]>;
export type FleetSample = Wire<Schemas["FleetSample"]>;
export type JobConfig = Schemas["JobConfig"];

/** The round index of a job's initialisation step (the API counts rounds from 0). */
export const INIT_ROUND = -1;
