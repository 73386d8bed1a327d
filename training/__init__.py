"""Training of the shipped tiny models on CPU: data, degradations, objectives and the staged recipe."""
