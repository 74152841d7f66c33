"""Named offline bases (tiny, smollm2, minilm) and the word corpus the tiny tokenizer learns."""
