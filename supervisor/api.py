"""The supervisor's HTTP API: health, readiness, metrics, fleet state and operator commands.

FastAPI serves it inside the supervisor's own event loop (uvicorn as a task). The app talks to
the rest of the supervisor only through the ``FleetControl`` Protocol, so it is tested with a
small fake and knows nothing of Docker or the TWS API.
"""

import asyncio
import contextlib
import hmac
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Annotated

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from supervisor import status_page
from supervisor.api_views import (
    Action,
    AlertView,
    ApplyRequest,
    ApplyResult,
    CancelRequest,
    CancelResult,
    CommandResult,
    EventView,
    FleetControl,
    GatewayView,
    Health,
    HeartbeatsView,
    KillRequest,
    KillResult,
    Problem,
    Readiness,
    ResumeRequest,
    RolloutView,
    ScheduleView,
    StatusView,
    StrategyCancelRequest,
    StrategyControl,
    StrategyView,
)

log = logging.getLogger("ibfleet.api")


#: Host names a browser may send for a loopback API; any IP literal is accepted too, since
#: DNS rebinding needs a name the attacker controls.
LOCAL_HOSTS = frozenset({"localhost", "localhost.", "ip6-localhost"})


def host_allowed(header: str, allowed: Iterable[str]) -> bool:
    """Whether a ``Host`` header names this API: an IP literal, localhost or a listed name."""
    host = header.strip().lower()
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    if not host:
        return False
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    return host in LOCAL_HOSTS or host in {a.strip().lower() for a in allowed}


def create_app(
    control: FleetControl,
    *,
    token: str | None,
    strategies: StrategyControl | None = None,
    docs: bool = False,
    allowed_hosts: Iterable[str] = (),
    problems: Callable[[], list[str]] | None = None,
    role: Callable[[], Health] | None = None,
) -> FastAPI:
    """The API app. POST endpoints need ``Authorization: Bearer <token>``; with no token
    configured they are refused, so an API reachable by others can never restart a gateway.

    A request whose ``Host`` is a name other than localhost or ``allowed_hosts`` is refused
    (DNS rebinding). ``/docs`` and ``/openapi.json`` exist only with ``docs``. Every failure is
    a 4xx, 409 or 503 with a reason; ``problems`` lists the supervisor's own (the journal's)
    and makes ``/readyz`` answer 503 while there are any. ``role`` says which role this
    supervisor holds on a shared journal (/healthz); only a leader is ready."""
    app = FastAPI(
        title="ibfleet supervisor API",
        version="1",
        description="Health, readiness, metrics, fleet state and operator commands.",
        responses={400: {"model": Problem}, 404: {"model": Problem}, 503: {"model": Problem}},
        docs_url="/docs" if docs else None,
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
    )
    bearer = HTTPBearer(auto_error=False)
    hosts = tuple(allowed_hosts)

    @app.middleware("http")
    async def _guard(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        header = request.headers.get("host")
        if header is not None and not host_allowed(header, hosts):
            log.warning("api_host_refused host=%r path=%s", header[:80], request.url.path)
            return JSONResponse(
                {"detail": "this Host is not served here (add it to api.allowed_hosts)"},
                status_code=421,
            )
        try:
            return await call_next(request)
        except (ValueError, ConnectionError) as exc:
            # A state that does not allow the command: resume or kill while the gateway is
            # down is a conflict with the fleet's state, not a fault of the supervisor.
            return JSONResponse({"detail": str(exc) or type(exc).__name__}, status_code=409)
        except Exception as exc:
            # Never a 500: a dependency is unavailable (gateway down, journal locked).
            log.warning("api_unavailable path=%s error=%s", request.url.path, type(exc).__name__)
            reason = str(exc) or type(exc).__name__
            return JSONResponse(
                {"detail": f"unavailable: {reason}"},
                status_code=503,
                headers={"Retry-After": "5"},
            )

    def find(name: str) -> GatewayView:
        for view in control.gateways():
            if view.name == name:
                return view
        known = ", ".join(v.name for v in control.gateways()) or "none"
        raise HTTPException(404, f"no gateway named {name!r} (known: {known})")

    def authorize(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        if token is None:
            raise HTTPException(403, "commands are disabled: set api.token in the fleet file")
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(credentials.credentials.encode(), token.encode()):
            raise HTTPException(401, "wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(HTTPException)
    async def _http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    @app.get("/healthz", summary="The supervisor itself is alive", response_model=Health)
    async def healthz() -> Health:
        return role() if role is not None else Health()

    @app.get(
        "/readyz",
        summary="Every gateway that should run is ready",
        response_model=Readiness,
        responses={503: {"model": Readiness}},
    )
    async def readyz() -> JSONResponse:
        not_ready = [v.name for v in control.gateways() if v.should_run and not v.ready]
        own = problems() if problems is not None else []
        held = role().role if role is not None else "leader"
        if held != "leader":
            own = [*own, held]
        ok = not not_ready and not own
        body = Readiness(ready=ok, not_ready=not_ready, problems=own)
        return JSONResponse(body.model_dump(), status_code=200 if ok else 503)

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        payload, content_type = control.metrics()
        return Response(payload, media_type=content_type)

    @app.get("/api/v1/gateways", response_model=list[GatewayView])
    async def list_gateways() -> list[GatewayView]:
        return control.gateways()

    @app.get("/api/v1/gateways/{name}", response_model=GatewayView)
    async def get_gateway(name: str) -> GatewayView:
        return find(name)

    @app.get("/api/v1/events", response_model=list[EventView])
    async def list_events(
        since_id: Annotated[
            int | None, Query(ge=0, le=2**63 - 1, description="Events after this id.")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        gateway: Annotated[str | None, Query(description="Only this gateway's events.")] = None,
    ) -> list[EventView]:
        if gateway is not None:
            find(gateway)
        return await control.events(since_id=since_id, limit=limit, gateway=gateway)

    # -- the status page and the reads behind it (GETs: public, like every read) ----------

    pages = status_page.Assets.load()

    @app.middleware("http")
    async def _security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        for header, value in status_page.SECURITY_HEADERS.items():
            response.headers.setdefault(header, value)
        if not (docs and request.url.path.startswith("/docs")):
            # The interactive docs load their own script; everything else is served by ibfleet.
            response.headers.setdefault("Content-Security-Policy", status_page.CSP)
        return response

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        return pages.response("index.html")

    @app.get("/assets/{asset}", include_in_schema=False)
    async def asset(asset: str) -> Response:
        if asset not in pages.names():
            raise HTTPException(404, f"no asset named {asset!r}")
        return pages.response(asset)

    def heartbeats_of(name: str) -> HeartbeatsView:
        find(name)
        return control.heartbeats(name)

    @app.get("/api/v1/gateways/{name}/heartbeats", response_model=HeartbeatsView)
    async def get_heartbeats(name: str) -> HeartbeatsView:
        return heartbeats_of(name)

    @app.get("/api/v1/alerts", response_model=list[AlertView])
    async def list_alerts() -> list[AlertView]:
        return control.alerts()

    @app.get("/api/v1/schedule", response_model=ScheduleView)
    async def get_schedule() -> ScheduleView:
        return control.schedule()

    @app.get("/api/v1/status", response_model=StatusView)
    async def get_status() -> StatusView:
        views = control.gateways()
        schedule = control.schedule()
        return StatusView(
            at=schedule.at,
            gateways=views,
            heartbeats=[control.heartbeats(v.name) for v in views],
            alerts=control.alerts(),
            schedule=schedule,
            strategies=strategies.strategies() if strategies is not None else None,
        )

    @app.post(
        "/api/v1/gateways/{name}/{action}",
        response_model=CommandResult,
        responses={401: {"model": Problem}, 403: {"model": Problem}, 409: {"model": Problem}},
        dependencies=[Depends(authorize)],
    )
    async def command(name: str, action: Action) -> CommandResult:
        find(name)
        result = await control.command(name, action)
        log.info(
            "api_command gateway=%s action=%s accepted=%s", name, action.value, result.accepted
        )
        if not result.accepted:
            raise HTTPException(409, result.detail)
        return result

    @app.get("/api/v1/rollout", response_model=RolloutView)
    async def get_rollout() -> RolloutView:
        return control.rollout()

    @app.post(
        "/api/v1/rollout/apply",
        response_model=ApplyResult,
        responses={401: {"model": Problem}, 403: {"model": Problem}, 409: {"model": Problem}},
        dependencies=[Depends(authorize)],
    )
    async def apply(body: ApplyRequest | None = None) -> ApplyResult:
        body = body or ApplyRequest()
        for name in body.gateways:
            find(name)
        try:
            result = await control.apply(body)
        except ValueError as exc:
            raise HTTPException(409, str(exc)) from None
        log.info("api_apply gateways=%s now=%s", ",".join(body.gateways) or "*", body.now)
        return result

    def strategy_host() -> StrategyControl:
        if strategies is None:
            raise HTTPException(404, "no strategies are configured in the fleet file")
        return strategies

    def find_strategy(name: str) -> None:
        known = [s.name for s in strategy_host().strategies()]
        if name not in known:
            raise HTTPException(
                404, f"no strategy named {name!r} (known: {', '.join(known) or 'none'})"
            )

    @app.get("/api/v1/strategies", response_model=list[StrategyView])
    async def list_strategies() -> list[StrategyView]:
        return strategy_host().strategies()

    @app.post(
        "/api/v1/strategies/{name}/halt",
        response_model=StrategyView,
        dependencies=[Depends(authorize)],
    )
    async def halt(name: str) -> StrategyView:
        find_strategy(name)
        log.info("api_strategy_halt strategy=%s", name)
        return await strategy_host().halt(name)

    @app.post(
        "/api/v1/strategies/{name}/resume",
        response_model=StrategyView,
        dependencies=[Depends(authorize)],
    )
    async def resume(name: str, body: ResumeRequest | None = None) -> StrategyView:
        find_strategy(name)
        log.info("api_strategy_resume strategy=%s", name)
        try:
            return await strategy_host().resume(name, gateway=body.gateway if body else None)
        except ValueError as exc:
            raise HTTPException(409, str(exc)) from None

    @app.post("/api/v1/kill", response_model=KillResult, dependencies=[Depends(authorize)])
    async def kill(body: KillRequest) -> KillResult:
        if body.strategy is not None:
            find_strategy(body.strategy)
        log.warning("api_kill strategy=%s flatten=%s", body.strategy or "*", body.flatten)
        runs = await strategy_host().kill(body.strategy, flatten=body.flatten)
        return KillResult(runs=runs)

    async def cancel_by(
        name: str | None, symbol: str | None, *, account: bool, dry_run: bool
    ) -> CancelResult:
        log.warning(
            "api_cancel strategy=%s symbol=%s all_orders_on_account=%s dry_run=%s",
            name or "*",
            symbol or "*",
            account,
            dry_run,
        )
        runs = await strategy_host().cancel(
            name, symbol=symbol, all_orders_on_account=account, dry_run=dry_run
        )
        if runs and not any(run.get("ok") for run in runs):
            # Not one strategy (or account) could reach IB: the fleet's state, not a fault.
            reasons = "; ".join(str(run.get("detail") or "failed") for run in runs)
            raise HTTPException(409, f"nothing was cancelled: {reasons}")
        return CancelResult(runs=runs)

    @app.post(
        "/api/v1/strategies/{name}/cancel",
        response_model=CancelResult,
        responses={409: {"model": Problem}},
        dependencies=[Depends(authorize)],
    )
    async def cancel_strategy(name: str, body: StrategyCancelRequest | None = None) -> CancelResult:
        find_strategy(name)
        body = body or StrategyCancelRequest()
        return await cancel_by(name, body.symbol, account=False, dry_run=body.dry_run)

    @app.post(
        "/api/v1/cancel",
        response_model=CancelResult,
        responses={409: {"model": Problem}},
        dependencies=[Depends(authorize)],
    )
    async def cancel(body: CancelRequest) -> CancelResult:
        if body.strategy is not None:
            if body.all_orders_on_account:
                raise HTTPException(
                    400, "all_orders_on_account cancels every order on the account: no strategy"
                )
            find_strategy(body.strategy)
        return await cancel_by(
            body.strategy, body.symbol, account=body.all_orders_on_account, dry_run=body.dry_run
        )

    return app


class _InLoopServer(uvicorn.Server):
    """uvicorn without its signal handlers: the supervisor owns SIGTERM and SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ApiError(RuntimeError):
    """The API could not start (for example, its port is taken)."""


class ApiServer:
    """uvicorn running the app as a task of the supervisor's loop (no threads, no signals)."""

    def __init__(self, app: FastAPI, *, host: str, port: int) -> None:
        config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", access_log=False, lifespan="off"
        )
        self._host, self._port = host, port
        self._socket: socket.socket | None = None
        self._server = _InLoopServer(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self, *, deadline: float = 10.0) -> None:
        # Bind here rather than in uvicorn, which exits the process on a bind error.
        try:
            infos = socket.getaddrinfo(
                self._host, self._port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
            family, kind, proto, _, address = infos[0]
            sock = socket.socket(family, kind, proto)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(128)
            sock.setblocking(False)
        except OSError as exc:
            raise ApiError(
                f"the HTTP API cannot listen on {self._host}:{self._port}: {exc.strerror or exc}"
            ) from None
        self._socket = sock
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="ibfleet-api")
        loop = asyncio.get_running_loop()
        until = loop.time() + deadline
        while not self._server.started:
            if self._task.done():
                raise ApiError(f"the HTTP API on {self._host}:{self._port} stopped at start")
            if loop.time() > until:
                raise ApiError(f"the HTTP API did not start within {deadline:.0f}s")
            await asyncio.sleep(0.01)

    @property
    def port(self) -> int:
        """The bound port (useful when configured as 0)."""
        if self._socket is None:
            raise ApiError("the HTTP API is not listening")
        return int(self._socket.getsockname()[1])

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        await self._task
        self._task = None
