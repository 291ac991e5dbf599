# The quickstart's two commands are `make demo` and `make test`; both install into .venv first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.pvad-installed

.PHONY: install demo test protos check-config clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[server,yolo,train,faces,export,mqtt,dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/pvad demo $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q

protos: $(STAMP)
	$(BIN)/pvad protos build

check-config: $(STAMP)
	$(BIN)/pvad config check configs/*.yaml configs/docker/*.yaml

clean:
	rm -rf .pvad .pytest_cache
