"""Input items and content parts of a create request, as the API accepts them.

Item types the API defines but respd cannot take yet are named in :data:`KNOWN_ITEM_TYPES`, so that a
client sending one gets "not supported" rather than "invalid".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, get_args

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

MAX_TEXT = 10_485_760


class Wire(BaseModel):
    """Base for request models: unknown fields are errors, types are not coerced."""

    model_config = ConfigDict(extra="forbid", strict=True)


TAG_MARK = "~"  # marks union tags in error locations, so they can be told from field names


def tagged(
    *models: type[BaseModel],
    default: Callable[[dict[str, Any]], str] | None = None,
    catch_all: tuple[type[BaseModel], frozenset[str]] | None = None,
) -> Any:
    """A union discriminated by ``type`` whose tags cannot be mistaken for field names in error paths.

    ``default`` is the member for a dict without ``type`` (messages may leave it out); ``catch_all`` is one
    model that takes every ``type`` in its set (built-in tools respd passes through or leaves out).
    """
    caught = catch_all[1] if catch_all else frozenset()

    def tag_of(value: Any) -> str | None:
        if isinstance(value, BaseModel):
            value = {"type": getattr(value, "type", None)}
        if not isinstance(value, dict):
            return None
        kind = value.get("type")
        if kind is None and default is not None:
            kind = default(value)
        if kind in caught:
            kind = "*"
        return TAG_MARK + kind if isinstance(kind, str) else None

    members = tuple(Annotated[m, Tag(TAG_MARK + _literal_type(m))] for m in models)
    if catch_all is not None:
        members += (Annotated[catch_all[0], Tag(TAG_MARK + "*")],)
    return Annotated[Union[members], Discriminator(tag_of)]  # noqa: UP007


def _literal_type(model: type[BaseModel]) -> str:
    args = [a for a in get_args(model.model_fields["type"].annotation) if a is not type(None)]
    (literal,) = args
    value = get_args(literal)[0] if get_args(literal) else literal
    return str(value)


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
    ItemReference,
    default=_item_shape,
)

# Item types of the spec's InputItem union that respd does not take yet: "not supported", not "invalid".
KNOWN_ITEM_TYPES = frozenset(
    {
        "file_search_call", "computer_call", "computer_call_output", "web_search_call",
        "image_generation_call", "code_interpreter_call", "local_shell_call", "local_shell_call_output",
        "shell_call", "shell_call_output", "apply_patch_call", "apply_patch_call_output", "mcp_list_tools",
        "mcp_approval_request", "mcp_approval_response", "mcp_call", "compaction", "compaction_trigger",
        "tool_search_call", "tool_search_output", "additional_tools", "program", "program_output",
    }
)  # fmt: skip
