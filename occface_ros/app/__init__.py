"""What the CLI runs around the pipeline: sources, outputs, sample data, the demo clip, `bench`."""
