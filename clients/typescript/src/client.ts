// A small typed layer over the generated JobService client: connect with a token, submit a lab job
// or circuits, follow a job (resuming by after_seq), cancel, list the queue.
import { create } from "@bufbuild/protobuf";
import { Code, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";

import {
  JobPayloadSchema,
  JobService,
  Job_State,
  ListView,
  type Device,
  type Job,
  type JobEvent,
} from "./gen/qsched/jobs/v1/jobs_pb.js";
import type { RunPartialData } from "./gen/qsched/executor/v1/executor_pb.js";
import { findToken, schedulerAddress, tlsFromEnv } from "./credentials.js";
import { QschedError } from "./errors.js";

export const TERMINAL: ReadonlySet<Job_State> = new Set([
  Job_State.SUCCEEDED,
  Job_State.FAILED,
  Job_State.CANCELLED,
]);

export interface ConnectOptions {
  /** host:port of the scheduler (default $QSCHED_ADDRESS, else 127.0.0.1:50051). */
  address?: string;
  /** Bearer token (default $QSCHED_TOKEN, $QSCHED_TOKEN_FILE, then <config dir>/token). */
  token?: string;
  /** Per-call timeout for unary calls, in milliseconds (default 30 s). */
  timeoutMs?: number;
}

export interface LabJob {
  /** "module.Class", e.g. "qsched_hardware.experiments.AmplitudeRabiExperiment". */
  experiment: string;
  /** The experiment config (expt_config), sent as JSON. */
  config?: Record<string, unknown>;
  device?: string;
  priority?: number;
  labels?: Record<string, string>;
  /** Config revisions to pin instead of main, by config type. */
  configRevisions?: Record<string, string>;
  requestId?: string;
}

export interface CircuitJob {
  /** A provider device, "<provider>:<device>", e.g. "local:aer_simulator". */
  device: string;
  /** OpenQASM 2 or 3, one source per circuit. */
  qasm: string[];
  shots: number;
  priority?: number;
  labels?: Record<string, string>;
  requestId?: string;
}

/**
 * One message of a followed job: a snapshot (`job`), an event, or (with `partialData`) the running
 * run's partial averaged data after a round. An event with `event.log` set carries log lines the
 * run wrote (`logLines(update)`); a partial is not sequenced and never replayed.
 */
export type Update =
  | { kind: "snapshot"; job: Job; resumed: boolean }
  | { kind: "event"; event: JobEvent }
  | { kind: "partial"; partial: RunPartialData };

/** The log lines of a log event (empty for any other update). */
export function logLines(update: Update): string[] {
  return update.kind === "event" && update.event.log ? update.event.log.lines : [];
}

// Codes after which a watch is simply called again (a read: always safe to repeat).
const RESUMABLE = new Set([Code.Unavailable, Code.Internal, Code.Unknown, Code.Aborted]);
const MAX_FAILURES_WITHOUT_PROGRESS = 8;

export class QschedClient {
  /** The generated client, for every RPC the typed layer does not wrap. */
  readonly jobs: Client<typeof JobService>;
  readonly address: string;
  private readonly timeoutMs: number;

  private constructor(address: string, jobs: Client<typeof JobService>, timeoutMs: number) {
    this.address = address;
    this.jobs = jobs;
    this.timeoutMs = timeoutMs;
  }

  /** A client of the scheduler; no call is made until the first method. */
  static connect(options: ConnectOptions = {}): QschedClient {
    const address = schedulerAddress(options.address);
    const token = findToken(options.token);
    const tls = tlsFromEnv();
    const bearer: Interceptor = (next) => (request) => {
      if (token) request.header.set("authorization", `Bearer ${token}`);
      return next(request);
    };
    const transport = createGrpcTransport({
      baseUrl: `${tls ? "https" : "http"}://${address}`,
      interceptors: [bearer],
      nodeOptions: tls ? { ca: tls.ca, cert: tls.cert, key: tls.key } : undefined,
    });
    return new QschedClient(address, createClient(JobService, transport), options.timeoutMs ?? 30_000);
  }

  private async call<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      throw QschedError.from(error);
    }
  }

  /** Queue a lab experiment; resolves to the queued job. */
  async submitLabJob(job: LabJob): Promise<Job> {
    const dot = job.experiment.lastIndexOf(".");
    const payload = create(JobPayloadSchema, {
      payload: {
        case: "labExperiment",
        value: {
          experimentModule: dot > 0 ? job.experiment.slice(0, dot) : "qsched_hardware.experiments",
          experimentClass: dot > 0 ? job.experiment.slice(dot + 1) : job.experiment,
          exptConfigJson: JSON.stringify(job.config ?? {}),
          configRevisions: job.configRevisions ?? {},
        },
      },
    });
    const response = await this.call(() =>
      this.jobs.submitJob(
        {
          device: job.device ?? process.env.QSCHED_DEVICE ?? "qick",
          payload,
          priority: job.priority ?? 0,
          labels: job.labels ?? {},
          requestId: job.requestId ?? "",
        },
        { timeoutMs: this.timeoutMs },
      ),
    );
    return response.job!;
  }

  /** Queue circuits for a provider device; resolves to the queued job. */
  async submitCircuit(job: CircuitJob): Promise<Job> {
    const payload = create(JobPayloadSchema, {
      payload: { case: "circuit", value: { qasm: job.qasm, shots: job.shots } },
    });
    const response = await this.call(() =>
      this.jobs.submitJob(
        {
          device: job.device,
          payload,
          priority: job.priority ?? 0,
          labels: job.labels ?? {},
          requestId: job.requestId ?? "",
        },
        { timeoutMs: this.timeoutMs },
      ),
    );
    return response.job!;
  }

  async getJob(jobId: string): Promise<Job> {
    return (await this.call(() => this.jobs.getJob({ jobId }, { timeoutMs: this.timeoutMs }))).job!;
  }

  /** Cancel a queued job (at once) or a running one (the executor stops it). */
  async cancel(jobId: string, reason = ""): Promise<Job> {
    const response = await this.call(() =>
      this.jobs.cancelJob({ jobId, reason }, { timeoutMs: this.timeoutMs }),
    );
    return response.job!;
  }

  /** Running and queued jobs in run order (every device, or one). */
  async queue(device = ""): Promise<Job[]> {
    const jobs: Job[] = [];
    let pageToken = "";
    do {
      const page = await this.call(() =>
        this.jobs.listJobs(
          { view: ListView.QUEUE, device, pageSize: 1000, pageToken },
          { timeoutMs: this.timeoutMs },
        ),
      );
      jobs.push(...page.jobs);
      pageToken = page.nextPageToken;
    } while (pageToken);
    return jobs;
  }

  async devices(): Promise<Device[]> {
    return (await this.call(() => this.jobs.listDevices({}, { timeoutMs: this.timeoutMs }))).devices;
  }

  /**
   * A job's snapshot, then its events in seq order until it is terminal. A dropped stream is
   * called again with after_seq = the last seq delivered: nothing is lost, nothing seen twice.
   * Pass `afterSeq` to resume a follow from an earlier process; `signal` stops it; `partialData`
   * also delivers the running run's partial averaged data after each round (kind "partial").
   */
  async *follow(
    jobId: string,
    options: { afterSeq?: bigint; signal?: AbortSignal; partialData?: boolean } = {},
  ): AsyncGenerator<Update> {
    let last = options.afterSeq ?? 0n;
    let failures = 0;
    let reconnects = 0;
    let connected = false;
    for (;;) {
      try {
        for await (const message of this.jobs.watchJob(
          { jobId, afterSeq: last, partialData: options.partialData ?? false },
          { signal: options.signal },
        )) {
          failures = 0;
          connected = true;
          if (message.message.case === "event") {
            const event = message.message.value;
            if (event.seq <= last) continue; // delivered before the reconnect
            last = event.seq;
            yield { kind: "event", event };
          } else if (message.message.case === "partial") {
            yield { kind: "partial", partial: message.message.value };
          } else if (message.message.case === "snapshot") {
            const job = message.message.value;
            if (last === 0n) last = job.lastSeq;
            yield { kind: "snapshot", job, resumed: reconnects > 0 };
          }
        }
        return;
      } catch (error) {
        const failure = QschedError.from(error);
        // A connection that drops under the stream surfaces as CANCELED (an HTTP/2 RST_STREAM):
        // resumable, unless the caller's own signal did the cancelling.
        const dropped = failure.code === Code.Canceled && !options.signal?.aborted;
        const resumable = RESUMABLE.has(failure.code) || dropped;
        if (!connected || !resumable || failures >= MAX_FAILURES_WITHOUT_PROGRESS) {
          throw failure;
        }
      }
      failures += 1;
      reconnects += 1;
      await new Promise((resolve) => setTimeout(resolve, Math.min(2000, 100 * 2 ** failures)));
    }
  }

  /** Follow a job until it is terminal; resolves to the job as it ended. */
  async wait(jobId: string, options: { signal?: AbortSignal } = {}): Promise<Job> {
    let job: Job | undefined;
    for await (const update of this.follow(jobId, options)) {
      if (update.kind === "snapshot") job = update.job;
      else if (update.kind === "event" && update.event.job) job = update.event.job;
    }
    if (job === undefined || !TERMINAL.has(job.state)) job = await this.getJob(jobId);
    return job;
  }
}
