"""The plugins of docs/plugins.md, as an installable package whose tests run."""
