"""The wiring layer: scenario loading and checks, the runner, recording, the CLI."""
