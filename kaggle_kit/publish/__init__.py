"""Publishing to Kaggle: typed handles, metadata, model cards, validation, kernel checks, uploads, credentials, the client."""
