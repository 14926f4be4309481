// @qsched/client: the TypeScript client of qsched's public gRPC API.
export * from "./client.js";
export * from "./credentials.js";
export * from "./errors.js";
export * from "./gen/qsched/jobs/v1/jobs_pb.js";
export type { DataSeries, RunPartialData } from "./gen/qsched/executor/v1/executor_pb.js";
