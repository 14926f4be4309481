"""Builds the scheduler service from its configuration."""

from __future__ import annotations

from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.api.jobs.v1 import jobs_pb2_grpc as pb_grpc
from qsched_runtime.config import ServiceConfig
from qsched_runtime.pagination import page_key
from qsched_runtime.server import Registration
from qsched_runtime.service import ServiceHandle
from qsched_scheduler import db
from qsched_scheduler.configs_client import GrpcConfigPinner
from qsched_scheduler.executor_client import GrpcLabExecutor
from qsched_scheduler.gateway_client import GrpcProviderGateway
from qsched_scheduler.scheduler import Scheduler
from qsched_scheduler.servicer import JobServicer
from qsched_scheduler.store.engine import make_engine, sqlite_url_for
from qsched_scheduler.store.sql import SqlJobStore


def database_url(config: ServiceConfig) -> str:
    return config.database_url or sqlite_url_for(config.data_dir)


async def build(config: ServiceConfig) -> ServiceHandle:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    url = database_url(config)
    db.upgrade(url)  # idempotent; a new data directory gets its schema here
    store = SqlJobStore(make_engine(url))
    executors = {name: GrpcLabExecutor(address) for name, address in config.devices().items()}
    pinner = GrpcConfigPinner(config.endpoints.configs) if config.pin_configs else None
    gateway = GrpcProviderGateway(config.endpoints.gateway)
    scheduler = Scheduler(
        store, executors, page_key(config.data_dir / "page-token.key"), pinner=pinner, gateway=gateway
    )
    name = pb.DESCRIPTOR.services_by_name["JobService"].full_name
    registration = Registration(
        name, lambda server: pb_grpc.add_JobServiceServicer_to_server(JobServicer(scheduler), server)
    )
    return ServiceHandle([registration], start=scheduler.start, stop=scheduler.stop)
