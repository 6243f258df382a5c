"""scripts/bench as a package: one module per job (build, timing, the provider, the sandbox) and per
group of figures. `scripts/bench` is the entry point; see its docstring for the figures and the options."""
