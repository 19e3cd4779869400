"""The body of ``POST /v1/responses`` (``S:CreateResponse``) and its parts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from respd.wire.base import MAX_TEXT, Wire, tagged
from respd.wire.items import InputItem
from respd.wire.tools import BUILTIN_TOOL_TYPES, Tool

INCLUDABLE = Literal[
    "file_search_call.results",
    "web_search_call.results",
    "web_search_call.action.sources",
    "message.input_image.image_url",
    "computer_call_output.output.image_url",
    "code_interpreter_call.outputs",
    "reasoning.encrypted_content",
    "message.output_text.logprobs",
]
INCLUDABLE_VALUES = frozenset(get_args(INCLUDABLE))


class ToolChoiceFunction(Wire):
    type: Literal["function"]
    name: str


class ToolChoiceCustom(Wire):
    type: Literal["custom"]
    name: str


class ToolChoiceBuiltin(BaseModel):
    """Forcing a built-in tool (``{"type": "web_search_preview"}``, ``{"type": "mcp", …}``)."""

    model_config = ConfigDict(extra="allow")
    type: str


class ToolChoiceAllowed(Wire):
    type: Literal["allowed_tools"]
    mode: Literal["auto", "required"]
    tools: list[dict[str, Any]]


if TYPE_CHECKING:
    ToolChoice = (
        Literal["none", "auto", "required"]
        | ToolChoiceFunction
        | ToolChoiceCustom
        | ToolChoiceAllowed
        | ToolChoiceBuiltin
    )
else:
    ToolChoice = Literal["none", "auto", "required"] | tagged(
        ToolChoiceFunction, ToolChoiceCustom, ToolChoiceAllowed,
        catch_all=(ToolChoiceBuiltin, BUILTIN_TOOL_TYPES | {"computer_use"}),
    )


class FormatText(Wire):
    type: Literal["text"]


class FormatJsonObject(Wire):
    type: Literal["json_object"]


class FormatJsonSchema(Wire):
    type: Literal["json_schema"]
    name: Annotated[str, Field(pattern=r"^[a-zA-Z0-9_-]+$", max_length=64)]
    schema_: Annotated[dict[str, Any], Field(alias="schema")]
    description: str | None = None
    strict: bool | None = None


if TYPE_CHECKING:
    TextFormat = FormatText | FormatJsonObject | FormatJsonSchema
else:
    TextFormat = tagged(FormatText, FormatJsonObject, FormatJsonSchema)


class TextParam(Wire):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ReasoningParam(Wire):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None
    mode: str | None = None
    context: Literal["auto", "current_turn", "all_turns"] | None = None


class StreamOptions(Wire):
    include_obfuscation: bool | None = None


class ConversationRef(Wire):
    id: str


class ContextManagement(Wire):
    """``S:ContextManagementParam``: compact the context once it is longer than ``compact_threshold`` tokens."""

    type: Literal["compaction"]
    compact_threshold: Annotated[int, Field(ge=1000)] | None = None


class CreateResponse(Wire):
    """``S:CreateResponse`` plus Open Responses' penalties; every other key is an unknown parameter."""

    model: str | None  # required (null is refused by the checks, with the same words)
    input: Annotated[str, Field(max_length=MAX_TEXT)] | list[InputItem] | None = None
    instructions: str | None = None
    previous_response_id: str | None = None
    conversation: str | ConversationRef | None = None
    store: bool | None = True
    background: bool | None = False
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    include: list[INCLUDABLE] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_tool_calls: Annotated[int, Field(ge=1)] | None = None
    max_output_tokens: Annotated[int, Field(ge=16)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    text: TextParam | None = None
    reasoning: ReasoningParam | None = None
    truncation: Literal["auto", "disabled"] | None = None
    metadata: dict[str, str] | None = None
    prompt: dict[str, Any] | None = None
    context_management: Annotated[list[ContextManagement], Field(min_length=1)] | None = None
    service_tier: Literal["auto", "default", "flex", "scale", "priority", "fast", "ultrafast"] | None = None
    user: str | None = None
    safety_identifier: Annotated[str, Field(max_length=64)] | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None
    prompt_cache_options: dict[str, Any] | None = None
    moderation: dict[str, Any] | None = None
    client_metadata: dict[str, Any] | None = None

    @property
    def obfuscate(self) -> bool:
        """Whether streamed deltas carry ``obfuscation`` padding: on unless ``stream_options`` turns it off."""
        opts = self.stream_options
        return opts is None or opts.include_obfuscation is not False

    @property
    def conversation_id(self) -> str | None:
        """The id of ``conversation``, whichever form it came in."""
        conv = self.conversation
        return conv.id if isinstance(conv, ConversationRef) else conv
