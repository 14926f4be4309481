"""The web view's HTTP side (aiohttp): a login page, the board, a job page, server-sent events fed
from WatchQueue and WatchJob, and the actions (cancel, pause, drain, resume).

Sessions: the login page takes a qsched token and checks it with WhoAmI; the token stays in this
process, keyed by a random session id, and the browser holds only that id (an HttpOnly,
SameSite=Strict cookie). Every read and action is a gRPC call with the viewer's own token."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched_web import pages
from qsched_web.scheduler import Refused, Viewer, as_dict

log = logging.getLogger("qsched.web")
COOKIE = "qsched_session"
STATIC = Path(__file__).parent / "static"
HEARTBEAT_S = 15.0
SESSION_TTL_S = 12 * 3600.0  # then log in again (a lab screen: a working day)
# Device holds (pause, drain) have no stream in the public API: the server re-reads the devices
# this often while someone watches the board and pushes what changed. The page itself never polls.
DEVICE_RECHECK_S = 2.0
TERMINAL = {"STATE_SUCCEEDED", "STATE_FAILED", "STATE_CANCELLED"}
ACTIONS = ("pause", "drain", "resume")
# Live partial data: the latest per job being watched (older ones are dropped, never queued).
PARTIALS_KEPT = 64
APP_KEY = web.AppKey("qsched_web", object)


@dataclass
class Session:
    viewer: Viewer
    user: dict[str, Any]
    created: float = field(default_factory=time.monotonic)


class WebView:
    def __init__(self, scheduler_address: str, cache_dir: Path):
        self.scheduler_address = scheduler_address
        self.cache_dir = cache_dir
        self.sessions: dict[str, Session] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self.partials: OrderedDict[str, Any] = OrderedDict()  # job id -> its latest RunPartialData

    # -- sessions ---------------------------------------------------------------------------------------
    def session(self, request: web.Request) -> Session | None:
        sid = request.cookies.get(COOKIE, "")
        session = self.sessions.get(sid) if sid else None
        if session is not None and time.monotonic() - session.created > SESSION_TTL_S:
            del self.sessions[sid]
            self._closing.add(task := asyncio.create_task(session.viewer.close()))  # ends its streams
            task.add_done_callback(self._closing.discard)
            return None
        return session

    def need_session(self, request: web.Request, page: bool = False) -> Session:
        session = self.session(request)
        if session is None:
            if page:
                raise web.HTTPFound("/login")
            raise web.HTTPUnauthorized(text="log in first")
        return session

    async def close(self, _app: web.Application | None = None) -> None:
        for session in self.sessions.values():
            await session.viewer.close()
        self.sessions.clear()

    async def login_page(self, request: web.Request) -> web.Response:
        return web.Response(text=pages.login(), content_type="text/html")

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        token = str(form.get("token", "")).strip()
        if not token:
            return web.Response(text=pages.login("a token is needed"), content_type="text/html", status=400)
        viewer = Viewer(self.scheduler_address, token, self.cache_dir)
        try:
            user = (await viewer.who()).get("user", {})
        except Refused as refused:
            await viewer.close()
            log.info("login refused from %s: %s", request.remote, refused)
            return web.Response(text=pages.login(str(refused)), content_type="text/html", status=401)
        sid = secrets.token_urlsafe(32)
        self.sessions[sid] = Session(viewer, user)
        log.info("%s logged in from %s", user.get("name", "?"), request.remote)
        response = web.HTTPFound("/")
        response.set_cookie(
            COOKIE,
            sid,
            httponly=True,
            samesite="Strict",
            path="/",
            secure=request.secure,
            max_age=int(SESSION_TTL_S),
        )
        raise response

    async def logout(self, request: web.Request) -> web.Response:
        sid = request.cookies.get(COOKIE, "")
        session = self.sessions.pop(sid, None)
        if session is not None:
            await session.viewer.close()
        response = web.HTTPFound("/login")
        response.del_cookie(COOKIE, path="/")
        raise response

    # -- pages ------------------------------------------------------------------------------------------
    async def board_page(self, request: web.Request) -> web.Response:
        session = self.need_session(request, page=True)
        return web.Response(text=pages.board(session.user), content_type="text/html")

    async def job_page(self, request: web.Request) -> web.Response:
        session = self.need_session(request, page=True)
        job_id = request.match_info["job_id"]
        return web.Response(text=pages.job(session.user, job_id), content_type="text/html")

    async def plot(self, request: web.Request) -> web.Response:
        session = self.need_session(request)
        job_id = request.match_info["job_id"]
        if "partial" in request.query:  # the running run's latest partial data: drawn, not kept
            partial = self.partials.get(job_id)
            if partial is None:
                raise web.HTTPNotFound(text="no partial data of this job (yet, or any more)")
            title = f"{job_id} ({partial.rounds_done}/{partial.rounds_total} rounds)"
            try:
                png = await session.viewer.plot_partial(partial, title)
            except (ValueError, OSError) as exc:
                raise web.HTTPNotFound(text=f"no plot: {exc}") from None
            return web.Response(
                body=png,
                content_type="image/png",
                headers={"Cache-Control": "no-store", "X-Qsched-Rounds": str(partial.rounds_done)},
            )
        try:
            png = await session.viewer.plot(job_id, request.query.get("task", ""))
        except Refused as refused:
            raise web.HTTPNotFound(text=str(refused)) from None
        except (ValueError, OSError) as exc:  # no numeric dataset, unreadable file
            raise web.HTTPNotFound(text=f"no plot: {exc}") from None
        # A run's data file never changes once written: the browser may keep the image.
        return web.Response(
            body=png, content_type="image/png", headers={"Cache-Control": "private, max-age=3600"}
        )

    # -- actions: each a call with the viewer's token; a refusal is one line ----------------------------
    def _check_origin(self, request: web.Request) -> None:
        # Forms on other sites cannot set this header, so a cross-site POST never gets here.
        if request.headers.get("X-Qsched") != "1":
            raise web.HTTPForbidden(text="missing X-Qsched header")

    async def cancel(self, request: web.Request) -> web.Response:
        session = self.need_session(request)
        self._check_origin(request)
        try:
            job = await session.viewer.cancel(request.match_info["job_id"])
        except Refused as refused:
            return web.json_response({"error": str(refused)}, status=403)
        return web.json_response({"job": job})

    async def device_action(self, request: web.Request) -> web.Response:
        session = self.need_session(request)
        self._check_origin(request)
        action = request.match_info["action"]
        if action not in ACTIONS:
            raise web.HTTPNotFound()
        body = await request.json() if request.can_read_body else {}
        try:
            device = await session.viewer.device_action(
                request.match_info["name"], action, str(body.get("reason", "")) or "from the web view"
            )
        except Refused as refused:
            return web.json_response({"error": str(refused)}, status=403)
        return web.json_response({"device": device})

    # -- server-sent events ----------------------------------------------------------------------------
    async def board_events(self, request: web.Request) -> web.StreamResponse:
        """`devices` once, then `queue` {device, jobs} for each device on connect and after every change."""
        session = self.need_session(request)
        viewer = session.viewer
        stream = await _sse(request)
        changed: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        try:
            devices = await viewer.devices()
        except Refused as refused:
            await _send(stream, "refused", {"error": str(refused)})
            return stream
        await _send(stream, "devices", devices)
        # A live queue for the lab devices and every busy device; an idle provider device is only
        # listed until it gets a job (dozens of them: one stream each would be waste).
        followers: dict[str, asyncio.Task[None]] = {}

        async def follow(name: str) -> None:
            try:
                async for message in viewer.watch_queue(name):
                    stamp = _latest_time(message.change.job) if message.HasField("change") else ""
                    await changed.put((name, stamp))
            except Refused as refused:
                await changed.put(("", str(refused)))

        def watch(device: dict[str, Any]) -> None:
            name = device["name"]
            if name not in followers and (_is_lab(device) or _busy(device) or name in wanted):
                followers[name] = asyncio.create_task(follow(name))

        known = {d["name"]: d for d in devices}  # holds as last read; queue and running come live

        async def recheck() -> None:
            while True:
                await asyncio.sleep(DEVICE_RECHECK_S)
                with contextlib.suppress(Refused):
                    for device in await viewer.devices():
                        watch(device)
                        before = known.get(device["name"], {})
                        known[device["name"]] = device
                        if _hold(before) != _hold(device):
                            await changed.put((device["name"], ""))

        wanted = set(request.query.getall("device", []))
        for device in devices:
            watch(device)
        tasks = [asyncio.create_task(recheck())]
        try:
            while True:
                try:
                    async with asyncio.timeout(HEARTBEAT_S):
                        first = await changed.get()
                except TimeoutError:
                    await stream.write(b": keep-alive\n\n")
                    continue
                received = time.time()
                batch = [first]
                while not changed.empty():  # coalesce a burst of changes into one push per device
                    batch.append(changed.get_nowait())
                stamps: dict[str, str] = {}
                for name, stamp in batch:
                    if not name:
                        await _send(stream, "refused", {"error": stamp})
                    else:
                        stamps[name] = max(stamps.get(name, ""), stamp)
                for name, stamp in stamps.items():
                    try:
                        jobs = await viewer.queue(name)
                    except Refused as refused:
                        await _send(stream, "refused", {"error": str(refused)})
                        continue
                    running = [j["job_id"] for j in jobs if j.get("state") == "STATE_RUNNING"]
                    queued = sum(j.get("state") == "STATE_QUEUED" for j in jobs)
                    device = {
                        **known[name],
                        "running_job_id": running[0] if running else "",
                        "queued": queued,
                    }
                    update = {"device": device, "jobs": jobs, "event_time": stamp, "received_at": received}
                    await _send(stream, "queue", update)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            for task in [*tasks, *followers.values()]:
                task.cancel()
        return stream

    async def job_events(self, request: web.Request) -> web.StreamResponse:
        """`snapshot` (the job), then `event` per job event (SSE id = seq, so the browser's own
        reconnect resumes by after_seq), `record` for circuit and benchmark results, then `end`.
        Live output: the log lines written before the snapshot come as `event`s (without an id)
        right after it; `partial` says a new round's partial data can be drawn (plot.png?partial)."""
        session = self.need_session(request)
        viewer = session.viewer
        job_id = request.match_info["job_id"]
        after = request.headers.get("Last-Event-ID") or request.query.get("after_seq") or "0"
        after_seq = int(after) if after.isdigit() else 0
        stream = await _sse(request)
        job: dict[str, Any] = {}
        try:
            async for message in viewer.watch_job(job_id, after_seq, partial_data=True):
                if message.HasField("partial"):
                    partial = message.partial
                    self.partials[job_id] = partial
                    self.partials.move_to_end(job_id)
                    while len(self.partials) > PARTIALS_KEPT:
                        self.partials.popitem(last=False)
                    note = {
                        "task_id": partial.task_id,
                        "rounds_done": partial.rounds_done,
                        "rounds_total": partial.rounds_total,
                        "time": partial.time.ToJsonString(),
                        "received_at": time.time(),
                    }
                    await _send(stream, "partial", note)
                elif message.HasField("snapshot"):
                    job = as_dict(message.snapshot)
                    await _send(stream, "snapshot", job)
                    if not after_seq:  # the lines so far (up to the snapshot; later ones come live)
                        with contextlib.suppress(Refused):
                            for event in await viewer.job_log(job_id):
                                if event.seq <= message.snapshot.last_seq:
                                    await _send(stream, "event", as_dict(event))
                else:
                    event = as_dict(message.event)
                    event["received_at"] = time.time()  # splits the page's latency: upstream / here on
                    job = event.get("job", job)
                    await _send(stream, "event", event, event_id=str(message.event.seq))
            if job.get("kind") in ("JOB_KIND_CIRCUIT", "JOB_KIND_BENCHMARK") and job.get("state") in TERMINAL:
                with contextlib.suppress(Refused):
                    await _send(stream, "record", await viewer.result(job_id))
            await _send(stream, "end", {})
        except Refused as refused:
            await _send(stream, "refused", {"error": str(refused)})
            await _send(stream, "end", {})
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return stream


def _is_lab(device: dict[str, Any]) -> bool:
    return "JOB_KIND_LAB_EXPERIMENT" in device.get("kinds", [])


def _busy(device: dict[str, Any]) -> bool:
    return bool(device.get("queued") or device.get("running_job_id"))


def _hold(device: dict[str, Any]) -> tuple[Any, ...]:
    return (device.get("queue_state"), device.get("hold_reason"), device.get("held_by"))


def _latest_time(job: pb.Job) -> str:
    """The newest timestamp on a job (RFC 3339), to measure how late a change reaches the page."""
    times = [t for t in (job.create_time, job.start_time, job.end_time) if t.seconds or t.nanos]
    return max(times, key=lambda t: (t.seconds, t.nanos)).ToJsonString() if times else ""


async def _sse(request: web.Request) -> web.StreamResponse:
    stream = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    await stream.prepare(request)
    return stream


async def _send(stream: web.StreamResponse, kind: str, data: Any, event_id: str = "") -> None:
    head = f"id: {event_id}\n" if event_id else ""
    await stream.write(f"{head}event: {kind}\ndata: {json.dumps(data)}\n\n".encode())


def build_app(scheduler_address: str, cache_dir: Path, instance: str = "") -> web.Application:
    view = WebView(scheduler_address, cache_dir)

    @web.middleware
    async def headers(request: web.Request, handler: Any) -> web.StreamResponse:
        response = await handler(request)
        if instance:  # lets `qsched up` tell its own web view from another process on the port
            response.headers["X-Qsched-Instance"] = instance
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Content-Security-Policy", "default-src 'self'; img-src 'self' blob:")
        return response

    app = web.Application(middlewares=[headers])
    app[APP_KEY] = view
    app.on_cleanup.append(view.close)
    app.router.add_get("/login", view.login_page)
    app.router.add_post("/login", view.login)
    app.router.add_post("/logout", view.logout)
    app.router.add_get("/", view.board_page)
    app.router.add_get("/jobs/{job_id}", view.job_page)
    app.router.add_get("/jobs/{job_id}/plot.png", view.plot)
    app.router.add_get("/events/board", view.board_events)
    app.router.add_get("/events/jobs/{job_id}", view.job_events)
    app.router.add_post("/api/jobs/{job_id}/cancel", view.cancel)
    app.router.add_post("/api/devices/{name}/{action}", view.device_action)
    app.router.add_static("/static", STATIC)
    return app
