# Two commands on a fresh clone: `make demo` (pipeline on the bundled data) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: setup jars demo demo-movielens test lint clean bench-movielens bench-baskets bench-models bench-tuning bench-crashes bench-scale bench-takeover bench-explicit bench-uplift bench-ingest

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[local,dev,serve,vectors]"
	touch $(INSTALLED)

# Delta Lake's jars from Maven Central into work/jars, once; later runs work offline.
jars: $(INSTALLED)
	$(BIN)/recsys fetch-jars

setup: $(INSTALLED) jars

demo: setup
	$(BIN)/recsys run --target local

# The same pipeline on the shipped MovieLens ratings as explicit feedback (work/movielens).
demo-movielens: setup
	$(BIN)/recsys run --target local --conf conf/movielens.yml

test: setup
	$(BIN)/pytest

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf work $(VENV)

# Benchmarks (on demand, not in CI): ours vs Spark MLlib in the same run.
bench-baskets: setup
	$(BIN)/python bench/fpgrowth.py

bench-models: setup
	$(BIN)/python bench/als.py

# Every collaborative model on MovieLens reshaped as implicit feedback (bench/RESULTS-models.md).
bench-movielens: setup
	$(BIN)/python bench/movielens_models.py

bench-tuning: setup
	$(BIN)/python bench/tuning.py

bench-crashes: setup
	$(BIN)/python bench/crashes.py --points 20 --seed 7

bench-takeover: setup
	$(BIN)/python bench/takeover.py

# Explicit ALS in one task against MLlib: MovieLens and synthetic ratings (bench/RESULTS-explicit.md).
bench-explicit: setup
	$(BIN)/python bench/explicit_als.py

# Ingest of 3M synthetic lines against a bare read + hash + dedupe + Delta write (bench/RESULTS-ingest.md).
bench-ingest: setup
	$(BIN)/python bench/ingest.py --lines 3e6

bench-scale: setup
	$(BIN)/python bench/scale.py --lines 1e6 3e6 10e6 30e6

# An A/B readout replayed on Online Retail: export at the end of October, then the later months.
bench-uplift: setup
	$(BIN)/python bench/uplift_replay.py --cutoff 2011-10 --holdout-share 0.5
