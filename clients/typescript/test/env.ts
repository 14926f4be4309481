// What tests/typescript/test_typescript.py passes to `node --test`: one `qsched up` stack for the run.
export function need(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run these tests through tests/typescript (make test)`);
  return value;
}

export const RABI = "qsched_hardware.experiments.AmplitudeRabiExperiment";
export const BELL =
  'OPENQASM 2.0; include "qelib1.inc"; qreg q[2]; creg c[2]; h q[0]; cx q[0],q[1]; measure q -> c;';
