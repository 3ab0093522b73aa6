# COLO runtime library of colo.ft: plain Python (stdlib only), no Ansible imports,
# so modules, tests and benchmarks can all use it.
