"""The HTTP layer: routes, handlers, identity, and the event-stream response."""
