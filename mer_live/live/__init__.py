"""Live monitoring: audio sources (microphone, file, generated demo), the dashboard and JSON lines, the CLI."""
