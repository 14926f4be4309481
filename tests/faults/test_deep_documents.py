"""Documents nested thousands of levels deep are refused as INVALID_ARGUMENT, not UNKNOWN
(issue 18, defect 5); the parser's bound itself."""

from __future__ import annotations

import grpc
import pytest

from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched_core.json_bounds import MAX_DEPTH, TooDeep, loads_bounded
from tests.support.jobs import expect_error, lab_request


def nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def test_documents_up_to_the_bound_parse_and_deeper_ones_are_refused():
    assert loads_bounded(nested(MAX_DEPTH))
    with pytest.raises(TooDeep):
        loads_bounded(nested(MAX_DEPTH + 1))
    with pytest.raises(TooDeep):
        loads_bounded("[" * 100_000 + "]" * 100_000)  # beyond the interpreter's own recursion limit


async def test_a_deeply_nested_experiment_config_is_invalid_argument(scheduler):
    stub, _, _ = scheduler
    request = lab_request()
    request.payload.lab_experiment.expt_config_json = nested(5000)
    await expect_error(stub.SubmitJob(request), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_JSON")
    assert not (await stub.ListJobs(pb.ListJobsRequest())).jobs  # nothing was created
