"""The provider kit's mapping of an upstream's HTTP error status to a ProviderError, which
the built-in providers share: the kind decides what the chain does next (another provider,
a plain call, waiting), and the message is what the operator reads. The providers' own tests
drive it through their SDKs against fake upstreams; this holds the table itself, including
the statuses those tests do not reach."""

from __future__ import annotations

import pytest

from server import FailureKind, ProviderError, error_from_status, unreachable_error


def _mapped(status: int, *, stream_refused: bool = False) -> ProviderError:
    return error_from_status(
        "up",
        status,
        detail="code message",
        key_label="UP_API_KEY",
        model="m-1",
        model_hint="set UP_MODEL.",
        retry_after=7.0,
        stream_refused=stream_refused,
    )


@pytest.mark.parametrize(
    ("status", "kind", "says"),
    [
        (401, FailureKind.AUTH, "up refused the API key (401): the server's operator must set"),
        (403, FailureKind.AUTH, "up denied access to model 'm-1' (403)"),
        (404, FailureKind.BAD_REQUEST, "model 'm-1' was not found (404): the server's operator"),
        (429, FailureKind.RATE_LIMITED, "up is rate limiting requests."),
        (405, FailureKind.STREAM_UNSUPPORTED, "up refused to stream."),
        (501, FailureKind.STREAM_UNSUPPORTED, "up refused to stream."),
        (400, FailureKind.BAD_REQUEST, "up refused the request (400)."),
        (422, FailureKind.BAD_REQUEST, "up refused the request (422)."),
        (500, FailureKind.UNAVAILABLE, "up is unavailable (500)."),
        (529, FailureKind.UNAVAILABLE, "up is overloaded (529)."),
    ],
)
def test_each_status_maps_to_the_kind_the_chain_acts_on(
    status: int, kind: FailureKind, says: str
) -> None:
    error = _mapped(status)
    assert (error.kind, error.status, error.detail) == (kind, status, "code message")
    assert says in error.message
    # Only a refusal that passes with time says when to come back.
    assert error.retry_after == (7.0 if status in (429, 500, 529) else None)


def test_the_model_hint_follows_a_404() -> None:
    assert _mapped(404).message.endswith("must set UP_MODEL.")


@pytest.mark.parametrize("status", [400, 422])
def test_a_request_refused_for_streaming_is_stream_unsupported(status: int) -> None:
    assert _mapped(status, stream_refused=True).kind is FailureKind.STREAM_UNSUPPORTED
    assert _mapped(401, stream_refused=True).kind is FailureKind.AUTH


def test_no_status_at_all_is_unavailable_without_one() -> None:
    error = _mapped(0)
    assert (error.kind, error.status) == (FailureKind.UNAVAILABLE, None)


def test_an_unreachable_upstream_names_the_url_and_the_transports_exception() -> None:
    class SDKError(Exception):
        pass

    try:
        try:
            raise ConnectionRefusedError
        except ConnectionRefusedError as cause:
            raise SDKError from cause
    except SDKError as error:
        refused = unreachable_error("up", "http://127.0.0.1:9/v1", error, timed_out=False)
        late = unreachable_error("up", "http://127.0.0.1:9/v1", error, timed_out=True)
    assert refused.kind is FailureKind.UNAVAILABLE
    assert refused.message == "up could not be reached."
    assert refused.detail == "http://127.0.0.1:9/v1: ConnectionRefusedError"
    assert (late.kind, late.message) == (FailureKind.TIMEOUT, "up did not answer in time.")
    assert unreachable_error("up", "u", SDKError(), timed_out=False).detail == "u: SDKError"
