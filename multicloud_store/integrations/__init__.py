"""Integrations with other tools: ZenML's custom secrets store and ZenML's built-in layout (for migration)."""
