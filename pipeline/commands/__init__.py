"""The `motrv3` console script's commands (`pipeline.cli`): one module per command, each a `main(argv)`
built like a stage's (`pipeline.entry`)."""
