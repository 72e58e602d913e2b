from collections.abc import AsyncIterator
from typing import ClassVar

from server import (
    Completion,
    GenerationParams,
    Message,
    ProviderContext,
    ProviderOptions,
    Usage,
)


class EchoOptions(ProviderOptions):
    model: str = "echo-1"
    prefix: str = "You said: "


class EchoStream:
    def __init__(self, text: str) -> None:
        self.text = text
        self.usage: Usage | None = None
        self.finish_reason: str | None = None

    async def __aiter__(self) -> AsyncIterator[str]:
        for word in self.text.split(" "):
            yield word + " "
        self.usage = Usage(input_tokens=1, output_tokens=len(self.text.split(" ")))
        self.finish_reason = "stop"

    async def aclose(self) -> None:
        pass


class EchoProvider:
    """Answers with the user's last message: a provider in forty lines."""

    name = "echo"
    Options: ClassVar[type[ProviderOptions]] = EchoOptions

    def __init__(self, options: EchoOptions, context: ProviderContext) -> None:
        self.options = options
        self.model = options.model

    def missing_configuration(self) -> str | None:
        return None  # nothing to set up

    def _answer(self, messages: list[Message]) -> str:
        return self.options.prefix + messages[-1].content

    def stream(
        self,
        messages: list[Message],
        *,
        max_output_tokens: int,
        timeout: float,
        params: GenerationParams | None = None,  # an echo has nothing to sample
    ) -> EchoStream:
        return EchoStream(self._answer(messages))

    async def complete(
        self,
        messages: list[Message],
        *,
        max_output_tokens: int,
        timeout: float,
        params: GenerationParams | None = None,
    ) -> Completion:
        return Completion(self._answer(messages), finish_reason="stop")

    async def aclose(self) -> None:
        pass
