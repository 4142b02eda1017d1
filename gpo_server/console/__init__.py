"""The web console served by `gpo serve` (docs/CONSOLE.md)."""
