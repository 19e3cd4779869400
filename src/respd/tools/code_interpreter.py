"""The ``code_interpreter`` hosted tool: the model writes Python, respd runs it in a container.

The model is offered one function, ``python(code)``. Each call is a ``code_interpreter_call`` item (``ci_…``)
with the container's id and the code, streamed as ``response.code_interpreter_call.in_progress`` →
``response.code_interpreter_call_code.delta``/``.done`` → ``.interpreting`` → ``.completed``. Its
``outputs`` (``logs``, and an ``image`` per figure) are in the item only with ``include:
["code_interpreter_call.outputs"]``; the model always reads them. Files the code writes under /mnt/data
become container files; the model reads them numbered and cites them as ``[n]``, which become
``container_file_citation`` annotations.

``container`` is a container's id, or ``{"type": "auto", "file_ids", "memory_limit"}``: one container per
response chain, made for the first response that runs code and used again by the responses that continue it
(``previous_response_id``). Running code has effects: a call in flight when its server died is not run
again by the server that takes the response over (the model is told).

The tool exists only where respd found a sandbox (:mod:`respd.sandbox.detect`): the runtime registers it then,
since it runs code in the runtime's containers. See docs/CODE_INTERPRETER.md.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text

from respd.errors import RespdError, Unsupported
from respd.sandbox.containers import CallOutcome, Containers
from respd.sandbox.pool import GRACE_S, START_TIMEOUT_S
from respd.store.containers import ContainerRow, auto_for, files
from respd.tools.base import Call, Item, Outcome, Progress, Source, ToolContext, ToolError, check_config
from respd.tools.citations import CITE_HINT

FUNCTION = "python"
OUTPUTS = "code_interpreter_call.outputs"
AUTO_NAME = "code_interpreter (auto)"
DESCRIPTION = (
    "Run Python code in a stateful session, like a Jupyter notebook: variables, imports and files stay from "
    "one call to the next. Everything printed is returned, and the value of the last line if it is an "
    "expression. The working directory is /mnt/data; the user's files are there (os.listdir() lists them), and "
    "files you save there are given to the user. numpy, pandas and matplotlib are installed; figures drawn "
    "with matplotlib are shown to the user. There is no internet access. " + CITE_HINT
)
PARAMETERS = {
    "type": "object",
    "properties": {"code": {"type": "string", "description": "The Python code to run."}},
    "required": ["code"],
    "additionalProperties": False,
}
_CHAIN = text(
    """
    WITH RECURSIVE chain(id, prev, depth) AS (
        SELECT id, previous_response_id, 0 FROM responses WHERE id = :id AND tenant = :tenant
        UNION ALL
        SELECT r.id, r.previous_response_id, c.depth + 1
        FROM responses r JOIN chain c ON r.id = c.prev WHERE r.tenant = :tenant AND c.depth < 1000
    )
    SELECT id FROM chain
    """
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class NetworkPolicy(_Strict):
    type: Literal["disabled", "allowlist"]
    allowed_domains: list[str] | None = None


class AutoContainer(_Strict):
    type: Literal["auto"]
    file_ids: list[str] | None = Field(default=None, max_length=50)
    memory_limit: Literal["1g", "4g", "16g", "64g"] | None = None
    network_policy: NetworkPolicy | None = None


class CodeInterpreterConfig(_Strict):
    type: Literal["code_interpreter"]
    container: str | AutoContainer
    allowed_callers: list[Any] | None = None


class CodeInterpreter:
    """Python in the runtime's containers."""

    types: ClassVar[frozenset[str]] = frozenset({"code_interpreter"})
    item_type: ClassVar[str] = "code_interpreter_call"
    id_prefix: ClassVar[str] = "ci"
    rerunnable: ClassVar[bool] = False
    interrupted_status: ClassVar[str] = "incomplete"

    def __init__(self, containers: Containers) -> None:
        self.containers = containers
        # the sandbox's own limits end a call first; this is for a process that has to be started and filled
        self.timeout_s = containers.settings.timeout_s + GRACE_S + START_TIMEOUT_S + 60

    # -- the request ----------------------------------------------------------------------------------------
    def configure(self, raw: Mapping[str, Any], param: str) -> dict[str, Any]:
        config = check_config(CodeInterpreterConfig, raw, param)
        container = config.container
        if isinstance(container, str):
            return {"type": "code_interpreter", "container": container}
        if container.network_policy is not None and container.network_policy.type != "disabled":
            raise Unsupported("Containers on this server have no network: network_policy must be 'disabled'.",
                              param=f"{param}.container.network_policy.type")  # fmt: skip
        memory = self.containers.memory_limit(container.memory_limit, f"{param}.container.memory_limit")
        auto = {"type": "auto", "file_ids": container.file_ids or [], "memory_limit": memory}
        return {"type": "code_interpreter", "container": auto}

    def functions(self, config: Mapping[str, Any]) -> list[dict[str, Any]]:
        return [{"type": "function", "name": FUNCTION, "namespace": None, "description": DESCRIPTION,
                 "parameters": PARAMETERS, "strict": None}]  # fmt: skip

    async def prepare(self, config: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
        """The container this response's calls run in: the one named, or the chain's auto container."""
        container = config["container"]
        try:
            if isinstance(container, str):
                row = await self.containers.running(ctx.tenant, container, param="tools.container")
            else:
                row = await self._auto(container, ctx)
        except RespdError as exc:
            raise ToolError(exc.message) from None
        return {**config, "container_id": row.id}

    async def _auto(self, auto: Mapping[str, Any], ctx: ToolContext) -> ContainerRow:
        chain = [ctx.response_id] + await self._chain(ctx.tenant, ctx.previous_response_id)
        row = await auto_for(self.containers.store, ctx.tenant, chain)
        if row is not None:
            row = await self.containers.get(ctx.tenant, row.id)
            if row.status != "running":
                row = None  # expired: the chain gets a new one, its files given again
        if row is None:
            row = await self.containers.create(ctx.tenant, AUTO_NAME, memory_limit=auto["memory_limit"],
                                               origin=ctx.response_id)  # fmt: skip
        present = {f.path.rsplit("/", 1)[-1] for f in await files(self.containers.store, row.id)}
        for file_id in auto.get("file_ids") or []:
            name, data = await self.containers.uploaded_file(ctx.tenant, file_id, "tools.container.file_ids")
            if name not in present:
                await self.containers.add_file(row, name, data)
        return row

    async def _chain(self, tenant: str, response_id: str | None) -> list[str]:
        """``response_id`` and the stored responses it continues."""
        if response_id is None:
            return []
        async with self.containers.store.engine.connect() as conn:
            rows = (await conn.execute(_CHAIN, {"id": response_id, "tenant": tenant})).all()
        return [r.id for r in rows] or [response_id]

    # -- a call ---------------------------------------------------------------------------------------------
    def start(self, call: Call) -> tuple[Item, list[Progress]]:
        code = _code(call)
        item = {"id": call.item_id, "type": self.item_type, "status": "in_progress",
                "container_id": call.config.get("container_id", ""), "code": "", "outputs": None}  # fmt: skip
        return item, [
            ("response.code_interpreter_call.in_progress", {}),
            ("response.code_interpreter_call_code.delta", {"delta": code}),
            ("response.code_interpreter_call_code.done", {"code": code}),
            ("response.code_interpreter_call.interpreting", {}),
        ]

    async def run(self, call: Call, ctx: ToolContext) -> Outcome:
        code = _code(call)
        if not code.strip():
            raise ToolError("the call gave no code")
        try:
            row = await self.containers.running(ctx.tenant, call.config["container_id"], touch=False)  # execute does
            done = await self.containers.execute(row, code)
        except RespdError as exc:
            raise ToolError(exc.message) from None
        outputs = _outputs(done)
        item = {"id": call.item_id, "type": self.item_type, "status": "completed", "container_id": row.id,
                "code": code, "outputs": outputs if OUTPUTS in ctx.include else None}  # fmt: skip
        return Outcome(item, _for_model(done, ctx, row.id), [("response.code_interpreter_call.completed", {})])

    def failed(self, call: Call, message: str) -> Outcome:
        item = {"id": call.item_id, "type": self.item_type, "status": "failed",
                "container_id": call.config.get("container_id", ""), "code": _code(call), "outputs": None}  # fmt: skip
        return Outcome(item, f"The code was not run: {message}")

    async def aclose(self) -> None:
        """Nothing of its own: the runtime closes the containers (and their processes)."""

    def recall(self, item: Item) -> tuple[str, Any, str]:
        logs = [o.get("logs", "") for o in item.get("outputs") or () if isinstance(o, dict) and o.get("type") == "logs"]
        output = "\n".join(logs) if logs else "(the output of this call was not kept)"
        return FUNCTION, {"code": item.get("code") or ""}, output


def _code(call: Call) -> str:
    args = call.arguments
    if isinstance(args, dict):
        return str(args.get("code") or "")
    return args if isinstance(args, str) else ""  # a model that sent bare code instead of JSON


def _outputs(done: CallOutcome) -> list[dict[str, Any]]:
    outputs: list[dict[str, Any]] = [{"type": "logs", "logs": done.result.logs}] if done.result.logs else []
    for png in done.result.images:
        outputs.append({"type": "image", "url": "data:image/png;base64," + base64.b64encode(png).decode()})
    return outputs


def _for_model(done: CallOutcome, ctx: ToolContext, container_id: str) -> str:
    """What the model reads: notes on the session, the output, the error, and the files, numbered to cite."""
    result, parts = done.result, []
    if result.fresh and result.reset:
        parts.append(f"[Note: the Python session was restarted before this call ({result.reset}); variables "
                     "from earlier calls are gone. Files in /mnt/data were kept.]")  # fmt: skip
    parts.append(result.logs if result.logs else "(no output)")
    if result.truncated:
        parts.append("[output truncated]")
    if result.error is not None:
        parts.append(f"[The code failed: {result.error['type']}: {result.error['message']}]")
    written = [f for f in done.files + done.images]
    for f in written:
        name = f.path.rsplit("/", 1)[-1]
        n = ctx.cite(Source("container_file", name, file_id=f.id, filename=name, container_id=container_id))
        kind = "figure" if f in done.images else "file"
        parts.append(f"[{n}] {kind} saved: {f.path} ({f.bytes} bytes)")
    return "\n".join(parts)
