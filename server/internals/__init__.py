"""Where sluice reaches into other libraries' private names, and nowhere else.

Each module here does for memory or CPU what its library offers no public way to do, says
why, and has a test that fails when the library changes under it:

* ``tornado_internals`` — request and connection internals of Tornado
  (``tests/test_tornado_internals.py``);
* ``lean_condition`` — Tornado's ``Condition`` with a list of waiters
  (``tests/test_lean_condition.py``);
* ``aiohttp_internals`` — aiohttp's response, header and proxy internals
  (``tests/test_aiohttp_internals.py``);
* ``json_internals`` — the standard library's C JSON encoder, called directly
  (``tests/test_json_internals.py``);
* ``short_queue`` — the list put in place of those libraries' short deques (covered by the
  tests of the modules that swap it in).

The rest of the server uses what these modules export, never the private names themselves.
One more lives with the plugin that uses it, since built-in plugins import only the public
API: ``plugins/providers/openai_internals.py``, the OpenAI SDK's request built once and sent
without its per-request machinery (``tests/test_openai_internals.py``).
"""
