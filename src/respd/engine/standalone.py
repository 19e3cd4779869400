"""Work on a context without making a response: count its input tokens, or compact it.

Both gather the context exactly as a run does (:func:`respd.engine.prepare.gather`) and store nothing.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from respd.backends.base import TokenCount
from respd.engine import compaction, context, window
from respd.engine.checks import check_request
from respd.engine.emitter import usage_object
from respd.engine.prepare import gather
from respd.engine.runtime import Runtime
from respd.errors import InvalidRequest, ServerError
from respd.ids import new_id
from respd.wire.request import CreateResponse


async def _model_of(rt: Runtime, tenant: str, req: CreateResponse) -> str:
    """The model to count with: the one named, else the previous response's, else the only one served."""
    if req.model is not None:
        return req.model
    if req.previous_response_id is not None:
        row = await context.previous_response(rt.store, tenant, req.previous_response_id)
        model: str = row["body"]["model"]
        return model
    if len(rt.settings.models) == 1:
        return rt.settings.models[0].name
    raise InvalidRequest("Missing required parameter: 'model'.", param="model", code="missing_required_parameter")


async def count_input(rt: Runtime, tenant: str, req: CreateResponse) -> TokenCount:
    """How many tokens the model would read for ``req``: its context after compaction items and truncation
    ``auto`` (a context over the window is counted as it is, not refused)."""
    if req.conversation is not None and req.previous_response_id is not None:
        check_request(req)  # the create's 400 for the two together
    run = await gather(rt, req.model_copy(update={"model": await _model_of(rt, tenant, req)}), tenant)
    backend = rt.backend(run.route)
    request = run.model_request()
    fitted = await window.fit(backend, request, truncation=req.truncation, refuse=False)
    return await backend.count_tokens(replace(request, items=fitted.items))


async def stored_request(rt: Runtime, tenant: str, response_id: str) -> CreateResponse:
    """The create request a stored response ran (the parts that make its input), for counting it again."""
    body = (await context.stored_response(rt.store, tenant, response_id))["body"]
    echoed = ("model", "instructions", "previous_response_id", "tools", "tool_choice", "parallel_tool_calls",
              "truncation", "reasoning")  # fmt: skip
    fields = {key: body[key] for key in echoed}
    fields |= {"input": await rt.store.input_items(response_id), "text": {"format": body["text"]["format"]}}
    try:
        return CreateResponse.model_validate(fields)
    except ValidationError as exc:
        raise ServerError(f"Response '{response_id}' could not be read back: {exc.errors()[0]['msg']}") from None


async def compact(rt: Runtime, tenant: str, req: CreateResponse) -> dict[str, Any]:
    """The ``response.compaction`` object for ``req``'s context: the user's messages and one compaction item.

    The context must fit the model's window, as the model reads all of it to write the summary.
    """
    run = await gather(rt, req, tenant)
    if not run.context:
        raise InvalidRequest("There is nothing to compact: give 'input' or 'previous_response_id'.", param="input")
    backend = rt.backend(run.route)
    request = run.model_request()
    await window.fit(backend, request, truncation="disabled")
    place = backend.admit(request) if backend.abilities.admission else None
    try:
        done = await compaction.compact(backend, request)
    finally:
        if place is not None:
            place.release()
    item = {"id": new_id("cmp"), "type": "compaction", "encrypted_content": done.seal(rt.sealer, tenant)}
    return {"id": new_id("resp"), "object": "response.compaction", "created_at": int(time.time()),
            "output": [*done.kept, item], "usage": usage_object(done.usage)}  # fmt: skip
