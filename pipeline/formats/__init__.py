"""File formats the pipeline reads and writes: MOTChallenge text files and detection files.

One error type for bad input, `pipeline.formats.errors.DataError` (file, line, field, message).
"""
