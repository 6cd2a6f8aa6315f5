"""The Judge0 routes: submissions (one, a batch), languages, statuses and the service's own."""

from __future__ import annotations

import contextlib
from typing import Any

import msgspec
from litestar import Controller, HttpMethod, Request, Response, delete, get, post, route
from litestar.exceptions import NotFoundException
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_201_CREATED,
    HTTP_204_NO_CONTENT,
    HTTP_400_BAD_REQUEST,
    HTTP_422_UNPROCESSABLE_ENTITY,
)

from corral_core.access import Caller
from corral_core.job import Job
from corral_core.policy import InvalidSubmission
from corral_core.ports import Runtime, RuntimeCatalog
from corral_core.submission import JobRequest, SubmitJob
from corral_core.usecases import GetJob, JobNotFound, JobUnfinished
from corral_http.auth import caller_of
from corral_http.compat.judge0.config import config_info
from corral_http.compat.judge0.schemas import MAX_BATCH, STATUSES, TOKEN, AttributeErrors, BatchIn, Judge0Error, Status
from corral_http.compat.judge0.submissions import attribute_errors, decode_submission, to_request
from corral_http.compat.judge0.views import requested_fields, status_of, view
from corral_http.compat.languages import LanguageRow, offered
from corral_http.dependencies import Jobs


def _flag(value: str | None) -> bool:
    # Judge0 turns an option on with the word "true" and nothing else.
    return value == "true"


class SubmissionsController(Controller):
    path = "/submissions"
    tags = ["judge0"]

    @post("/", status_code=HTTP_201_CREATED, summary="Create a submission (Judge0)")
    async def create(
        self,
        request: Request[Any, Any, Any],
        jobs: Jobs,
        base64_encoded: str | None = None,
        wait: str | None = None,
        fields: str | None = None,
    ) -> Response[dict[str, Any]]:
        waiting = _flag(wait)
        encoded = _flag(base64_encoded)
        chosen = requested_fields(fields)
        submission = decode_submission(await request.body())
        job_request = to_request(submission, jobs.options.limits.maxima, jobs.options.sizes, encoded)
        caller = caller_of(request)
        with jobs.long_polls.hold(caller) if waiting else contextlib.nullcontext():
            job = await _submit(jobs.submit, caller, job_request, submission.language_id)
            if not waiting:
                return Response({"token": job.id}, status_code=HTTP_201_CREATED)
            job = await jobs.get(caller, job.id, wait_s=jobs.options.max_wait_s)
        return Response(view(job, chosen, encoded, await _names(jobs.runtimes, chosen)), status_code=HTTP_201_CREATED)

    @post("/batch", status_code=HTTP_201_CREATED, summary="Create a batch of submissions (Judge0)")
    async def create_batch(
        self,
        request: Request[Any, Any, Any],
        jobs: Jobs,
        base64_encoded: str | None = None,
    ) -> Response[list[dict[str, Any]]]:
        try:
            batch = msgspec.json.decode(await request.body(), type=BatchIn)
        # msgspec raises UnicodeDecodeError for invalid UTF-8 in a string, RecursionError for
        # deep nesting: the client's fault as much as any other malformed JSON.
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as error:
            raise Judge0Error(HTTP_400_BAD_REQUEST, f"malformed JSON: {error}") from None
        _check_batch_size(len(batch.submissions or []))
        caller, maxima, sizes = caller_of(request), jobs.options.limits.maxima, jobs.options.sizes
        answers: list[dict[str, Any]] = []
        accepted = False
        for raw in batch.submissions or []:
            try:
                submission = decode_submission(raw)
                job_request = to_request(submission, maxima, sizes, _flag(base64_encoded))
                job = await _submit(jobs.submit, caller, job_request, submission.language_id)
            except AttributeErrors as error:
                answers.append(dict(error.errors))
                continue
            answers.append({"token": job.id})
            accepted = True
        return Response(answers, status_code=HTTP_201_CREATED if accepted else HTTP_422_UNPROCESSABLE_ENTITY)

    # Litestar's own OPTIONS answer lists a path's first handler's methods only (see
    # corral_http.controllers.JobsController): these say all, and their names sort first.
    @route("/batch", http_method=HttpMethod.OPTIONS, status_code=HTTP_204_NO_CONTENT, include_in_schema=False)
    async def allowed_batch_methods(self) -> Response[None]:
        return Response(None, status_code=HTTP_204_NO_CONTENT, headers={"Allow": "GET, OPTIONS, POST"})

    @route("/{token:str}", http_method=HttpMethod.OPTIONS, status_code=HTTP_204_NO_CONTENT, include_in_schema=False)
    async def allowed_submission_methods(self) -> Response[None]:
        return Response(None, status_code=HTTP_204_NO_CONTENT, headers={"Allow": "DELETE, GET, OPTIONS"})

    @get("/batch", summary="Get a batch of submissions (Judge0)")
    async def read_batch(
        self,
        request: Request[Any, Any, Any],
        jobs: Jobs,
        tokens: str | None = None,
        base64_encoded: str | None = None,
        fields: str | None = None,
    ) -> dict[str, list[dict[str, Any] | None]]:
        chosen = requested_fields(fields)
        asked = (request.headers.get("tokens") or tokens or "").strip()
        names = [token for token in asked.split(",") if token] if asked else []
        _check_batch_size(len(names))
        found: list[dict[str, Any] | None] = []
        language_names = await _names(jobs.runtimes, chosen)
        caller = caller_of(request)
        for token in names:
            job = await _find(jobs.get, caller, token)
            found.append(None if job is None else view(job, chosen, _flag(base64_encoded), language_names))
        return {"submissions": found}

    @get("/{token:str}", summary="Get a submission (Judge0)")
    async def read(
        self,
        request: Request[Any, Any, Any],
        token: str,
        jobs: Jobs,
        base64_encoded: str | None = None,
        fields: str | None = None,
    ) -> dict[str, Any]:
        chosen = requested_fields(fields)
        job = await _find(jobs.get, caller_of(request), token)
        if job is None:
            raise NotFoundException()
        return view(job, chosen, _flag(base64_encoded), await _names(jobs.runtimes, chosen))

    @delete("/{token:str}", status_code=HTTP_200_OK, summary="Delete a finished submission (Judge0)")
    async def remove(self, request: Request[Any, Any, Any], token: str, jobs: Jobs, fields: str | None = None) -> dict[str, Any]:
        """As Judge0 1.13.1 deletes: refused as a whole when turned off, a queued or running
        submission refused (Judge0 has no cancel; Corral's is DELETE /jobs/{id}), the deleted
        one answered base64-encoded whatever was asked, so that any output survives the trip."""
        chosen = requested_fields(fields)
        if not jobs.options.judge0_submission_delete:
            raise Judge0Error(HTTP_400_BAD_REQUEST, "delete not allowed")
        if not TOKEN.match(token):
            raise NotFoundException()
        try:
            job = await jobs.delete(caller_of(request), token)
        except JobNotFound:
            raise NotFoundException() from None
        except JobUnfinished as unfinished:
            status, _ = status_of(unfinished.job)
            message = f"submission cannot be deleted because its status is {status.id} ({status.description})"
            raise Judge0Error(HTTP_400_BAD_REQUEST, message) from None
        return view(job, chosen, True, await _names(jobs.runtimes, chosen))


async def _submit(submit_job: SubmitJob, caller: Caller, request: JobRequest, language_id: int | None) -> Job:
    try:
        return (await submit_job(caller, request)).job
    except InvalidSubmission as error:
        raise attribute_errors(error, language_id) from None


async def _find(get_job: GetJob, caller: Caller, token: str) -> Job | None:
    if not TOKEN.match(token):
        return None
    try:
        return await get_job(caller, token)
    except JobNotFound:
        return None


def _check_batch_size(count: int) -> None:
    if count > MAX_BATCH:
        raise Judge0Error(
            HTTP_400_BAD_REQUEST, f"number of submissions in a batch should be less than or equal to {MAX_BATCH}"
        )
    if count == 0:
        raise Judge0Error(HTTP_400_BAD_REQUEST, "there should be at least one submission in a batch")


class Judge0Language(msgspec.Struct, frozen=True):
    runtime: Runtime
    row: LanguageRow

    @property
    def id(self) -> int:
        return self.row.judge0_id

    @property
    def name(self) -> str:
        return self.row.judge0_name.format(version=self.runtime.version)


async def judge0_languages(runtimes: RuntimeCatalog) -> list[Judge0Language]:
    """The languages live workers offer that Judge0 has an id for, by name.

    Judge0 has one id per language and version; the newest version a worker offers takes it.
    """
    chosen: dict[int, Judge0Language] = {}
    for lang in offered(await runtimes.offered()):
        if lang.row is not None and lang.row.judge0_id not in chosen:
            chosen[lang.row.judge0_id] = Judge0Language(lang.runtime, lang.row)
    return sorted(chosen.values(), key=lambda lang: lang.name)


async def _names(runtimes: RuntimeCatalog, fields: tuple[str, ...]) -> dict[int, str]:
    if "language" not in fields:
        return {}
    return {lang.id: lang.name for lang in await judge0_languages(runtimes)}


class LanguagesController(Controller):
    path = "/languages"
    tags = ["judge0"]

    @get("/", summary="Languages the workers run, by Judge0 id (Judge0)")
    async def languages(self, jobs: Jobs) -> list[dict[str, Any]]:
        return [{"id": lang.id, "name": lang.name} for lang in await judge0_languages(jobs.runtimes)]

    @get("/all", summary="Active and archived languages (Judge0)")
    async def all_languages(self, jobs: Jobs) -> list[dict[str, Any]]:
        return [{"id": lang.id, "name": lang.name, "is_archived": False} for lang in await judge0_languages(jobs.runtimes)]

    @get("/{language_id:str}", summary="A language (Judge0)")
    async def language(self, language_id: str, jobs: Jobs) -> dict[str, Any]:
        # Taken as text so that /languages/x is this API's 404, not the router's.
        for lang in await judge0_languages(jobs.runtimes):
            if str(lang.id) == language_id:
                source = lang.runtime.source_file or "main"
                return {
                    "id": lang.id,
                    "name": lang.name,
                    "is_archived": False,
                    "source_file": source,
                    "compile_cmd": lang.row.compile_cmd.format(source=source) if lang.row.compile_cmd else None,
                    "run_cmd": lang.row.run_cmd.format(source=source),
                }
        raise NotFoundException()


class ServiceController(Controller):
    tags = ["judge0"]

    @get("/statuses", summary="Submission statuses (Judge0)")
    async def statuses(self) -> list[Status]:
        return list(STATUSES)

    @get("/about", summary="About this API (Judge0)")
    async def about(self) -> dict[str, str]:
        return {
            "version": "1.13.1",
            "homepage": "https://judge0.com",
            "source_code": "https://github.com/judge0/judge0",
            "maintainer": "Corral: a Judge0 CE 1.13-compatible API over Corral's sandboxes (not Judge0 itself)",
        }

    @get("/config_info", summary="Limits and features of this API (Judge0)")
    async def config_info(self, jobs: Jobs) -> dict[str, Any]:
        return config_info(jobs.options)


