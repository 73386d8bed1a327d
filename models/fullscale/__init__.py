"""Full-scale FastVSR on CogVideoX1.5 / DOVE checkpoints (diffusers modules; `pip install .[fullscale]`)."""
