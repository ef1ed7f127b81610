"""POST /jobs queues an input for ingest; GET /jobs/{id} tells how it went. Both need an API key
with the `ingest` scope."""

import datetime as dt
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from psycopg_pool import ConnectionPool
from pydantic import BaseModel, Field, field_validator

from csdr_ingest import jobs
from csdr_ingest.access import IngestPrincipal
from csdr_ingest.cresda.sun import ACCEPT_OPTION
from csdr_ingest.offline import OFFLINE_OPTION

router = APIRouter(prefix="/jobs", tags=["Jobs"])


def get_pool(request: Request) -> ConnectionPool:
    """The service's database pool (opened in the lifespan)."""
    return request.app.state.pool


PoolDep = Annotated[ConnectionPool, Depends(get_pool)]


class JobRequest(BaseModel):
    """What to ingest."""

    source: str = Field(description="Absolute path of the input on the ingest server")
    collection: str | None = Field(
        None, description="Target collection (default: the node's)", pattern=r"^[A-Za-z0-9._-]+$"
    )
    datetime: dt.datetime | None = Field(
        None, description="Acquisition time, when the file has none"
    )
    accept_sun_disagreement: bool = Field(
        False,
        description=(
            "Publish a scene package even when the sun elevation computed for its acquisition"
            " time is more than 10 degrees from the one its metadata states (the job otherwise"
            " fails with TimeContradictsSun); its items then carry"
            " `csdr:time_contradicts_sun: true`"
        ),
    )

    offline: bool = Field(
        False,
        description=(
            "Register a scene package as offline items (metadata, footprint, thumbnail, no COG;"
            " `order:status` orderable): produced into COGs when an organisation orders them"
        ),
    )

    @field_validator("source")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not Path(value).is_absolute():
            raise ValueError("source must be an absolute path on the ingest server")
        return value


class ItemRef(BaseModel):
    """An item a job published."""

    id: str
    collection: str


class JobError(BaseModel):
    """Why a job failed: a stable code and a description naming the problem."""

    code: str
    description: str


class Job(BaseModel):
    """An ingest job and its outcome."""

    id: uuid.UUID
    status: Literal["queued", "running", "succeeded", "failed"]
    source: str
    collection: str | None
    items: list[ItemRef] = []
    error: JobError | None = None
    created_at: dt.datetime
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None


@router.post("", status_code=202, response_model=Job, summary="Queue an input for ingest")
def create_job(
    body: JobRequest, pool: PoolDep, request: Request, principal: IngestPrincipal
) -> dict[str, Any]:
    """Queue the job; it runs in the background (poll GET /jobs/{id})."""
    extra: dict[str, Any] = {ACCEPT_OPTION: True} if body.accept_sun_disagreement else {}
    if body.offline:
        extra[OFFLINE_OPTION] = True
    job = jobs.enqueue(pool, body.source, body.collection, body.datetime, extra)
    assert job is not None  # only inbox jobs can collide
    request.app.state.workers.notify()
    return job


@router.get("/{job_id}", response_model=Job, summary="A job's status and outcome")
def get_job(job_id: uuid.UUID, pool: PoolDep, principal: IngestPrincipal) -> dict[str, Any]:
    """The job, with the items it has published (all of them once it succeeded; those before
    the failure when it failed) and its error when it failed."""
    job = jobs.get(pool, job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id}")
    return job
