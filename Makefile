# The README's two commands: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Debian packages the suite and the benchmarks drive for real.
# poppler-utils: the memoria's tests read its PDF (pdftotext, pdftoppm); WeasyPrint draws with
# Pango and the DejaVu fonts. nodejs: the portal widget's tests run corte.js against a fake page.
# systemd (systemd-analyze) and logrotate: the production unit and log rotation in deploy/.
# wget: the anchor of bench/verify.py. time: GNU time reads the peak memory of a benchmarked process.
DEBS := nginx-light wrk rsync unzip zip openssh-server openssh-client chromium chromium-driver varnish \
	goaccess nftables iproute2 poppler-utils libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core \
	nodejs systemd logrotate wget time

.PHONY: demo demo-fast test test-fast lint deps install lock upgrade bench clean docs

# The whole dependency graph is locked in uv.lock; uv itself is pinned in pyproject.toml's test
# extra (one place). A first install bootstraps that uv with the machine's pip into .uv-boot/ and
# lets it create the venv: `uv sync --locked` refuses a lock out of date with pyproject.toml and
# makes the venv equal the lock, package for package (a venv made by `python -m venv`, with pip and
# setuptools beside the lock, is made anew).
UV_VERSION := $(shell sed -n 's/.*"uv==\([0-9.]*\)".*/\1/p' pyproject.toml)
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

$(BIN)/uv: pyproject.toml
	@if [ -e $(BIN)/pip ]; then rm -rf $(VENV); fi
	@if [ "$$($(BIN)/uv --version 2>/dev/null | cut -d' ' -f2)" != "$(UV_VERSION)" ]; then \
	  rm -rf .uv-boot && \
	  $(PY) -m pip install -q --disable-pip-version-check --root-user-action=ignore --target .uv-boot uv==$(UV_VERSION) && \
	  .uv-boot/bin/uv sync --locked --extra test --python $(PY) -q && rm -rf .uv-boot; fi
	@touch $@

$(BIN)/difusor: pyproject.toml uv.lock $(BIN)/uv
	$(BIN)/uv sync --locked --extra test --python $(PY) -q
	@touch $@

install: $(BIN)/difusor

# Refresh the lock on purpose: `make lock` after editing pyproject.toml (keeps every version it
# can), `make upgrade` to take the newest releases the ranges allow. Commit uv.lock with the change.
lock: $(BIN)/uv
	$(BIN)/uv lock

upgrade: $(BIN)/uv
	$(BIN)/uv lock --upgrade

demo: install
	$(BIN)/difusor demo $(DEMO_ARGS)

demo-fast: install
	$(BIN)/difusor demo --fast

deps:
	@missing=""; for b in nginx wrk rsync unzip zip sshd sftp chromium chromedriver varnishd goaccess nft ip \
	  pdftotext pdftoppm node systemd-analyze logrotate wget; do \
	  command -v $$b >/dev/null 2>&1 || [ -x /usr/sbin/$$b ] || missing="$$missing $$b"; done; \
	ldconfig -p | grep -q libpangoft2-1.0 || missing="$$missing pango"; \
	[ -x /usr/bin/time ] || missing="$$missing time"; \
	[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing="$$missing fonts-dejavu"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "instalando paquetes Debian:$$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEBS) >/dev/null; \
	  else echo "aviso: faltan$$missing (las pruebas que los usan se omiten)"; fi; \
	fi

lint: install
	$(BIN)/ruff check src tests bench

# The slowest tests are listed at the end, so a CI log shows where the suite's time goes.
test: install deps lint
	$(BIN)/pytest --durations=25

# The fast lane for a developer's loop: lint and the tests not marked slow (each measured under
# ½ s: unit and in-process ones; those needing a Debian package skip without it). `make test`
# runs everything.
test-fast: install lint
	$(BIN)/pytest -q -m "not slow"

bench: install deps
	$(BIN)/python bench/serve_throughput.py
	$(BIN)/python bench/publish_latency.py
	$(BIN)/python bench/verify.py

clean:
	rm -rf $(VENV) .uv-boot demo-state bench/out .pytest_cache

docs: install
	$(BIN)/python -c "import re, pathlib; from difusor.config import settings_reference as s; \
	p = pathlib.Path('docs/configuracion.md'); t = p.read_text(); \
	p.write_text(re.sub(r'(?s)(<!-- settings:begin -->\n).*(<!-- settings:end -->)', lambda m: m[1] + s() + m[2], t))"
