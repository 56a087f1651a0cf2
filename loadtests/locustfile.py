"""Locust load test for Higgs Audio v2 servers (Boson's vLLM server or the simulator).

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8000            # web UI
    locust -f loadtests/locustfile.py --host URL --headless -u 50 -t 2m     # headless
    locust -f loadtests/locustfile.py --help                                 # all options

Users, shapes, measurement and reports live in the higgs_load package (see loadtests/README.md).
"""

from higgs_load.locust_runtime import HiggsShape, HiggsUser  # noqa: F401  (Locust collects these)
