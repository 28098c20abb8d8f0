"""Shapes of the OpenAI chat request fields this server accepts but does not apply.

Claude Code has no use for ``audio``, ``response_format``, ``prediction`` and the rest (yet),
but a client that sends one with the wrong type has a bug it should hear about, as OpenAI
would tell it. So each is typed as OpenAI's reference types it (the ``openai`` package's
``CompletionCreateParams``, generated from OpenAI's OpenAPI spec), structured by this
module's own strict ``converter`` (wrapper.schema hands these fields to it), and otherwise
ignored.

Rules kept here:
- Types are checked to the leaves; unknown keys inside these objects are ignored, as
  everywhere.
- Enumerated strings (``reasoning_effort``, ``service_tier``, ``audio.format``...) are checked
  to be strings, not checked against OpenAI's list: OpenAI adds values every few months
  (``reasoning_effort`` gained ``minimal``, ``none``, ``xhigh``, ``max``), and refusing a value
  this server ignores anyway would break clients for nothing.
- Numeric ranges OpenAI enforces are enforced too (wrapper.schema), since a value out of
  range is a client bug whether or not it is applied.
"""

from __future__ import annotations

import attrs
from cattrs.gen import override

from wrapper.strict import StrictConverter, wrong_type


@attrs.frozen(kw_only=True)
class VoiceId:
    id: str


@attrs.frozen(kw_only=True)
class Audio:
    format: str
    # A built-in voice's name, or a custom voice.
    voice: str | VoiceId


@attrs.frozen(kw_only=True)
class MessageAudio:
    """An assistant message's reference to an earlier audio answer."""

    id: str


@attrs.frozen(kw_only=True)
class JSONSchemaFormat:
    name: str
    description: str | None = None
    schema: dict[str, object] | None = None
    strict: bool | None = None


@attrs.frozen(kw_only=True)
class ResponseFormat:
    type: str
    json_schema: JSONSchemaFormat | None = None


@attrs.frozen(kw_only=True)
class PredictedText:
    type: str
    text: str


@attrs.frozen(kw_only=True)
class Prediction:
    type: str
    content: str | list[PredictedText]


@attrs.frozen(kw_only=True)
class ApproximateLocation:
    city: str | None = None
    country: str | None = None
    region: str | None = None
    timezone: str | None = None


@attrs.frozen(kw_only=True)
class UserLocation:
    type: str
    approximate: ApproximateLocation


@attrs.frozen(kw_only=True)
class WebSearchOptions:
    search_context_size: str | None = None
    user_location: UserLocation | None = None


@attrs.frozen(kw_only=True)
class ModerationMode:
    mode: str


@attrs.frozen(kw_only=True)
class ModerationPolicy:
    input: ModerationMode | None = None
    output: ModerationMode | None = None


@attrs.frozen(kw_only=True)
class Moderation:
    model: str
    policy: ModerationPolicy | None = None


@attrs.frozen(kw_only=True)
class PromptCacheOptions:
    mode: str | None = None
    ttl: str | None = None


def _structure_voice(value: object, _: object) -> object:
    if type(value) is str:
        return value
    if type(value) is dict:
        return converter.structure(value, VoiceId)
    raise wrong_type("a string or an object with an 'id'", value)


converter = StrictConverter()

# Leaves first: make_dict_structure_fn looks up each field's hook when it is called.
for _cl in (
    VoiceId,
    MessageAudio,
    JSONSchemaFormat,
    ResponseFormat,
    PredictedText,
    ApproximateLocation,
    UserLocation,
    WebSearchOptions,
    ModerationMode,
    ModerationPolicy,
    Moderation,
    PromptCacheOptions,
):
    converter.register_structure_hook(_cl, converter.object_hook(_cl))
converter.register_structure_hook(
    Audio, converter.object_hook(Audio, voice=override(struct_hook=_structure_voice))
)
converter.register_structure_hook(
    Prediction,
    converter.object_hook(
        Prediction,
        content=override(
            struct_hook=converter.str_or_list(
                list[PredictedText], "a string or a list of text parts"
            )
        ),
    ),
)
