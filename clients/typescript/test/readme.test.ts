// The README's TypeScript example is examples/quickstart.ts, and it runs against the stack.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { promisify } from "node:util";

import { need } from "./env.js";

const MARKER = "<!-- clients/typescript/examples/quickstart.ts -->";

test("the README's example is examples/quickstart.ts, and it runs", async () => {
  const readme = readFileSync("../../README.md", "utf8");
  const at = readme.indexOf(MARKER);
  assert.ok(at >= 0, `README.md has no ${MARKER}`);
  const block = /```ts\n([\s\S]*?)```/.exec(readme.slice(at))!;
  assert.equal(block[1], readFileSync("examples/quickstart.ts", "utf8"));

  const env = { ...process.env, QSCHED_ADDRESS: need("QSCHED_ADDRESS"), QSCHED_TOKEN: need("QSCHED_TEST_USER_TOKEN") };
  const { stdout } = await promisify(execFile)("node", ["dist/examples/quickstart.js"], { env, timeout: 60_000 });
  assert.match(stdout, /^JOB-\d{8}-\d{5} queued at position \d+$/m);
  assert.match(stdout, / SUCCEEDED /);
  assert.match(stdout, /pinned: \{ hardware_config: 'CFG-HW-/);
  assert.match(stdout, /^refused: JOB_NOT_FOUND$/m);
});
