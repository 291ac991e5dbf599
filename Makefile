# The quickstart's two commands are `make demo` and `make test`; both install into .venv first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.pvad-installed

.PHONY: install services demo test protos check-config clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[server,yolo,train,faces,export,mqtt,dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/pvad demo $(ARGS)

# Services the tests use, from Debian's packages where this is root (CI is); without them those tests skip.
# The dashboard's browser tests drive Debian's chromium with Playwright (which never downloads a browser here).
# The cluster tests run Debian's haproxy and postgresql (PostgreSQL runs as the postgres user the package makes).
services:
	@if [ "$$(id -u)" = 0 ] && ! command -v mosquitto >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then \
	  (apt-get update -qq && apt-get install -y -qq mosquitto) >/dev/null 2>&1 \
	    || echo "could not install mosquitto: the MQTT tests will skip"; fi
	@if [ "$$(id -u)" = 0 ] && ! command -v haproxy >/dev/null 2>&1 && ! [ -x /usr/sbin/haproxy ] && command -v apt-get >/dev/null 2>&1; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy) >/dev/null 2>&1 \
	    || echo "could not install haproxy: the cluster tests will skip"; fi
	@if [ "$$(id -u)" = 0 ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >/dev/null 2>&1 \
	    || echo "could not install postgresql: the PostgreSQL store and cluster tests will skip or use SQLite"; fi
	@if [ "$$(id -u)" = 0 ] && ! [ -x /usr/lib/chromium/chromium ] && command -v apt-get >/dev/null 2>&1; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) >/dev/null 2>&1 \
	    || echo "could not install chromium: the dashboard's browser tests will skip"; fi

test: $(STAMP) services
	$(BIN)/python -m pytest -q

protos: $(STAMP)
	$(BIN)/pvad protos build

check-config: $(STAMP)
	$(BIN)/pvad config check configs/*.yaml configs/docker/*.yaml

clean:
	rm -rf .pvad .pytest_cache
