"""Pure: a run's events (wrapper.events) -> OpenAI chat completions. No I/O.

One rule for both ways of answering: a streamed answer is the events as chunks (a role
chunk first, one chunk per text delta, one per piece of a call, a final chunk with the
``finish_reason``, a usage chunk when asked); a non-streamed one is the fold of the same
events (``events.Answer``) as one completion. Stop reasons and usage are mapped here and
nowhere else.

- Claude's ``toolu_X`` ids are reported as ``call_X`` (wrapper.tools.call_id).
- A request in the legacy ``functions`` form gets its one call as ``function_call``.
- ``cost_usd`` (not OpenAI's) rides on the completion, the final chunk and the usage chunk.
- ``n`` answers are ``n`` choices, indexed from 0 in run order; each streamed choice gets its
  role chunk and its final chunk; the usage (and cost) is that of all the runs, summed.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from wrapper import events
from wrapper.completions import (
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    ChunkChoice,
    CompletionTokensDetails,
    Delta,
    DeltaFunction,
    DeltaToolCall,
    PromptTokensDetails,
    ResponseMessage,
    Usage,
)
from wrapper.schema import ToolCall, ToolCallFunction
from wrapper.tools import call_id

# Claude stop_reason -> OpenAI finish_reason. Unknown reasons map to "stop".
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def finish_reason(stop_reason: str | None) -> str:
    return FINISH_REASONS.get(stop_reason or "end_turn", "stop")


def finish(stop_reason: str | None, called: bool, legacy: bool) -> str:
    """The finish_reason of an answer, given whether it carries calls for the client."""
    if called:
        return "function_call" if legacy else "tool_calls"
    reason = finish_reason(stop_reason)
    # "tool_calls" with no call in the answer would send a client looking for one.
    return "stop" if reason == "tool_calls" else reason


def usage(counts: events.Usage | None) -> Usage | None:
    """OpenAI usage from Anthropic's: ``prompt_tokens`` is all input, cache reads and
    writes included, with the cache reads repeated in ``cached_tokens``. None: unknown."""
    if counts is None:
        return None
    prompt = counts.all_input
    thinking = counts.thinking_tokens
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=counts.output_tokens,
        total_tokens=prompt + counts.output_tokens,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=counts.cache_read_input_tokens),
        completion_tokens_details=None
        if thinking is None
        else CompletionTokensDetails(reasoning_tokens=thinking),
    )


def total(counts: Iterable[events.Usage | None]) -> events.Usage | None:
    """The counts of several runs together; unknown if any one is unknown."""
    summed: events.Usage | None = None
    for one in counts:
        if one is None:
            return None
        summed = one if summed is None else summed + one
    return summed


def _cost(finished: Iterable[events.Finished]) -> float | None:
    costs = [f.cost_usd for f in finished]
    return None if any(c is None for c in costs) else sum(c for c in costs if c is not None)


@attrs.frozen
class ChatEncoder:
    """One completion's encoder: what every chunk repeats (id, created, model), the
    request's form of calls (``legacy``), and whether Claude's thinking is shown
    (``reasoning``: as ``reasoning_content``, never inside ``content``)."""

    id: str
    created: int
    model: str
    legacy: bool = False
    reasoning: bool = True

    def chunk(
        self,
        delta: Delta,
        finish: str | None = None,
        cost_usd: float | None = None,
        choice: int = 0,
    ) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=self.id,
            created=self.created,
            model=self.model,
            choices=[ChunkChoice(index=choice, delta=delta, finish_reason=finish)],
            cost_usd=cost_usd,
        )

    def role_chunk(self, choice: int = 0) -> ChatCompletionChunk:
        return self.chunk(Delta(role="assistant", content=""), choice=choice)

    def delta_chunk(self, event: events.Event, choice: int = 0) -> ChatCompletionChunk | None:
        """The chunk of a delta event; None for the others (and thinking not shown)."""
        match event:
            case events.TextDelta(text):
                return self.chunk(Delta(content=text), choice=choice)
            case events.ReasoningDelta(text) if self.reasoning:
                return self.chunk(Delta(reasoning_content=text), choice=choice)
            case events.CallStarted(index, id_, name):
                function = DeltaFunction(name=name, arguments="")
                return self._call_chunk(index, function, choice, id_)
            case events.CallArguments(index, fragment):
                return self._call_chunk(index, DeltaFunction(arguments=fragment), choice)
        return None

    def _call_chunk(
        self, index: int, function: DeltaFunction, choice: int, id_: str | None = None
    ) -> ChatCompletionChunk:
        if self.legacy:
            return self.chunk(Delta(function_call=function), choice=choice)
        call = DeltaToolCall(
            index=index,
            id=call_id(id_) if id_ is not None else None,
            type="function" if id_ is not None else None,
            function=function,
        )
        return self.chunk(Delta(tool_calls=[call]), choice=choice)

    def final_chunk(
        self, finished: events.Finished, called: bool, choice: int = 0
    ) -> ChatCompletionChunk:
        reason = finish(finished.stop_reason, called, self.legacy)
        return self.chunk(Delta(), reason, finished.cost_usd, choice)

    def usage_chunk(self, *finished: events.Finished) -> ChatCompletionChunk:
        """The usage of the whole request: every choice's runs, summed."""
        return ChatCompletionChunk(
            id=self.id,
            created=self.created,
            model=self.model,
            choices=[],
            usage=usage(total(f.usage for f in finished)),
            cost_usd=_cost(finished),
        )

    def completion(self, *results: tuple[events.Answer, events.Finished]) -> ChatCompletion:
        """The whole answer (one choice per run), folded from the runs' events."""
        choices = [
            Choice(
                index=index,
                message=self._message(answer),
                finish_reason=finish(finished.stop_reason, bool(answer.calls), self.legacy),
            )
            for index, (answer, finished) in enumerate(results)
        ]
        ended = [finished for _, finished in results]
        return ChatCompletion(
            id=self.id,
            created=self.created,
            model=self.model,
            choices=choices,
            usage=usage(total(f.usage for f in ended)),
            cost_usd=_cost(ended),
        )

    def _message(self, answer: events.Answer) -> ResponseMessage:
        text, calls = answer.text, answer.calls
        reasoning = (answer.reasoning or None) if self.reasoning else None
        if not calls:
            return ResponseMessage(content=text, reasoning_content=reasoning)
        content = text or None  # OpenAI sends null content beside calls when there is none
        functions = [ToolCallFunction(name=c.name, arguments=c.arguments) for c in calls]
        if self.legacy:
            return ResponseMessage(
                content=content, reasoning_content=reasoning, function_call=functions[0]
            )
        tool_calls = [
            ToolCall(id=call_id(c.id), function=f) for c, f in zip(calls, functions, strict=True)
        ]
        return ResponseMessage(content=content, reasoning_content=reasoning, tool_calls=tool_calls)
