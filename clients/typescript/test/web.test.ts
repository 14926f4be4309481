// The web view in headless Chromium (Debian's chromium, driven by playwright-core): log in, watch a
// job go from queued to succeeded without a reload, see its plot grow round by round and its log
// lines, cancel another job, be refused pausing a device as a non-operator. Screenshots go to
// $QSCHED_TEST_ARTIFACTS.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { chromium, type Page } from "playwright-core";

import { Job_State, QschedClient } from "../src/index.js";
import { BELL, RABI, need } from "./env.js";

const CHROMIUM = process.env.QSCHED_TEST_CHROMIUM || "/usr/bin/chromium";
const ROUNDS = 40; // ~0.1 s each on the simulated board: several live plots fit in
const skip = existsSync(CHROMIUM)
  ? false
  : `no Chromium at ${CHROMIUM} (the Makefile installs Debian's chromium; apt-get could not here)`;

test("the web view, live, as a person without the operator role", { skip, timeout: 120_000 }, async (t) => {
  const web = need("QSCHED_WEB_URL");
  const artifacts = need("QSCHED_TEST_ARTIFACTS");
  const address = need("QSCHED_ADDRESS");
  const viewerToken = need("QSCHED_TEST_USER_TOKEN");
  const viewer = QschedClient.connect({ address, token: viewerToken });
  const boss = QschedClient.connect({ address, token: need("QSCHED_TEST_OPERATOR_TOKEN") });

  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  const shot = (page: Page, name: string) => page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
  try {
    const page = await browser.newPage();
    page.setDefaultTimeout(60_000); // a cold gateway answers the board's first ListDevices slowly
    const console: string[] = [];
    page.on("console", (message) => console.push(message.text()));

    // The login page takes the token; the browser keeps only the session cookie.
    await page.goto(`${web}/login`);
    await page.fill("input[name=token]", viewerToken);
    await Promise.all([page.waitForURL(`${web}/`), page.click("button[type=submit]")]);
    const cookies = await page.context().cookies();
    assert.deepEqual(cookies.map((c) => c.name), ["qsched_session"]);
    assert.ok(cookies[0].httpOnly);
    assert.ok(!cookies[0].value.includes(viewerToken));
    assert.deepEqual(await page.evaluate(() => [localStorage.length, sessionStorage.length]), [0, 0]);
    assert.equal(await page.locator("#who").textContent(), "ts-user");

    // A held device: the job waits in the queue, on the board, with its position.
    await boss.jobs.pauseDevice({ name: "qick", reason: "web test" });
    // Several averaging rounds: the job page redraws the plot as each one arrives.
    const job = await viewer.submitLabJob({ experiment: RABI, config: { reps: 200, rounds: ROUNDS } });
    const row = page.locator(`#device-qick tr[data-job="${job.jobId}"]`);
    await row.waitFor();
    assert.equal(await row.getAttribute("data-state"), "queued");
    await page.locator("#device-qick .badge[data-state=paused]").waitFor();
    await shot(page, "1-board-queued");

    // The job page follows it from queued to succeeded with no reload.
    await page.goto(`${web}/jobs/${job.jobId}`);
    await page.locator("body[data-state=queued]").waitFor();
    await page.evaluate(() => ((window as unknown as { marker: number }).marker = 1));
    await boss.jobs.resumeDevice({ name: "qick" });
    await page.locator("body[data-state=running], body[data-state=succeeded]").waitFor();
    // A live plot of the rounds so far (drawn from the partial data, the figure `qsched plot` draws).
    await page.locator("#plot[data-rounds]").waitFor({ state: "attached" });
    await shot(page, "2a-job-live-plot");
    await page.waitForFunction(() => {
      const w = window as unknown as { qschedPartialsDrawn: number[] };
      return w.qschedPartialsDrawn.length >= 2 || document.body.dataset.state === "succeeded";
    });
    await shot(page, "2b-job-live-plot-more-rounds");
    await page.locator("body[data-state=succeeded]").waitFor({ timeout: 60_000 });
    assert.equal(await page.evaluate(() => (window as unknown as { marker: number }).marker), 1, "no reload");
    const states = await page.locator("#events li").evaluateAll((items) => items.map((i) => i.getAttribute("data-state")));
    assert.ok(states.includes("running") && states.at(-1) === "succeeded", states.join(" "));
    await page.locator("#revisions dt", { hasText: "hardware_config" }).waitFor();
    await page.locator("#plot[data-rounds=final]").waitFor(); // the data file's plot, loaded
    assert.ok(await page.locator("#plot").evaluate((img) => (img as HTMLImageElement).naturalWidth > 0));
    // The plot grew round by round: live plots of more and more rounds, then the data file's.
    const drawn = await page.evaluate(() => (window as unknown as { qschedPartialsDrawn: number[] }).qschedPartialsDrawn);
    t.diagnostic(`live plots drawn, by rounds averaged: ${drawn.join(" ")}`);
    assert.ok(drawn.length >= 2, `at least two live plots, got rounds ${drawn.join(" ")}`);
    assert.ok(drawn.every((r, i) => i === 0 || r > drawn[i - 1]) && drawn.at(-1)! <= ROUNDS, drawn.join(" "));
    // Its log lines, as the experiment wrote them.
    await page.locator("#log div", { hasText: `AmplitudeRabiExperiment: 101 points x 200 reps x ${ROUNDS} round(s)` }).waitFor();
    await page.locator("#log div", { hasText: "fit: pi_gain" }).waitFor();
    await shot(page, "2-job-succeeded");

    // A circuit job's page shows its record (the counts of each provider task).
    const circuit = await viewer.submitCircuit({ device: "local:aer_simulator", qasm: [BELL], shots: 100 });
    assert.equal((await viewer.wait(circuit.jobId)).state, Job_State.SUCCEEDED);
    await page.goto(`${web}/jobs/${circuit.jobId}`);
    await page.locator("#record-section:not([hidden])").waitFor();
    const record = JSON.parse((await page.locator("#record").textContent()) ?? "{}");
    const counts = record.tasks[0].circuits[0].counts as Record<string, string>;
    assert.equal(Object.values(counts).reduce((sum, n) => sum + Number(n), 0), 100);
    await shot(page, "3-circuit-record");

    // Cancel another of one's own jobs from the board.
    await boss.jobs.pauseDevice({ name: "qick", reason: "web test" });
    const other = await viewer.submitLabJob({ experiment: RABI, config: { reps: 10 } });
    await page.goto(`${web}/`);
    const otherRow = page.locator(`#device-qick tr[data-job="${other.jobId}"]`);
    await otherRow.waitFor();
    await otherRow.locator("button.cancel").click();
    await otherRow.waitFor({ state: "detached" });
    assert.equal((await viewer.getJob(other.jobId)).state, Job_State.CANCELLED);

    // Pausing needs the operator role: the scheduler refuses, the page says so in one line.
    await page.locator("#device-qick button.action-resume").click();
    await page.locator("#notice:not([hidden])").waitFor();
    const refusal = (await page.locator("#notice").textContent()) ?? "";
    assert.match(refusal, /^PERMISSION_DENIED MISSING_ROLE: /);
    assert.ok(!refusal.includes("\n"));
    await page.locator("#device-qick button.action-pause").click();
    await page.locator("#notice", { hasText: "PERMISSION_DENIED" }).waitFor();
    await shot(page, "4-refused");

    // An operator may: their Resume opens the device again, on every open board.
    const operatorPage = await (await browser.newContext()).newPage();
    operatorPage.setDefaultTimeout(60_000);
    await operatorPage.goto(`${web}/login`);
    await operatorPage.fill("input[name=token]", need("QSCHED_TEST_OPERATOR_TOKEN"));
    await Promise.all([operatorPage.waitForURL(`${web}/`), operatorPage.click("button[type=submit]")]);
    await operatorPage.locator("#device-qick .badge[data-state=paused]").waitFor();
    await operatorPage.locator("#device-qick button.action-resume").click();
    await operatorPage.locator("#device-qick .badge:not([data-state=paused])").waitFor();
    await page.locator("#device-qick .badge:not([data-state=paused])").waitFor();
    assert.equal(await operatorPage.locator("#notice").isHidden(), true);
    await shot(operatorPage, "5-operator-resumed");

    const latencies = console.filter((line) => line.startsWith("qsched-latency"));
    t.diagnostic(`live updates, ms after the scheduler's event: ${latencies.join("; ")}`);
    globalThis.console.log(`web view latencies: ${latencies.join("; ")}`);
  } finally {
    await boss.jobs.resumeDevice({ name: "qick" }).catch(() => undefined);
    await browser.close();
  }
});

test("the web view without a session: login first, bad tokens refused, no cross-site actions", async () => {
  const web = need("QSCHED_WEB_URL");
  const board = await fetch(`${web}/`, { redirect: "manual" });
  assert.equal(board.status, 302);
  assert.equal(board.headers.get("location"), "/login");
  assert.equal((await fetch(`${web}/events/board`)).status, 401);

  const refused = await fetch(`${web}/login`, { method: "POST", body: new URLSearchParams({ token: "nope" }) });
  assert.equal(refused.status, 401);
  assert.match(await refused.text(), /<p class="refused">UNAUTHENTICATED [A-Z_]+: [^<\n]+<\/p>/);
  assert.equal(refused.headers.get("set-cookie"), null);

  const login = await fetch(`${web}/login`, {
    method: "POST",
    body: new URLSearchParams({ token: need("QSCHED_TEST_USER_TOKEN") }),
    redirect: "manual",
  });
  assert.equal(login.status, 302);
  const cookie = login.headers.get("set-cookie")!.split(";")[0];
  // A form on another site cannot add the header every action of the page sends.
  const forged = await fetch(`${web}/api/devices/qick/pause`, { method: "POST", headers: { cookie } });
  assert.equal(forged.status, 403);
});
