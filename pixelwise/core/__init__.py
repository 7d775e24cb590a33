"""Core types and operations every other part of pixelwise builds on: errors, clips, prompts, results, masks,
media I/O and visualization. Nothing here imports from the rest of the package."""
