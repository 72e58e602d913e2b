"""The example's own tests, with sluice's test harness: no server, no network."""

from sluice_redact import RedactEmailStage

from server import chunk, complete
from server.testing import ScriptedProvider, run_pipeline, run_stage


def test_an_address_split_across_chunks_is_hidden():
    result = run_pipeline(
        [RedactEmailStage, "llm"],
        provider=ScriptedProvider(["Write to bob@exa", "mple.com or ", "ann@mail.org"]),
    )
    assert result.text == "Write to [email hidden] or [email hidden]"
    assert result.complete["message"] == result.text


def test_the_replacement_is_an_option():
    result = run_pipeline(
        [("redact_email", RedactEmailStage), "llm"],
        provider=ScriptedProvider(["mail me: me@example.com"]),
        options={"redact_email": {"replacement": "<hidden>"}},
    )
    assert result.text == "mail me: <hidden>"


def test_the_stage_alone_flushes_what_it_held_back_before_the_end():
    done = complete(
        "reach me at x@y.io",
        session_id=None,
        suggestions=[],
        provider="t",
        model="t",
        mode="stream",
        fallback=False,
        usage=None,
    )
    result = run_stage(RedactEmailStage, rest=[chunk("reach me at x@y"), chunk(".io"), done])
    assert [e["content"] for e in result.of_type("chunk")] == ["reach me at ", "[email hidden]"]
    assert result.terminal["type"] == "complete"
