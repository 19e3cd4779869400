"""Input items and content parts of a create request, as the API accepts them.

Item types the API defines but respd cannot take yet are named in :data:`KNOWN_ITEM_TYPES`, so that a
client sending one gets "not supported" rather than "invalid".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from respd.wire.base import MAX_TEXT, Wire, tagged
from respd.wire.tools import Tool

MAX_COMPACTION = 20_971_520  # the spec's limit on a compaction item's encrypted_content


class InputText(Wire):
    type: Literal["input_text"]
    text: Annotated[str, Field(max_length=MAX_TEXT)]


class InputImage(Wire):
    type: Literal["input_image"]
    image_url: str | None = None
    file_id: str | None = None
    detail: Literal["low", "high", "auto", "original"] = "auto"


class InputFile(Wire):
    type: Literal["input_file"]
    file_id: str | None = None
    file_data: str | None = None
    file_url: str | None = None
    filename: str | None = None
    detail: Literal["low", "high", "auto"] | None = None


class OutputText(Wire):
    type: Literal["output_text"]
    text: Annotated[str, Field(max_length=MAX_TEXT)]
    annotations: list[dict[str, Any]] = Field(default_factory=list)
    logprobs: list[dict[str, Any]] | None = None


class Refusal(Wire):
    type: Literal["refusal"]
    refusal: str


class SummaryText(Wire):
    type: Literal["summary_text"]
    text: str


class ReasoningText(Wire):
    type: Literal["reasoning_text"]
    text: str


if TYPE_CHECKING:  # what the tagged unions below are, for the type checker
    ContentPart = InputText | InputImage | InputFile | OutputText | Refusal
    ToolOutputPart = InputText | InputImage | InputFile
else:
    ContentPart = tagged(InputText, InputImage, InputFile, OutputText, Refusal)
    ToolOutputPart = tagged(InputText, InputImage, InputFile)


class Message(Wire):
    """A message in any of the API's three shapes (easy, input, output); ``type`` may be left out."""

    type: Literal["message"] | None = None
    id: str | None = None
    role: Literal["user", "assistant", "system", "developer"]
    content: Annotated[str, Field(max_length=MAX_TEXT)] | list[ContentPart]
    status: Literal["in_progress", "completed", "incomplete"] | None = None
    phase: Literal["commentary", "final_answer"] | None = None


class FunctionCall(Wire):
    type: Literal["function_call"]
    id: str | None = None
    call_id: str
    name: str
    arguments: str
    namespace: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None


class FunctionCallOutput(Wire):
    type: Literal["function_call_output"]
    id: str | None = None
    call_id: Annotated[str, Field(min_length=1, max_length=64)]
    output: Annotated[str, Field(max_length=MAX_TEXT)] | list[ToolOutputPart]
    status: Literal["in_progress", "completed", "incomplete"] | None = None


class CustomToolCall(Wire):
    type: Literal["custom_tool_call"]
    id: str | None = None
    call_id: str
    name: str
    input: str
    namespace: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None


class CustomToolCallOutput(Wire):
    type: Literal["custom_tool_call_output"]
    id: str | None = None
    call_id: Annotated[str, Field(min_length=1, max_length=64)]
    output: Annotated[str, Field(max_length=MAX_TEXT)] | list[ToolOutputPart]
    status: Literal["in_progress", "completed", "incomplete"] | None = None


class Reasoning(Wire):
    type: Literal["reasoning"]
    id: str | None = None
    summary: list[SummaryText] = Field(default_factory=list)
    content: list[ReasoningText] | None = None
    encrypted_content: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None


class ItemReference(Wire):
    type: Literal["item_reference"] | None = None
    id: str


class ToolSearchCall(Wire):
    """A tool search the model asked for (``S:ToolSearchCallItemParam``), sent back by a client."""

    type: Literal["tool_search_call"]
    id: str | None = None
    call_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    execution: Literal["server", "client"] | None = None
    arguments: dict[str, Any] | str  # a string only as respd gives back a model's arguments that were no object
    status: Literal["in_progress", "completed", "incomplete"] | None = None


class ToolSearchOutput(Wire):
    """The tools a client-run search loaded (``S:ToolSearchOutputItemParam``); they join this turn's tools."""

    type: Literal["tool_search_output"]
    id: str | None = None
    call_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    execution: Literal["server", "client"] | None = None
    tools: list[Tool]
    status: Literal["in_progress", "completed", "incomplete"] | None = None


class AdditionalTools(Wire):
    """Tools made available from this item on (``S:AdditionalToolsItemParam``); Codex sends its tools here."""

    type: Literal["additional_tools"]
    id: str | None = None
    role: Literal["developer"] = "developer"
    tools: list[Tool]


class Compaction(Wire):
    """A compaction summary sent back (``S:CompactionSummaryItemParam``); ``created_by`` as output items carry it."""

    type: Literal["compaction"]
    id: str | None = None
    encrypted_content: Annotated[str, Field(max_length=MAX_COMPACTION)]
    created_by: str | None = None


class CompactionTrigger(Wire):
    """Compact the context now (``S:CompactionTriggerItemParam``); only as the last input item."""

    type: Literal["compaction_trigger"]


class HostedCall(BaseModel):
    """A hosted tool's call item sent back by value (``web_search_call``, ``file_search_call``): kept as sent.
    The model sees the call again as respd recorded it, or as its tool reads the item (respd.tools)."""

    model_config = ConfigDict(extra="allow")
    type: str
    id: Annotated[str, Field(min_length=1, max_length=128)]
    status: str | None = None


# Output item types of hosted tools that a client may send back as input.
HOSTED_ITEM_TYPES = frozenset({"web_search_call", "file_search_call"})


def _item_shape(value: dict[str, Any]) -> str:
    """An input item without ``type``: a message if it has a role, else an item reference."""
    return "message" if "role" in value else "item_reference"


InputItem = tagged(
    Message,
    FunctionCall,
    FunctionCallOutput,
    CustomToolCall,
    CustomToolCallOutput,
    Reasoning,
    ToolSearchCall,
    ToolSearchOutput,
    AdditionalTools,
    Compaction,
    CompactionTrigger,
    ItemReference,
    default=_item_shape,
    catch_all=(HostedCall, HOSTED_ITEM_TYPES),
)

# Item types of the spec's InputItem union that respd does not take yet: "not supported", not "invalid".
KNOWN_ITEM_TYPES = frozenset(
    {
        "computer_call", "computer_call_output", "image_generation_call", "code_interpreter_call",
        "local_shell_call", "local_shell_call_output", "shell_call", "shell_call_output", "apply_patch_call",
        "apply_patch_call_output", "mcp_list_tools", "mcp_approval_request", "mcp_approval_response", "mcp_call",
        "program", "program_output",
    }
)  # fmt: skip
