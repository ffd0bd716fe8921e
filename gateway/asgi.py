"""The ASGI app as a server process loads it: `gateway.asgi:app`.

`opencode-gateway serve` passes its options to the workers through the environment
(OPENCODE_GATEWAY_CONFIG, OPENCODE_GATEWAY_RULES_DIR), so `hypercorn gateway.asgi:app` works too.
"""
import os
import signal

from gateway.admission import lift_file_limit
from gateway.app import CONFIG_ENV, RULES_DIR_ENV, Gateway, create_app
from gateway.config import load_config
from gateway.logs import setup as setup_logs
from gateway.server import close_connections_clients_closed, tune_garbage_collector

# Every worker process imports this module: the place to fix hypercorn in each of them, and to
# make its log JSON lines (before anything logs).
setup_logs()
close_connections_clients_closed()
lift_file_limit()  # before the app derives how many requests it takes at once (admission.py)
# A SIGHUP the serving process passes on (a reload) must not end a worker still starting: its
# app's lifespan installs the handler that re-reads the config.
signal.signal(signal.SIGHUP, signal.SIG_IGN)

_config = load_config(os.environ.get(CONFIG_ENV) or None)
app = create_app(Gateway(_config, rules_dir=os.environ.get(RULES_DIR_ENV) or None))
tune_garbage_collector()  # after what the worker keeps for its life is built
