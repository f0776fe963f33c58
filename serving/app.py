"""The Ray Serve application: FastAPI ingress around the plain `Predictor`.

    POST /predict        {"instances": [[float, ...], ...]} -> {"predictions": [int], "model_version": "N"}
    GET  /healthz        -> {"status": "ok"|"degraded", "model_version", "last_error", "replica"}
    GET  /model          -> {"name", "version", "alias", "parent_version", "excluded_requests",
                             "champion", "replicas", "all_replicas"}
    POST /model/refresh  (token) check the champion alias now instead of at the next poll
    POST /deletions      (token) {"subject_id": "..."} | {"sample_ids": [...]} -> 202 {"request_id", "status"}
    GET  /deletions/{id} (token) -> {"request_id", "status", "model_version", ...}

Hot swap: every replica polls the MLflow `champion` alias (and is told at once through
/model/refresh); a new version is loaded and validated in a background thread, then
swapped by one reference. A version that fails is never served; /healthz and the logs
say why. Each replica reports what it serves to a small named actor (`serving.board`),
so /model can tell when *every* replica Serve runs serves the new version: the nightly
batch purges only then.
"""


import asyncio
import hashlib
import hmac
import logging
import threading
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ray import serve
from sqlalchemy.exc import SQLAlchemyError

from pipeline.ops.ledger import MAX_ID_LENGTH, MAX_IDS_PER_REQUEST, MAX_KEY_LENGTH, MAX_REASON_LENGTH
from serving.board import every_replica_serves, get_board, replica_versions
from serving.predictor import BadInstances, Predictor, RejectedModel, read_json

log = logging.getLogger("ray.serve")
MAX_BODY_BYTES = 8 * 1024 * 1024  # 1024 instances x 784 floats as JSON is ~6 MB
MAX_DELETION_BODY_BYTES = 1024 * 1024
RETRY_MAX_S = 300.0  # a version that failed to load is retried, backing off to once per 5 min

api = FastAPI(title="ray-unlearn", description="Predictions from the champion model, and deletion intake.")


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


@api.exception_handler(RequestValidationError)
async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {}
    return error(422, f"{'.'.join(map(str, first.get('loc', [])))}: {first.get('msg', 'invalid request')}")


class DeletionBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    subject_id: str | None = Field(default=None, min_length=1, max_length=MAX_ID_LENGTH)
    sample_ids: list[str] | None = Field(default=None, min_length=1, max_length=MAX_IDS_PER_REQUEST)
    reason: str | None = Field(default=None, max_length=MAX_REASON_LENGTH)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=MAX_KEY_LENGTH)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it is known to pass `limit` bytes (by Content-Length,
    else while it streams in), without ever holding more than `limit` of it. The rest is
    read and dropped, not left unread: a server that answers mid-upload resets the
    connection, and the client would see a reset instead of the 413 that says why."""
    declared = request.headers.get("content-length")
    too_big = declared is not None and declared.isdigit() and int(declared) > limit
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            too_big = True
        if not too_big:
            chunks.append(chunk)
        else:
            chunks.clear()  # drained, never held
    if too_big:
        raise ValueError(f"body is {declared if declared and declared.isdigit() else 'more than ' + str(limit)} "
                         f"bytes; at most {limit}")
    return b"".join(chunks)


@serve.deployment(name="model", max_ongoing_requests=64, health_check_period_s=2.0)
@serve.ingress(api)
class ModelServer:
    def __init__(self, settings: dict[str, Any]):
        from pipeline.ops.ledger import Ledger
        from pipeline.ops.registry import Registry

        self.settings = settings
        try:  # Serve's own id for this replica: the board is checked against Serve's list of them
            self.replica = serve.get_replica_context().replica_id.unique_id
        except Exception:  # constructed outside Serve (a unit test)
            self.replica = uuid.uuid4().hex[:8]
        self.registry = Registry(settings["tracking_uri"], settings["model_name"], settings["artifacts"])
        self.ledger = Ledger(settings["ledger_url"])
        self.token_sha256 = settings["token_sha256"]
        self.predictor = Predictor(max_instances=settings.get("max_instances", 1024))
        self._predict_batch.set_max_batch_size(settings.get("max_batch_size", 32))
        self.info: dict[str, Any] = {}
        self.board = get_board()
        self._wake = threading.Event()
        version = self.registry.champion()
        if version is None:
            raise RuntimeError("no champion version registered: run `unlearn init` first")
        self._start_with(version)  # serve nothing until a version is loaded
        threading.Thread(target=self._watch, daemon=True, name="champion-watcher").start()

    def _start_with(self, champion: int) -> None:
        """Load the champion, retrying a transient failure; if it cannot be loaded, fall back
        along its parents to the newest version that loads (and say so on /healthz), rather
        than failing the constructor and restart-looping. The watcher keeps trying the
        champion. Only when nothing loads does the replica fail."""
        for attempt in range(3):
            self._load(champion)
            if self.predictor.version is not None:
                return
            time.sleep(0.5 * 2 ** attempt)
        why, version, seen = self.predictor.last_error, champion, {champion}
        while self.predictor.version is None:
            version = self.registry.tags(version).parent_version
            if version is None or version in seen:
                raise RuntimeError(f"no version could be loaded: {why}")
            seen.add(version)
            self._load(version)
        self.predictor.last_error = f"{why}; serving v{version} meanwhile"
        log.error("replica %s: %s", self.replica, self.predictor.last_error)
        self._report()

    # ---- hot swap ------------------------------------------------------------------------

    def _load(self, version: int) -> None:
        try:
            model, card = self.registry.load(version)
            self.predictor.swap(model, card, str(version))
            tags = self.registry.tags(version)
            parent = tags.parent_version
            self.info = {"parent_version": str(parent) if parent is not None else None,
                         "excluded_requests": tags.excluded_requests_count}
            log.info("replica %s now serves version %s", self.replica, version)
        except (RejectedModel, Exception) as e:  # never serve it; keep the old one and say why
            self.predictor.last_error = f"version {version} not served: {e}"
            log.error("replica %s: %s", self.replica, self.predictor.last_error)
        self._report()

    def _report(self) -> None:
        self.board.report.remote(self.replica, self.predictor.version, self.predictor.last_error)

    def _watch(self) -> None:
        # version -> (failures, monotonic time of the next try): a version that failed is
        # tried again later, backing off to RETRY_MAX_S (a download that failed once must not
        # blacklist it forever), never every second.
        failed: dict[int, tuple[int, float]] = {}
        while True:
            self._wake.wait(self.settings.get("poll_s", 1.0))
            woken = self._wake.is_set()
            self._wake.clear()
            try:
                champion = self.registry.champion()
                if champion is not None and str(champion) == self.predictor.version:
                    self.predictor.last_error = None  # the alias points at what we serve: healthy
                    failed.clear()
                elif champion is not None:
                    n, next_try = failed.get(champion, (0, 0.0))
                    if woken or time.monotonic() >= next_try:
                        self._load(champion)
                        if str(champion) != self.predictor.version:
                            failed[champion] = (n + 1, time.monotonic() + min(RETRY_MAX_S, 2.0 ** n))
            except Exception as e:  # MLflow unreachable for a moment: keep serving, say so
                self.predictor.last_error = f"cannot check the champion: {e}"
            self._report()

    def check_health(self) -> None:
        if self.predictor.version is None:
            raise RuntimeError("no model loaded")

    # ---- predictions ---------------------------------------------------------------------

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def _predict_batch(self, xs: list) -> list:
        # the forward pass off the event loop: /model, /healthz and intake keep answering
        return await asyncio.to_thread(self.predictor.predict_batch, xs)

    @api.post("/predict")
    async def predict(self, request: Request):
        if self.predictor.version is None:
            return error(503, "no model loaded yet; retry shortly")
        try:
            raw = await read_body(request, MAX_BODY_BYTES)
            body = await asyncio.to_thread(read_json, raw, MAX_BODY_BYTES)
            if not isinstance(body, dict) or set(body) != {"instances"}:
                raise ValueError('send {"instances": [[float, ...], ...]} and nothing else')
            if b"true" in raw or b"false" in raw:  # the only string in a valid body is the key
                raise ValueError("instances must be numbers, not true/false")
            x = await asyncio.to_thread(self.predictor.parse, body["instances"])
        except (ValueError, BadInstances) as e:
            return error(413 if "at most" in str(e) and "bytes" in str(e) else 400, str(e))
        predictions, version = await self._predict_batch(x)
        return {"predictions": predictions, "model_version": version}

    @api.get("/healthz")
    def healthz(self):
        err = self.predictor.last_error
        return {"status": "degraded" if err else "ok", "model_version": self.predictor.version, "last_error": err,
                "replica": self.replica}

    @api.get("/model")
    def model(self):

        # Serve's list: a replica still loading counts and has not reported
        rv = replica_versions(board=self.board)
        known, reports = rv["known"], rv["reports"]
        try:
            champion = self.registry.champion()
        except Exception:
            champion = None
        return {"name": self.settings["model_name"], "version": self.predictor.version, "alias": "champion",
                **self.info, "champion": str(champion) if champion is not None else None,
                "replicas": {r: reports.get(r) for r in known or []}, "replicas_known": known is not None,
                "all_replicas": every_replica_serves(known, reports, self.predictor.version)}

    # ---- deletion intake -----------------------------------------------------------------

    def _authorised(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        presented = hashlib.sha256(token.strip().encode("utf-8", "surrogatepass")).hexdigest()
        return hmac.compare_digest(presented, self.token_sha256)

    @api.post("/model/refresh")
    def refresh(self, request: Request):
        if not self._authorised(request):
            return error(401, "missing or wrong bearer token")
        self._wake.set()
        return {"status": "checking", "model_version": self.predictor.version}

    @api.post("/deletions")
    async def add_deletion(self, request: Request):
        from pipeline.errors import UserError

        if not self._authorised(request):
            return error(401, "missing or wrong bearer token")
        try:
            data = read_json(await read_body(request, MAX_DELETION_BODY_BYTES), MAX_DELETION_BODY_BYTES)
            if not isinstance(data, dict):
                raise ValueError('send {"subject_id": "..."} or {"sample_ids": ["...", ...]}')
            body = DeletionBody.model_validate(data)
        except ValidationError as e:
            first = e.errors()[0]
            return error(422, f"{'.'.join(map(str, first['loc'])) or 'body'}: {first['msg']}")
        except ValueError as e:
            return error(413 if "bytes" in str(e) else 400, str(e))
        key = body.idempotency_key or request.headers.get("idempotency-key")
        try:
            # the database write off the event loop (SQLite may wait for the nightly's lock)
            req, created = await asyncio.to_thread(self.ledger.add, body.subject_id, body.sample_ids, body.reason, key)
        except UserError as e:
            return error(422, str(e))
        except SQLAlchemyError as e:  # the database is unreachable or busy: nothing was written
            log.error("ledger write failed: %s", e)
            return error(503, "the ledger is unavailable; nothing was recorded, retry later")
        return JSONResponse({"request_id": req["request_id"], "status": req["status"],
                             "status_reason": req["status_reason"], "created": created},
                            status_code=202 if created else 200)

    @api.get("/deletions/{request_id}")
    def get_deletion(self, request_id: str, request: Request):
        from pipeline.errors import UserError

        if not self._authorised(request):
            return error(401, "missing or wrong bearer token")
        if len(request_id) > 64:
            return error(404, "no such deletion request")
        try:
            rec = self.ledger.get(request_id)
        except UserError:
            return error(404, "no such deletion request")
        except SQLAlchemyError as e:
            log.error("ledger read failed: %s", e)
            return error(503, "the ledger is unavailable; retry later")
        return {k: rec[k] for k in ("request_id", "status", "status_reason", "model_version", "received_at",
                                    "applied_at", "served_at", "purged_at")}


def build_app(settings: dict[str, Any], num_replicas: int | str = 1, autoscaling: dict | None = None):
    options: dict[str, Any] = {"autoscaling_config": autoscaling} if autoscaling else {"num_replicas": num_replicas}
    return ModelServer.options(**options).bind(settings)


class AppArgs(BaseModel):
    """The application's arguments, for `serve run serving.app:build home=...` and the
    `args:` of a Serve config file (Serve validates them against this model)."""

    model_config = ConfigDict(extra="forbid")
    home: str | None = Field(None, description="the deployment's $UNLEARN_HOME (default: the environment's)")
    replicas: int = Field(1, ge=1, description="model replicas (fixed; see min/max_replicas)")
    min_replicas: int | None = Field(None, ge=1, description="autoscale from this many replicas ...")
    max_replicas: int | None = Field(None, ge=1, description="... to this many")
    target_ongoing_requests: float = Field(8.0, gt=0, description="autoscaling: ongoing requests per replica")
    poll_s: float = Field(1.0, gt=0, le=3600, description="seconds between checks of the champion alias")
    max_batch_size: int = Field(32, ge=1, le=1024, description="requests batched into one forward pass")


def settings_for(home, poll_s: float, max_batch_size: int) -> dict[str, Any]:
    """What every replica needs, read from the deployment (never the token itself: its hash)."""
    from serving.token import resolve_token, token_sha256

    state = home.state()
    return {"tracking_uri": home.tracking_uri, "model_name": state["model_name"], "artifacts": str(home.artifacts),
            "ledger_url": home.ledger_url, "token_sha256": token_sha256(resolve_token(home.root)), "poll_s": poll_s,
            "max_batch_size": max_batch_size}


def build(args: AppArgs):
    """The Serve application of a deployment: `serve run serving.app:build home=/srv/unlearn`,
    or `import_path: serving.app:build` in a Serve config (`serve deploy`, a RayService).
    `unlearn serve` builds the same application."""
    from pipeline.ops.home import Home

    if isinstance(args, dict):  # called directly rather than through Serve's validation
        args = AppArgs.model_validate(args)
    if (args.min_replicas is None) != (args.max_replicas is None) or \
            (args.min_replicas or 0) > (args.max_replicas or 0):
        raise ValueError("give both min_replicas and max_replicas, with min <= max, to autoscale")
    home = Home.from_env(args.home)
    autoscaling = None if args.min_replicas is None else {
        "min_replicas": args.min_replicas, "max_replicas": args.max_replicas,
        "target_ongoing_requests": args.target_ongoing_requests}
    return build_app(settings_for(home, args.poll_s, args.max_batch_size), args.replicas, autoscaling)
