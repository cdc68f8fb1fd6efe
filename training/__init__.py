"""How a Mixer is trained: data pipelines, strategy selection, recipes, the `train` entry point."""
