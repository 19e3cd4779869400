"""The hosted-tool protocol: what a tool run by respd itself (web_search, file_search, …) must provide.

A hosted tool is one module in :mod:`respd.tools` with a function ``hosted_tool(host)`` that returns a
:class:`HostedTool` (or None when the operator has not configured it; the tool type is then left out of
what the model sees, as before). The :class:`ToolHost` is the server process (its settings, its database).
The engine knows only this protocol (see ``docs/HOSTED_TOOLS.md``):

* what the model is shown: :meth:`HostedTool.functions` (plain function tools, given the request's tool
  config);
* which output item a call makes: :meth:`HostedTool.start` (the item, ``in_progress``, and the tool's own
  events before it runs), :meth:`HostedTool.run` (the work: async, cancellable, under ``timeout_s``) and
  :meth:`HostedTool.failed` (the item and the model's text when the work failed);
* what the model reads back: :attr:`Outcome.output`, in which the sources it may cite (:class:`Source`,
  numbered by :attr:`ToolContext.cite`) become the answer's annotations.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar, cast

from pydantic import BaseModel, ValidationError

from respd.config import Settings
from respd.store.store import Store
from respd.wire.validation import to_invalid_request

if TYPE_CHECKING:
    from respd.retrieval.search import Retrieval

Item = dict[str, Any]
ConfigModel = TypeVar("ConfigModel", bound=BaseModel)
Progress = tuple[str, dict[str, Any]]
"""One of a tool's own stream events: its ``type`` and its fields beyond ``item_id``/``output_index``/
``sequence_number`` (which the engine adds), e.g. ``("response.web_search_call.searching", {})``."""


class ToolError(Exception):
    """A call failed in a way the model should hear about (provider down, bad arguments): its message is
    what the model and the item say. Anything else a tool raises is a bug, logged, and reported vaguely."""


@dataclass(frozen=True, slots=True)
class Call:
    """One call of a hosted tool by the model."""

    item_id: str  # the output item's id, made by the engine with the tool's ``id_prefix``
    name: str  # the function the model called (one of the tool's :meth:`~HostedTool.functions`)
    arguments: Any  # the model's arguments, parsed from JSON (the raw text if they were not valid JSON)
    config: Mapping[str, Any]  # the tool's entry in the request's ``tools``, as the tool validated it


@dataclass(frozen=True, slots=True)
class Source:
    """Something the answer may cite. The engine numbers sources across a response chain; the model cites
    source *n* by writing ``[n]`` (see :mod:`respd.tools.citations`), and the answer's ``output_text``
    gets the annotation :meth:`annotation` makes for it."""

    kind: str  # "url" (url_citation) | "file" (file_citation) | "container_file" (container_file_citation)
    title: str
    url: str = ""
    file_id: str = ""
    filename: str = ""
    text: str = ""  # what the model is shown of it (a snippet, a chunk)
    container_id: str = ""  # a container file's container

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "title": self.title, "url": self.url, "file_id": self.file_id,
                "filename": self.filename, "text": self.text, "container_id": self.container_id}  # fmt: skip

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Source:
        keys = ("kind", "title", "url", "file_id", "filename", "text", "container_id")
        return cls(**{k: str(raw.get(k) or "") for k in keys})


@dataclass(slots=True)
class Outcome:
    """What a finished call produced."""

    item: Item  # the output item as done (status completed, or failed)
    output: str  # what the model reads as the call's result
    events: list[Progress] = field(default_factory=list)  # the tool's own events before ``output_item.done``


@dataclass(frozen=True, slots=True)
class ToolContext:
    """What a call may use besides its arguments."""

    settings: Settings
    tenant: str  # the API key's tenant: a tool reads only what this tenant owns
    response_id: str
    include: frozenset[str]  # the request's ``include`` (e.g. ``web_search_call.action.sources``)
    # Registers a source the answer may cite; returns its number, which the call's output shows the model
    # as ``[n]`` (numbers are unique across the response chain).
    cite: Callable[[Source], int]
    previous_response_id: str | None = None  # the response this one continues (a chain's resources)


class HostedTool(Protocol):
    """A tool respd runs itself. Implementations are stateless between calls (one instance serves every
    request); what a request configures arrives in :attr:`Call.config`."""

    types: ClassVar[frozenset[str]]  # the request ``tools[].type`` values it serves (``web_search``, …)
    item_type: ClassVar[str]  # the output item's ``type`` (``web_search_call``)
    id_prefix: ClassVar[str]  # the output item's id prefix (``ws``)
    # The call has no side effects: one in flight when its replica died is run again by the replica that
    # takes the response over. When false, such a call ends ``interrupted_status`` and is not run again.
    rerunnable: ClassVar[bool]
    interrupted_status: ClassVar[str]  # the item status of a call stopped before it finished
    timeout_s: float  # a call running longer fails (the model is told so)

    def configure(self, raw: Mapping[str, Any], param: str) -> dict[str, Any]:
        """The request's tool entry checked and with its defaults; a bad one raises a 400 on ``param``.
        What it returns is echoed in the Response's ``tools`` and given to calls as :attr:`Call.config`."""
        ...

    def functions(self, config: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The function tools the model is offered for this config (neutral tool dicts: ``{"type":
        "function", "name", "namespace": None, "description", "parameters", "strict"}``)."""
        ...

    async def prepare(self, config: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
        """Once per run, before the first model turn: the config its calls get, with what the response needs
        set up (code_interpreter: the container, found or made). Raise :class:`ToolError` when it cannot be:
        every call then fails with that message. The Response's ``tools`` keep the configured form."""
        ...

    def start(self, call: Call) -> tuple[Item, list[Progress]]:
        """The call's item as added (``status: in_progress``) and its events before it runs
        (``…in_progress``, ``…searching``)."""
        ...

    async def run(self, call: Call, ctx: ToolContext) -> Outcome:
        """Do the work. Raise :class:`ToolError` for a failure the model should hear about. Cancellation
        (the client left, the response was cancelled) must stop the work."""
        ...

    def failed(self, call: Call, message: str) -> Outcome:
        """The outcome of a call whose work failed with ``message`` (a :class:`ToolError`, a timeout, a call
        stopped by a crash and not run again)."""
        ...

    async def aclose(self) -> None:
        """Release what the tool holds between calls (connection pools) at shutdown."""
        ...

    def recall(self, item: Item) -> tuple[str, Any, str]:
        """Function name, arguments and result text for a call item respd has no record of (a client sent it
        back by value, and the store does not hold it): what the model is shown of that earlier call."""
        ...


class StagedTool(HostedTool, Protocol):
    """A hosted tool with steps of its own around the model's calls (MCP), marked ``staged = True``.

    Before the model's first turn a fresh run asks :meth:`setup` for calls to make (listing a server, a call
    its client approved), run like the model's; then :meth:`functions_in` says what the model is offered,
    from everything the context holds so far (the listing). A call of the model's goes through :meth:`admit`,
    which may put an item asking the client's approval in its place: the response then ends after that step.
    The tool's items (``item_types``) are shown to the model as :meth:`replay` makes them.
    """

    staged: ClassVar[bool]
    item_types: ClassVar[frozenset[str]]  # every item type of its own, its calls' included

    def echo(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """What the Response's ``tools`` shows of a config (a tool keeping secrets there shows less)."""
        ...

    def setup(self, config: Mapping[str, Any], context: list[Item], inputs: list[Item]) -> list[Call]:
        """The calls to make before the model's first turn, given the context (client items) and this turn's
        input."""
        ...

    def functions_in(self, config: Mapping[str, Any], context: list[Item]) -> list[dict[str, Any]]:
        """The functions the model is offered, given what the context holds."""
        ...

    def admit(self, call: Call, context: list[Item]) -> Call | Item:
        """The model's call as it runs, or the item that asks the client's approval in its place."""
        ...

    def forced(self, config: Mapping[str, Any], name: str | None, context: list[Item]) -> list[str] | None:
        """The functions a ``tool_choice`` naming this configuration (and its tool ``name``, if given) forces,
        given the context: None while the context cannot say (not listed yet), empty when none fits."""
        ...

    def owns(self, config: Mapping[str, Any], item: Item) -> bool:
        """Whether ``item`` (one of the tool's) was made under ``config``, of the request's configurations."""
        ...

    def replay(self, item: Item, output: str | None) -> list[Item]:
        """The function call and output items one of the tool's items stands for (``output``: the result
        the store recorded for it, if any)."""
        ...


def staged(tool: HostedTool) -> StagedTool | None:
    """``tool`` as a :class:`StagedTool`, if it is one."""
    return cast(StagedTool, tool) if getattr(tool, "staged", False) else None


class CheckedTool(HostedTool, Protocol):
    """A hosted tool whose config names what the request's API key must own (file_search: its vector stores),
    marked ``checked = True``: :meth:`check` runs when the request arrives, so a bad name is the request's
    4xx (a 404 for a resource that is unknown or another key's) before anything is stored or run."""

    checked: ClassVar[bool]

    async def check(self, config: Mapping[str, Any], tenant: str, param: str) -> None:
        """Raise the request's :class:`~respd.errors.RespdError` (naming ``param``) if ``config`` cannot run
        for ``tenant``."""
        ...


def checked(tool: HostedTool) -> CheckedTool | None:
    """``tool`` as a :class:`CheckedTool`, if it is one."""
    return cast(CheckedTool, tool) if getattr(tool, "checked", False) else None


class ToolHost(Protocol):
    """What a tool may use of the server process that runs it (the engine's Runtime is one)."""

    settings: Settings
    store: Store  # the database (read what the call's tenant owns only)
    retrieval: Retrieval  # vector store search (file_search)


ToolFactory = Callable[[ToolHost], HostedTool | None]


def check_config(model: type[ConfigModel], raw: Mapping[str, Any], param: str) -> ConfigModel:
    """``raw`` (a request's tool entry) validated as ``model``; a 400 naming ``param``'s field otherwise."""
    try:
        return model.model_validate(dict(raw))
    except ValidationError as exc:
        raise to_invalid_request(exc, prefix=param) from None
