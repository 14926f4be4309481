// Submit a Rabi experiment, follow it live, read its fit, list the queue, handle a refusal.
import { Job_State, QschedClient, QschedError } from "@qsched/client";

// $QSCHED_ADDRESS (default 127.0.0.1:50051) and the token `qsched up` wrote (~/.config/qsched/token)
const client = QschedClient.connect();

const job = await client.submitLabJob({
  experiment: "qsched_hardware.experiments.AmplitudeRabiExperiment",
  config: { reps: 100 },
});
console.log(`${job.jobId} queued at position ${job.queuePosition}`);

// A snapshot, then every event until the job ends; a dropped stream resumes by after_seq.
for await (const update of client.follow(job.jobId)) {
  if (update.kind === "event") {
    const { seq, state, message, progress } = update.event;
    console.log(`#${seq} ${Job_State[state]} ${message} ${progress ? Math.round(progress * 100) + " %" : ""}`);
  }
}
const done = await client.getJob(job.jobId);
console.log("fit:", done.currentRun?.summary, "pinned:", done.currentRun?.configRevisions);

for (const queued of await client.queue("qick")) {
  console.log(queued.queuePosition, queued.jobId, queued.owner, Job_State[queued.state]);
}

try {
  await client.cancel("JOB-20200101-00001");
} catch (error) {
  if (!(error instanceof QschedError)) throw error;
  console.log(`refused: ${error.reason}`); // JOB_NOT_FOUND, the same reasons as the Python SDK
}
