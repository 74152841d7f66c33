"""The embeddable runtime: one source of truth for training, local prediction and the notebook.

Rules for every module in this package (a test enforces them):
- Python 3.10+; imports only the standard library, numpy, pandas, torch, transformers, peft,
  bitsandbytes, tqdm (transformers' own dependency; progress bars on a terminal), and sibling
  runtime modules (relative imports);
- heavy imports (torch, transformers, peft, bitsandbytes) inside functions;
- `kit render` embeds each module's source verbatim into generated notebooks.
"""
