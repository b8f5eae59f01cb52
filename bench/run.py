"""Run the benchmark: `python bench/run.py [CIRCUIT...] [--json] [--seconds 10]`.

The same function as `nodalnet bench` (nodal/bench.py); see bench/README.md for the table.
"""

from nodal.bench import main

if __name__ == "__main__":
    main()
