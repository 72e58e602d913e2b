from sluice_guide.city_weather import city_weather
from sluice_guide.echo_provider import EchoOptions, EchoProvider
from sluice_guide.shout import Shout
from sluice_guide.word_filter import WordFilter

from server import ToolCall
from server.testing import ScriptedProvider, provider_context, run_pipeline, run_tool


def test_word_filter_masks_words_split_across_chunks():
    result = run_pipeline(
        [WordFilter, "llm"],
        provider=ScriptedProvider(["Oh da", "rn, what ", "a day"]),
        options={"word_filter": {"words": ["darn"]}},
    )
    assert result.text == "Oh ****, what a day"
    assert result.complete["message"] == result.text


def test_shout_with_the_built_in_stages():
    result = run_pipeline(
        ["rate_limit", "session", "intent", "context", Shout, "llm"],
        message="hello",
        provider=ScriptedProvider(["hi ", "there"]),
    )
    assert result.text == "HI THERE"
    stages = [e["stage"] for e in result.of_type("status") if e["state"] == "start"]
    assert stages == ["rate_limit", "session", "intent", "context", "shout", "llm"]


def test_echo_provider_answers_through_the_chain():
    echo = EchoProvider(EchoOptions(), provider_context())
    result = run_pipeline(["context", "llm"], message="ping", provider=echo)
    assert result.text == "You said: ping "
    assert result.complete["provider"] == "echo"


def test_city_weather_tool():
    assert city_weather.input_schema["required"] == ["city"]
    assert run_tool(city_weather, {"city": "Tokyo"}).content == "Tokyo: sunny, 24 °C"
    unknown = run_tool(city_weather, {"city": "Atlantis"})
    assert not unknown.ok and unknown.error == "failed"
    assert unknown.content == "no forecast for 'Atlantis'; try Tokyo or Oslo"
    assert run_tool(city_weather, {"town": "Oslo"}).error == "invalid_arguments"


def test_the_model_calls_city_weather_in_a_turn():
    model = ScriptedProvider(
        rounds=[
            ["Let me look. ", ToolCall("c1", "city_weather", {"city": "Oslo"})],
            ["Snow in Oslo."],
        ]
    )
    result = run_pipeline(["llm"], provider=model, tools=[city_weather])
    (call,) = result.of_type("tool_call")
    assert (call["call_id"], call["name"], call["arguments"]) == (
        "c1",
        "city_weather",
        {"city": "Oslo"},
    )
    (outcome,) = result.of_type("tool_result")
    assert outcome["ok"] and outcome["content"] == "Oslo: snow, -3 °C"
    assert result.text == "Let me look. Snow in Oslo."
    assert result.complete["tool_calls"] == 1
