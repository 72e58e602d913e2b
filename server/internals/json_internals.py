"""Compact JSON from the standard library's C encoder, without its per-call set-up.

Every frame of the event stream is one small JSON object, and encoding it was the largest
single cost of sending a chunk:

* ``json.JSONEncoder.encode`` builds a new C encoder (``json.encoder.c_make_encoder``) on
  every call. For an event's object that set-up is most of the work: 0.95 µs a chunk, against
  0.40 µs when one encoder is made once and called directly (:func:`dumps`).
* A chunk's only variable part is one string, and ``json.encoder.encode_basestring`` (the C
  function ``JSONEncoder`` itself uses for strings when ``ensure_ascii`` is off) turns it into
  its JSON literal in 0.04 µs (:func:`string_literal`).

Neither name is documented, so they are used here only, and
``tests/test_json_internals.py`` fails if either changes under us; without the C encoder
(another Python implementation) :func:`dumps` is the documented encoder's ``encode``.
Output is byte for byte ``json.dumps(value, ensure_ascii=False, separators=(",", ":"))``.

Why not orjson (3.13.0), weighed with ``python -m bench.json_frames --rounds 9`` (the frames
of :mod:`server.core.sse` against the same frames built on ``orjson.dumps``, checked byte for
byte equal first; ns per frame, medians, on the 2-core machine while other jobs ran, so the
ratios say more than the times):

===========  ======  ======  ===========
frame          ours  orjson  orjson/ours
===========  ======  ======  ===========
chunk         2,532   2,807         1.11
status etc.   6,554   2,354         0.36
complete     32,082  16,452         0.51
===========  ======  ======  ===========

* A chunk frame, nearly every frame of an answer, costs the same either way: its JSON is one
  string literal, which ``encode_basestring`` writes as fast as orjson does. orjson wins
  only on the handful of other frames per answer, a few µs per answer in all.
* It does not write the same output: integers beyond 64 bits and non-string keys raise,
  ``NaN`` becomes ``null``; ``tests/test_json_internals.py`` holds :func:`dumps` to
  ``json.dumps`` for every value.
* It writes U+0085, U+2028 and U+2029 raw, with no option to escape them, so each frame would
  need a post-pass on its bytes (``isascii``, then a regex search: ``b"\\xe2\\x80\\xa8" in
  frame`` alone took 0.45 µs on a five-byte frame), and it returns bytes where the OpenAI
  format (:mod:`server.core.openai_format`) splices text.
* It would be a compiled dependency of the server; it is now only the load client's.
"""

from __future__ import annotations

import json
import json.encoder
from collections.abc import Callable
from typing import Any

__all__ = ["C_ENCODER", "dumps", "string_literal"]

_documented = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)

string_literal: Callable[[str], str] = json.encoder.encode_basestring
"""The JSON string literal of ``text``, quotes included, non-ASCII kept as it is."""

_make_encoder = getattr(json.encoder, "c_make_encoder", None)

C_ENCODER = _make_encoder is not None
"""Whether :func:`dumps` runs on the kept C encoder (CPython) or on ``JSONEncoder.encode``."""

if _make_encoder is not None:
    # The arguments JSONEncoder.iterencode passes for these settings:
    # (markers, default, encoder, indent, key_separator, item_separator, sort_keys, skipkeys,
    #  allow_nan). No markers: nothing we encode refers to itself.
    _encode = _make_encoder(
        None, _documented.default, string_literal, None, ":", ",", False, False, True
    )

    def dumps(value: Any) -> str:
        """``value`` as compact JSON, non-ASCII kept as UTF-8 text."""
        return "".join(_encode(value, 0))

else:  # pragma: no cover - CPython always has the C encoder

    def dumps(value: Any) -> str:
        """``value`` as compact JSON, non-ASCII kept as UTF-8 text."""
        return _documented.encode(value)
