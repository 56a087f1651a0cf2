"""Locust load test for Higgs Audio v2 servers (Boson's vLLM server or the simulator).

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8000            # web UI
    locust -f loadtests/locustfile.py --host URL --headless -u 50 -t 2m     # headless
    python loadtests/locustfile.py --help                                    # all options

Locust prints `locust --help` before it imports the locustfile (locustio/locust#2917), so that help
never shows our options; run as a script, this file is `locust -f loadtests/locustfile.py ARGS` whose
--help lists them too (group "Higgs Audio load test").

Users, shapes, measurement and reports live in the higgs_load package (see loadtests/README.md).
"""

from locust import events  # isort: skip  (first: gevent's monkey-patching before ssl/urllib3)

from higgs_load import listeners
from higgs_load.shapes import HiggsShape  # noqa: F401  (Locust collects these)
from higgs_load.users import HiggsUser  # noqa: F401

if __name__ == "__main__":
    import sys

    from locust.main import main

    from higgs_load.options import add_options

    if {"-h", "--help"} & set(sys.argv[1:]):  # Locust answers --help before importing the locustfile
        events.init_command_line_parser.add_listener(add_options)
    sys.argv = ["locust", "-f", __file__, *sys.argv[1:]]  # Locust imports this file again, as a module
    sys.exit(main())
else:
    listeners.register(events)
