"""Locust load test for Higgs Audio v2 servers (Boson's vLLM server or the simulator).

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8000            # web UI
    locust -f loadtests/locustfile.py --host URL --headless -u 50 -t 2m     # headless
    locust -f loadtests/locustfile.py --help                                 # all options

Users, shapes, measurement and reports live in the higgs_load package (see loadtests/README.md).
"""

from locust import events  # isort: skip  (first: gevent's monkey-patching before ssl/urllib3)

from higgs_load import listeners
from higgs_load.shapes import HiggsShape  # noqa: F401  (Locust collects these)
from higgs_load.users import HiggsUser  # noqa: F401

listeners.register(events)
