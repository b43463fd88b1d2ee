"""Data: real material (cut-outs), and (with the Build stage) datasets and synthetic scenes."""
