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
