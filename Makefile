# The README's two commands: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Debian packages the suite and the benchmarks drive for real.
DEBS := nginx-light wrk rsync unzip zip openssh-server openssh-client chromium chromium-driver varnish \
	goaccess nftables iproute2

.PHONY: demo demo-fast test lint deps install bench clean docs

$(BIN)/difusor: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

install: $(BIN)/difusor

demo: install
	$(BIN)/difusor demo $(DEMO_ARGS)

demo-fast: install
	$(BIN)/difusor demo --fast

deps:
	@missing=""; for b in nginx wrk rsync unzip zip sshd sftp chromium chromedriver varnishd goaccess nft ip; do \
	  command -v $$b >/dev/null 2>&1 || [ -x /usr/sbin/$$b ] || missing="$$missing $$b"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "instalando paquetes Debian:$$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEBS) >/dev/null; \
	  else echo "aviso: faltan$$missing (las pruebas que los usan se omiten)"; fi; \
	fi

lint: install
	$(BIN)/ruff check src tests bench

test: install deps lint
	$(BIN)/pytest

bench: install deps
	$(BIN)/python bench/serve_throughput.py
	$(BIN)/python bench/publish_latency.py

clean:
	rm -rf $(VENV) demo-state bench/out .pytest_cache

docs: install
	$(BIN)/python -c "import re, pathlib; from difusor.config import settings_reference as s; \
	p = pathlib.Path('docs/configuracion.md'); t = p.read_text(); \
	p.write_text(re.sub(r'(?s)(<!-- settings:begin -->\n).*(<!-- settings:end -->)', lambda m: m[1] + s() + m[2], t))"
