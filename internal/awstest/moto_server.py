"""Start moto's server for Escrow's tests with the settings they need.

Usage: python3 moto_server.py PORT

Sets the Step Functions execution config before the server starts and works
around two moto 5.2.1 bugs (see DESIGN.md 7a): a deepcopy of executions that
fails on an RLock, and datetimes in execution output.
"""
import json
import os
import sys

port = int(sys.argv[1])
os.environ["MOTO_PORT"] = str(port)

from moto.core import config as moto_config  # noqa: E402

moto_config.default_user_config.update(
    {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
)

try:
    from moto.stepfunctions.parser.backend import execution as _execution
    from moto.stepfunctions.parser import models as _models

    _execution.Execution.__deepcopy__ = lambda self, memo: self
    _models.StepFunctionsParserBackend.__deepcopy__ = lambda self, memo: self
except Exception as exc:  # pragma: no cover - only a warning
    print(f"moto_server.py: step functions patch not applied: {exc}", file=sys.stderr)

# moto 5.2.1 checks DynamoDB conditions and writes without a lock, so two
# racing conditional writes can both win (seen about 1 run in 15 of the
# conformance suite's race test). DynamoDB itself serialises them: so do we.
try:
    import threading
    from moto.dynamodb.models import DynamoDBBackend

    _ddb_lock = threading.RLock()
    for _name in ("transact_write_items", "put_item", "update_item", "delete_item", "batch_write_item"):
        _orig = getattr(DynamoDBBackend, _name)

        def _locked(self, *a, _orig=_orig, **kw):
            with _ddb_lock:
                return _orig(self, *a, **kw)

        setattr(DynamoDBBackend, _name, _locked)
except Exception as exc:  # pragma: no cover - only a warning
    print(f"moto_server.py: dynamodb lock patch not applied: {exc}", file=sys.stderr)

_orig_default = json.JSONEncoder.default


def _default(self, o):
    import datetime

    if isinstance(o, (datetime.datetime, datetime.date)):
        return o.isoformat()
    return _orig_default(self, o)


json.JSONEncoder.default = _default

from moto.server import main  # noqa: E402

sys.exit(main(["-H", "127.0.0.1", "-p", str(port)]))
