"""A linear probe: logistic regression on the frozen base's pooled features (what its head reads).

The features are the input of the classification head (``score`` / ``classifier``), captured by a
forward pre-hook while the untouched base runs over the same encoded rows the fine-tune uses: the
last non-pad token's hidden state for decoders, the pooler output for BERT-likes. A probe that
scores well while the fine-tune does not says the base knows the answer and the training recipe
fails to read it out (issue 20).
"""
from __future__ import annotations

from typing import Callable, Optional


def pooled_features(model, dataset, pad_token_id: int, batch_size: int = 16, log: Optional[Callable] = None):
    """Rows x hidden matrix of the head's input for every example of ``dataset`` (an EncodedDataset), in order."""
    import numpy as np
    import torch

    from kaggle_kit.train.data import PadCollator
    from kaggle_kit.train.model import head_name

    head = getattr(model, head_name(model))
    grabbed: list = []
    hook = head.register_forward_pre_hook(lambda _m, args: grabbed.append(args[0].detach().float().cpu()))
    collate = PadCollator(pad_token_id)
    feats = []
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(dataset), batch_size):
                rows = range(start, min(start + batch_size, len(dataset)))
                batch = collate([{"input_ids": dataset.input_ids[i]} for i in rows])
                grabbed.clear()
                model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
                h = grabbed[-1]
                if h.ndim == 3:  # a decoder's head scores every position; the model keeps the last non-pad one
                    last = torch.tensor([len(dataset.input_ids[i]) - 1 for i in rows])
                    h = h[torch.arange(h.shape[0]), last]
                feats.append(h)
                if log and (start // batch_size) % 20 == 0:
                    log(f"probe: pooled features of {rows[-1] + 1:,}/{len(dataset):,} rows")
    finally:
        hook.remove()
    return torch.cat(feats).numpy().astype(np.float64)


PROBE_CS = (0.001, 0.01, 0.1, 1.0)


def fit_probe(train_x, train_y, val_x, seed: int = 0) -> tuple:
    """(validation probabilities, chosen C) of a standardised logistic regression fitted on ``train_x``/``train_y``;
    its regularisation C is picked by 5-fold cross-validated log loss on the training rows only (``PROBE_CS``)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    search = GridSearchCV(pipe, {"logisticregression__C": list(PROBE_CS)}, cv=5, scoring="neg_log_loss")
    search.fit(train_x, train_y)
    return search.predict_proba(val_x), float(search.best_params_["logisticregression__C"])
