"""Split: a video becomes layers (subject + matte, clean background, caption). See `pipeline.split`."""
