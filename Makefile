# The two set-up commands (see README): `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Debian packages of the real peers the suite drives.
APT_PEERS := redis-server:redis-server knotd:knot keymgr:knot kdig:knot-dnsutils dig:bind9-dnsutils ddclient:ddclient inadyn:inadyn oathtool:oathtool zbarimg:zbar-tools chromium:chromium rsvg-convert:librsvg2-bin redis-sentinel:redis-sentinel wrk:wrk

.PHONY: run test install lint typecheck peers bench clean fuzz i18n

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,dns]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(PY) -m examples.demo

peers:
	@missing=""; for pair in $(APT_PEERS); do \
	  cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$cmd >/dev/null 2>&1 || [ -x /usr/sbin/$$cmd ] || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

lint: install
	$(VENV)/bin/ruff check mfa_middleware ddns_update examples tests $(wildcard bench)
	$(VENV)/bin/mypy

test: install peers lint
	$(PY) -m pytest -q

# Translations (docs/gate.md, "Languages and accessibility"): collect the marked text into the template, merge it
# into every catalog (new strings arrive empty, changed ones fuzzy), compile each to .mo (git ignores .mo: the
# wheel's build hook and a checkout's first use compile them too). A new language: make i18n NEW_LANG=fr
CATALOGS := mfa_middleware/locales
i18n: install
	$(VENV)/bin/pybabel extract -F babel.cfg -k N_ -k ngettext:1,2 --no-location --sort-output \
	  --project=mfa-ddns --msgid-bugs-address= --copyright-holder="mfa-ddns contributors" \
	  -o $(CATALOGS)/messages.pot .
	@if [ -n "$(NEW_LANG)" ]; then $(VENV)/bin/pybabel init -i $(CATALOGS)/messages.pot -d $(CATALOGS) -l $(NEW_LANG); fi
	$(VENV)/bin/pybabel update -i $(CATALOGS)/messages.pot -d $(CATALOGS) --no-wrap --ignore-obsolete
	$(VENV)/bin/pybabel compile -d $(CATALOGS) --statistics

# Long fuzzing (issue 8, "Bad input"); not part of `make test`, which runs a fast slice of the same tests.
fuzz: install peers
	$(PY) -m tests.fuzz.long_run --total 1000000
	FUZZ_LONG=1 $(PY) -m pytest -q -p no:cacheprovider tests/test_fuzz_parsers.py
	HTTP_FUZZ_REQUESTS=50000 $(PY) -m pytest -q -s -p no:cacheprovider tests/test_malformed_http.py

bench: install peers
	$(PY) -m pip install -q -e '.[test,dns,bench]'
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
