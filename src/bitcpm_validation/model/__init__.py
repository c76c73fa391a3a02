"""The model layer: fp32 reference MiniCPM, architecture facts, model-directory writer, the faithful
tokenizer, and the ternary-QAT stand-in training script."""
