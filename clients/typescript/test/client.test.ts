// The TypeScript client against a real `qsched up` (tests/typescript starts it).
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { createConnection, createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

import { Code, Job_State, QschedClient, QschedError, findToken, logLines, type Update } from "../src/index.js";
import { BELL, RABI, need } from "./env.js";

const address = need("QSCHED_ADDRESS");
const user = () => QschedClient.connect({ address, token: need("QSCHED_TEST_USER_TOKEN") });
const operator = () => QschedClient.connect({ address, token: need("QSCHED_TEST_OPERATOR_TOKEN") });

test("the token is found as the Python SDK finds it: argument, $QSCHED_TOKEN, the token file", async () => {
  const dir = mkdtempSync(join(tmpdir(), "qsched-ts-"));
  writeFileSync(join(dir, "token"), `${need("QSCHED_TEST_USER_TOKEN")}\n`);
  const env = { QSCHED_CONFIG_DIR: dir };
  assert.equal(findToken(undefined, env), need("QSCHED_TEST_USER_TOKEN"));
  assert.equal(findToken(undefined, { ...env, QSCHED_TOKEN: " from-env " }), "from-env");
  assert.equal(findToken("explicit", { ...env, QSCHED_TOKEN: "from-env" }), "explicit");
  assert.equal(findToken(undefined, { QSCHED_TOKEN_FILE: join(dir, "missing") }), "");
  // connect() reads the same file when no token is given
  const saved = process.env.QSCHED_CONFIG_DIR;
  process.env.QSCHED_CONFIG_DIR = dir;
  try {
    await QschedClient.connect({ address }).queue("qick"); // refused without the token
    const other = QschedClient.connect({ address, token: "not-a-token" });
    await assert.rejects(other.queue("qick"), QschedError);
  } finally {
    process.env.QSCHED_CONFIG_DIR = saved;
  }
});

test("a call without a valid token is refused with the service's reason", async () => {
  const stranger = QschedClient.connect({ address, token: "not-a-token" });
  await assert.rejects(stranger.queue(), (error: unknown) => {
    assert.ok(error instanceof QschedError);
    assert.equal(error.code, Code.Unauthenticated);
    assert.ok(error.reason, `a reason in ${error.message}`);
    return true;
  });
});

test("a lab job: submit, follow to SUCCEEDED, resume by after_seq without repeats", async () => {
  const client = user();
  const job = await client.submitLabJob({ experiment: RABI, config: { reps: 50 }, labels: { from: "ts" } });
  assert.match(job.jobId, /^JOB-\d{8}-\d{5}$/);
  assert.equal(job.labels.from, "ts");

  const updates: Update[] = [];
  for await (const update of client.follow(job.jobId)) updates.push(update);
  assert.equal(updates[0].kind, "snapshot");
  const events = updates.flatMap((u) => (u.kind === "event" ? [u.event] : []));
  const seqs = events.map((e) => e.seq);
  assert.deepEqual(seqs, [...seqs].sort((a, b) => (a < b ? -1 : 1)));
  assert.equal(new Set(seqs).size, seqs.length);
  assert.equal(events.at(-1)!.state, Job_State.SUCCEEDED);

  // Resuming after the first event replays exactly the later ones.
  const first = events[0].seq;
  const replayed: bigint[] = [];
  for await (const update of client.follow(job.jobId, { afterSeq: first })) {
    if (update.kind === "event") replayed.push(update.event.seq);
  }
  assert.deepEqual(replayed, seqs.filter((s) => s > first));

  const done = await client.wait(job.jobId);
  assert.equal(done.state, Job_State.SUCCEEDED);
  assert.ok(done.currentRun!.taskId);
  assert.ok(Object.keys(done.currentRun!.configRevisions).includes("hardware_config"));
});

test("follow with partialData: log lines as events, partial data round by round", async () => {
  const client = user();
  const job = await client.submitLabJob({ experiment: RABI, config: { reps: 50, rounds: 4, expts: 21 } });
  const lines: string[] = [];
  const rounds: bigint[] = [];
  // afterSeq 1: everything after "queued" (the run may have started and logged already)
  for await (const update of client.follow(job.jobId, { afterSeq: 1n, partialData: true })) {
    lines.push(...logLines(update));
    if (update.kind === "partial") {
      rounds.push(update.partial.roundsDone);
      const names = update.partial.series.map((s) => s.name).sort();
      assert.deepEqual(names, ["avgi", "avgq", "xpts"]);
      assert.equal(update.partial.series[0].values.length, 21);
    }
  }
  assert.equal(lines[0], "AmplitudeRabiExperiment: 21 points x 50 reps x 4 round(s)");
  assert.ok(lines.some((line) => line.startsWith("fit: pi_gain")), lines.join("\n"));
  assert.ok(rounds.length >= 1 && rounds.every((r, i) => i === 0 || r > rounds[i - 1]), rounds.join(" "));
  assert.equal(rounds.at(-1), 4n);
  const kept = await client.jobs.getJobLog({ jobId: job.jobId });
  assert.deepEqual(kept.events.flatMap((e) => e.log?.lines ?? []), lines);
});

test("the queue in run order, cancel of one's own job, refusal of someone else's", async () => {
  const client = user();
  const boss = operator();
  await boss.jobs.pauseDevice({ name: "qick", reason: "ts client test" });
  try {
    const a = await client.submitLabJob({ experiment: RABI, config: { reps: 10 } });
    const b = await client.submitLabJob({ experiment: RABI, config: { reps: 10 }, priority: 5 });
    const queue = (await client.queue("qick")).filter((j) => j.state === Job_State.QUEUED);
    const ids = queue.map((j) => j.jobId);
    assert.ok(ids.indexOf(b.jobId) < ids.indexOf(a.jobId), "higher priority runs first");
    assert.equal(queue.find((j) => j.jobId === b.jobId)!.queuePosition, ids.indexOf(b.jobId) + 1);

    const stranger = QschedClient.connect({ address, token: need("QSCHED_TEST_OTHER_TOKEN") });
    await assert.rejects(stranger.cancel(a.jobId), (error: unknown) => {
      assert.ok(error instanceof QschedError);
      assert.equal(error.code, Code.PermissionDenied);
      return true;
    });
    assert.equal((await client.cancel(a.jobId, "ts test")).state, Job_State.CANCELLED);
    assert.equal((await client.cancel(b.jobId)).state, Job_State.CANCELLED);
  } finally {
    await boss.jobs.resumeDevice({ name: "qick" });
  }
});

test("the devices: the lab board and the provider devices", async () => {
  const devices = await user().devices();
  assert.ok(devices.some((d) => d.name === "qick" && d.kinds.length > 0));
  assert.ok(devices.some((d) => d.name === "local:aer_simulator"));
});

test("a circuit on the local simulator, its counts from GetJobResult", async () => {
  const client = user();
  const job = await client.submitCircuit({ device: "local:aer_simulator", qasm: [BELL], shots: 200 });
  const done = await client.wait(job.jobId);
  assert.equal(done.state, Job_State.SUCCEEDED, done.error?.message);
  const result = await client.jobs.getJobResult({ jobId: job.jobId });
  const counts = result.tasks[0].circuits[0].counts;
  const total = Object.values(counts).reduce((sum, n) => sum + Number(n), 0);
  assert.equal(total, 200);
  assert.deepEqual(Object.keys(counts).sort().filter((k) => k !== "00" && k !== "11"), []);
});

test("follow resumes after the connection drops: every event once, in order", async () => {
  // A TCP relay to the scheduler whose connections the test cuts mid-stream.
  const [host, port] = address.split(":");
  const open = new Set<Socket>();
  const relay = createServer((inbound) => {
    const outbound = createConnection(Number(port), host);
    open.add(inbound).add(outbound);
    inbound.pipe(outbound).pipe(inbound);
    const close = () => { inbound.destroy(); outbound.destroy(); open.delete(inbound); open.delete(outbound); };
    inbound.on("error", close).on("close", close);
    outbound.on("error", close).on("close", close);
  });
  await new Promise<void>((resolve) => relay.listen(0, "127.0.0.1", resolve));
  const relayed = `127.0.0.1:${(relay.address() as { port: number }).port}`;
  const boss = operator();
  await boss.jobs.pauseDevice({ name: "qick", reason: "ts resume test" });
  try {
    const client = QschedClient.connect({ address: relayed, token: need("QSCHED_TEST_USER_TOKEN") });
    const job = await client.submitLabJob({ experiment: RABI, config: { reps: 20 } });
    const updates: Update[] = [];
    for await (const update of client.follow(job.jobId)) {
      updates.push(update);
      if (updates.length === 1) {
        for (const socket of open) socket.destroy(); // the stream breaks while the job is queued
        await boss.jobs.resumeDevice({ name: "qick" });
      }
    }
    const snapshots = updates.filter((u) => u.kind === "snapshot");
    assert.ok(snapshots.length >= 2 && snapshots.slice(1).every((s) => s.kind === "snapshot" && s.resumed));
    const seqs = updates.flatMap((u) => (u.kind === "event" ? [Number(u.event.seq)] : []));
    const first = Number((snapshots[0] as { job: { lastSeq: bigint } }).job.lastSeq);
    assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => first + 1 + i));
    const last = updates.at(-1)!;
    assert.ok(last.kind === "event" && last.event.state === Job_State.SUCCEEDED);
  } finally {
    await boss.jobs.resumeDevice({ name: "qick" }).catch(() => undefined);
    relay.close();
    for (const socket of open) socket.destroy();
  }
});
