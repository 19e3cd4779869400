"""Turning a request into a :class:`~respd.engine.run.Run`: checks, context, window, admission.

:func:`prepare` may refuse (a 4xx :class:`~respd.errors.RespdError`); it stores nothing. :func:`gather` is
its context half, shared with the endpoints that count or compact a context without making a response.
"""

from __future__ import annotations

from respd.config import ModelRoute
from respd.engine import compaction, context, window
from respd.engine.checks import check_request
from respd.engine.resume import Logged
from respd.engine.run import Run
from respd.engine.runtime import Runtime
from respd.engine.tools import plan_tools
from respd.errors import InvalidRequest
from respd.files.inputs import FileReader, has_files
from respd.wire.items import CompactionTrigger
from respd.wire.request import CreateResponse


async def gather(
    rt: Runtime,
    req: CreateResponse,
    tenant: str,
    *,
    logged: Logged | None = None,
    local: context.LocalHistory | None = None,
) -> Run:
    """The run ``req`` describes, with its whole context (compaction items opened); raises its 4xx if any.

    A background job goes on from its ``logged`` state (the response it is, under its id).
    ``local`` finds previous responses kept outside the database (a WebSocket connection's store:false ones).
    """
    assert req.model is not None
    route = rt.settings.model(req.model)
    req = with_route_sampling(req, route)
    tools = plan_tools(req, strict=rt.settings.strict_tools, registry=rt.tools)
    hist = await context.history(rt.store, tenant, req, local)
    inputs = await context.input_items(rt.store, tenant, req)
    context.unseal_reasoning(rt.sealer, tenant, inputs)
    context.check_call_outputs(hist, inputs)
    if req.conversation_id is not None:
        context.check_unique_ids(hist, inputs)
    run = Run(rt, req, tenant=tenant, route=route, history=hist, inputs=inputs, tools=tools, logged=logged)
    seen = compaction.expand(rt.sealer, tenant, hist, inputs)
    if has_files(seen):  # input_file / input_image by file_id: the model reads the files' text (data URLs)
        earlier = "conversation" if req.conversation_id is not None else "previous_response_id"
        seen = await FileReader(rt.store, rt.settings, tenant).open_context(seen, inputs, earlier)
    if rt.tools.by_item:  # hosted calls in the context (or the log) are shown to the model as what it called and read
        await run.hosted.load(rt.store, [*seen, *(logged.response["output"] if logged is not None else ())])
        seen = run.hosted.recall(seen)
    run.context = seen
    return run


def with_route_sampling(req: CreateResponse, route: ModelRoute) -> CreateResponse:
    """``req`` with the route's sampling defaults where it sets none, so the response reports what is used."""
    update = {name: value for name in ("temperature", "top_p")
              if getattr(req, name) is None and (value := getattr(route, name)) is not None}  # fmt: skip
    return req.model_copy(update=update) if update else req


async def prepare(
    rt: Runtime,
    req: CreateResponse,
    tenant: str,
    *,
    logged: Logged | None = None,
    local: context.LocalHistory | None = None,
    generate: bool = True,
) -> Run:
    """Check ``req`` and gather its context; raises a 4xx :class:`RespdError` and stores nothing if it can't run.

    ``generate=False`` (a WebSocket warm-up) records the context and asks no model; the other keywords are
    :func:`gather`'s.
    """
    check_request(req)
    run = await gather(rt, req, tenant, logged=logged, local=local)
    if logged is None:  # what hosted tools name (file_search's stores) must be the key's: a 404 now, not later
        await run.hosted.plan.check(tenant)
    run.generate = generate
    trigger = isinstance(req.input, list) and bool(req.input) and isinstance(req.input[-1], CompactionTrigger)
    if trigger and not run.context:
        raise InvalidRequest("There is nothing to compact: the context is empty.", param="input")
    if not run.context and generate and logged is None:
        # decided here, not by the model: an upstream asked about nothing answers with its own complaint
        raise empty_input()
    backend = rt.backend(run.route)
    if trigger or req.context_management or await window.known_window(backend) is not None:  # else nothing to do
        fitted = await window.fit(backend, run.model_request(), truncation=req.truncation,
                                  context_management=req.context_management, compact=trigger)  # fmt: skip
        run.context, run.compact, run.answer = fitted.items, fitted.compact, not trigger
    if logged is None:  # a job that starts is past its checks, and the job queue holds its place
        run.check_choice()
        run.admit()
        if run.background:  # checked now, queued as a job: it waits in the job queue, not at the backend
            run.release_admission()
    return run


def empty_input() -> InvalidRequest:
    """The 400 for a request that gives the model nothing to answer: no input, and no earlier context."""
    return InvalidRequest(
        "Invalid 'input': empty array. Expected an array with minimum length 1, but got an empty array instead.",
        param="input",
        code="empty_array",
    )
