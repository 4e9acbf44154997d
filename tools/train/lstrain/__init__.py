"""lstrain: LayerSkip training for Llama-architecture models (PyTorch).

Modules: data (corpus, split, tokenizer), model (the Llama forward with
per-layer exits and layer dropout), recipe (dropout rates, early-exit loss
weights, curricula), export (Hugging Face safetensors and GGUF, both ways).
"""
