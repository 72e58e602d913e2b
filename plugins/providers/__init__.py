"""Built-in providers: ``openai``, ``gemini`` and the ``demo`` responder."""
