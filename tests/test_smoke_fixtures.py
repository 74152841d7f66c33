"""The shared fixtures produce what the other tests assume."""
import json


def test_untrained_adapter_layout(untrained_adapter):
    names = {p.name for p in untrained_adapter.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "kit_manifest.json"} <= names
    manifest = json.loads((untrained_adapter / "kit_manifest.json").read_text())
    assert manifest["task"]["labels"] == ["winner_model_a", "winner_model_b", "winner_tie"]
    assert manifest["prompt"]["max_length"] == 256
