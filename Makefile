# telucodec: the two commands a new user runs are `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := opus-tools codec2 ffmpeg sox espeak-ng chromium
TOOLS := opusenc opusdec c2enc c2dec ffmpeg sox chromium

.PHONY: install demo test lint clean

install: $(BIN)/.installed
	@missing=""; for t in $(TOOLS); do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    echo "installing system tools:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	  else \
	    echo "warning: missing system tools:$$missing (run as root or: sudo apt-get install $(APT_PACKAGES)); baselines and browser checks that need them are skipped"; \
	  fi; \
	fi

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q numpy==2.4.6
	$(BIN)/pip install -q -e '.[onnx,lyra,entropy,dev,fuzz,corpus]'
	touch $@

demo: install
	$(BIN)/telucodec demo --out runs/demo
	@echo "tensorboard:  $(BIN)/tensorboard --logdir runs/demo/train/tensorboard"

test: install
	$(BIN)/ruff check telucodec tests benchmarks train_codec.py scripts
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check telucodec tests benchmarks train_codec.py scripts

clean:
	rm -rf runs .pytest_cache
